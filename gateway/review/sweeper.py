"""A background task that declines reviews nobody decided in time, so requester and agency hear of it promptly."""

from __future__ import annotations

import structlog

from gateway.service.reviews import ReviewDesk
from gateway.tasks import Sweeper

log = structlog.get_logger("gateway.review.sweeper")


class ReviewSweeper(Sweeper):
    """Runs `ReviewDesk.expire_due` every `interval` seconds until stopped (reads expire due reviews too)."""

    name = "review-expiry-sweeper"

    def __init__(self, desk: ReviewDesk, *, interval: float) -> None:
        super().__init__(interval=interval)
        self._desk = desk

    async def sweep(self) -> int:
        expired = await self._desk.expire_due()
        if expired:
            log.info("reviews expired", count=len(expired))
        return len(expired)
