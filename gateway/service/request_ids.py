"""Caller-chosen request ids: a retry of the same request gets the first answer, a different request is refused.

The ledger lives in the gateway process's memory: it holds for `window` seconds within one process's
lifetime, not across restarts (the audit log still records every disclosure, so none goes unseen).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.service.validation import Caller, QueryCommand

T = TypeVar("T")

Produce = Callable[[bool], Awaitable[T]]
"""Runs the request; its argument says the id was already used for a different request (so it must refuse)."""


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    answer: asyncio.Future[Any]
    expires: float


class RequestLedger:
    """Remembers, per request id, a keyed fingerprint of the request and, once it is answered, the answer."""

    def __init__(self, *, window: float = 600.0, capacity: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._capacity = capacity
        self._clock = clock
        # A per-process key: the fingerprints cannot be compared with anything outside this process.
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _fingerprint(self, kind: str, caller: Caller, command: QueryCommand) -> bytes:
        # Dataclass reprs of strings and tuples are deterministic, so equal requests give equal bytes.
        return hmac.new(self._key, repr((kind, caller, command)).encode(), hashlib.sha256).digest()

    def _expire(self, now: float) -> None:
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.expires > now:
                break
            self._entries.popitem(last=False)

    async def begin(self, kind: str, caller: Caller, command: QueryCommand) -> Ticket:
        """Where this request stands: a replay of the first answer if this exact request was seen within the
        window (waiting for it if it is still being answered), or a new attempt, `reused` if the id names a
        different request seen within the window.

        A request without an id (the gateway assigns a fresh one) is always new. A first attempt that fails
        is forgotten, so a retry (also one already waiting) runs again, audited in its own right.
        """
        if not command.request_id:
            return Ticket(self, "", None)
        fingerprint = self._fingerprint(kind, caller, command)
        while True:
            now = self._clock()
            self._expire(now)
            entry = self._entries.get(command.request_id)
            if entry is None:
                break
            if not hmac.compare_digest(entry.fingerprint, fingerprint):
                return Ticket(self, "", None, reused=True)
            await asyncio.wait([entry.answer])
            if not entry.answer.cancelled():
                return Ticket(self, "", None, replay=(entry.answer.result(),))
        while len(self._entries) >= self._capacity:
            self._entries.popitem(last=False)
        entry = _Entry(fingerprint, asyncio.get_running_loop().create_future(), now + self._window)
        self._entries[command.request_id] = entry
        return Ticket(self, command.request_id, entry)

    def _settle(self, request_id: str, entry: _Entry, result: tuple[Any, ...] | None) -> None:
        if result is None:
            if self._entries.get(request_id) is entry:
                del self._entries[request_id]
            entry.answer.cancel()
        elif not entry.answer.done():
            entry.answer.set_result(result[0])

    async def once(self, kind: str, caller: Caller, command: QueryCommand, produce: Produce[T]) -> T:
        """The first answer again for a retry of this exact request, else `produce(reused)` (see `begin`)."""
        ticket = await self.begin(kind, caller, command)
        if ticket.replay:
            result: T = ticket.replay[0]
            return result
        try:
            result = await produce(ticket.reused)
        except BaseException:
            ticket.failed()
            raise
        ticket.answered(result)
        return result


class Ticket:
    """One attempt at a request: replay the first answer, or answer it (then say how it went)."""

    def __init__(self, ledger: RequestLedger, request_id: str, entry: _Entry | None, *, reused: bool = False,
                 replay: tuple[Any, ...] = ()) -> None:
        self._ledger = ledger
        self._request_id = request_id
        self._entry = entry
        self.reused = reused
        self.replay = replay

    def answered(self, result: object) -> None:
        """Keep `result` as the answer every retry within the window gets."""
        if self._entry is not None:
            self._ledger._settle(self._request_id, self._entry, (result,))

    def failed(self) -> None:
        """Forget the attempt, so a retry is answered afresh."""
        if self._entry is not None:
            self._ledger._settle(self._request_id, self._entry, None)
