"""Test helpers shipped as public API: a fixed clock, a fake agency transport and a recording audit sink."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gateway.audit.store import PendingEntry
from gateway.domain import AuditEvent, AuditReceipt
from gateway.errors import AuditUnavailable
from gateway.service.ports import LookupCommand, LookupResult

__all__ = ["FakeAgencyTransport", "FixedClock", "RecordingAuditSink"]


@dataclass
class FixedClock:
    """A clock that stands still until told to move."""

    current: datetime = field(default_factory=lambda: datetime(2026, 11, 26, 9, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


LookupHandler = Callable[[str, LookupCommand], Awaitable[LookupResult] | LookupResult]


class FakeAgencyTransport:
    """An in-process AgencyTransport: a plain function answers every lookup (it may raise AgencyError)."""

    def __init__(self, handler: LookupHandler) -> None:
        self._handler = handler
        self.calls: list[tuple[str, LookupCommand, float]] = []

    async def lookup(self, agency: str, command: LookupCommand, *, timeout: float) -> LookupResult:
        self.calls.append((agency, command, timeout))
        result = self._handler(agency, command)
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            return await asyncio.wait_for(result, timeout)
        return result

    async def close(self) -> None:
        return None


class RecordingAuditSink:
    """Keeps appended events in a list; `fail = True` makes every append raise AuditUnavailable."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.fail = False

    @staticmethod
    def prepare(event: AuditEvent) -> AuditEvent | PendingEntry:
        return event  # kept as the event, so tests read what was logged

    async def append(self, events: Sequence[AuditEvent | PendingEntry]) -> list[AuditReceipt]:
        if self.fail:
            raise AuditUnavailable("audit store is down (test)")
        start = len(self.events)
        for event in events:
            if not isinstance(event, AuditEvent):
                raise TypeError("RecordingAuditSink records events; its prepare() hands them back unencoded")
            self.events.append(event)
        return [AuditReceipt(start + i, bytes(32)) for i in range(len(events))]
