"""A background task that declines reviews nobody decided in time, so requester and agency hear of it promptly."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from gateway.errors import GatewayError
from gateway.service.reviews import ReviewDesk

log = structlog.get_logger("gateway.review.sweeper")


class ReviewSweeper:
    """Runs `ReviewDesk.expire_due` every `interval` seconds until stopped (reads expire due reviews too)."""

    def __init__(self, desk: ReviewDesk, *, interval: float) -> None:
        self._desk = desk
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="review-expiry-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                expired = await self._desk.expire_due()
                if expired:
                    log.info("reviews expired", count=len(expired))
            except GatewayError as exc:
                # The audit or the store is down: nothing was decided, so the next sweep tries again.
                log.warning("review expiry sweep failed", error_type=type(exc).__name__)
            await asyncio.sleep(self._interval)
