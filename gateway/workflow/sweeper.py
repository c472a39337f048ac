"""A background task that audits deadline breaches as they happen (once per deadline, across restarts)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

import structlog

from gateway.errors import GatewayError
from gateway.workflow.service import ReferralWorkflow

log = structlog.get_logger("gateway.workflow.sweeper")


class BreachSweeper:
    """Runs `ReferralWorkflow.record_breaches` every `interval` seconds until stopped."""

    def __init__(self, workflow: ReferralWorkflow, *, interval: float,
                 on_overdue: Callable[[Mapping[tuple[str, str], int]], None] | None = None) -> None:
        self._workflow = workflow
        self._interval = interval
        self._on_overdue = on_overdue  # told the overdue count by (mash, rating) after every sweep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="referral-breach-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep(self) -> int:
        """One sweep: audit new breaches, then report the overdue counts; how many breaches were new."""
        found = await self._workflow.record_breaches()
        if found:
            log.warning("referral deadlines breached", count=found)
        if self._on_overdue is not None:
            self._on_overdue(await self._workflow.overdue())
        return found

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except GatewayError as exc:
                # The audit or the store is down: nothing was recorded, so the next sweep tries again.
                log.warning("breach sweep failed", error_type=type(exc).__name__)
            await asyncio.sleep(self._interval)
