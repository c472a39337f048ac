"""A background task that audits deadline breaches as they happen (once per deadline, across restarts)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from gateway.tasks import Sweeper
from gateway.workflow.service import ReferralWorkflow

log = structlog.get_logger("gateway.workflow.sweeper")


class BreachSweeper(Sweeper):
    """Runs `ReferralWorkflow.record_breaches` every `interval` seconds until stopped."""

    name = "referral-breach-sweeper"

    def __init__(self, workflow: ReferralWorkflow, *, interval: float,
                 on_overdue: Callable[[Mapping[tuple[str, str], int]], None] | None = None) -> None:
        super().__init__(interval=interval)
        self._workflow = workflow
        self._on_overdue = on_overdue  # told the overdue count by (mash, rating) after every sweep

    async def sweep(self) -> int:
        """One sweep: audit new breaches, then report the overdue counts; how many breaches were new."""
        found = await self._workflow.record_breaches()
        if found:
            log.warning("referral deadlines breached", count=found)
        if self._on_overdue is not None:
            self._on_overdue(await self._workflow.overdue())
        return found
