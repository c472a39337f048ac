"""Review notices through the referral workflow's durable outbox, and review deadlines from referral ratings.

Both need the referral workflow, which the gateway opens after the review desk; it hands them to the desk
once it is open (`ReviewDesk.use_notifier`, `ReviewDesk.use_referrals`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from gateway.domain import Clock
from gateway.review.model import Review
from gateway.service.reviews import ReviewEvent
from gateway.workflow.policy import WorkflowPolicy
from gateway.workflow.referral import NoticeKind, Notification
from gateway.workflow.store import ReferralNotFound, ReferralStore

KINDS = {
    ReviewEvent.REQUESTED: NoticeKind.REVIEW_REQUESTED,
    ReviewEvent.DECIDED: NoticeKind.REVIEW_DECIDED,
    ReviewEvent.EXPIRED: NoticeKind.REVIEW_EXPIRED,
}
# The steps whose working-hour target a review of research under a rated referral inherits, in order.
STEPS = ("research", "decision")


class _Partnership(Protocol):
    """What the notifier needs of the policy in force: who reviews for an agency, and which certificates
    may assert those roles."""

    @property
    def bindings(self) -> Mapping[str, frozenset[str]]: ...

    def reviewers(self, agency: str, *, escalated: bool = False) -> tuple[str, ...]: ...


class OutboxNotifier:
    """Writes each review notice to the outbox `WatchNotifications` reads; references only, never content.

    A new review goes to every certificate bound to a first reviewer role of the owning agency; a decision
    to the requester's certificate; an expiry to the requester and to the owning agency (its receiver in
    workflow.yaml, and its reviewers' certificates).
    """

    def __init__(self, post: Callable[[Sequence[Notification]], Awaitable[None]],
                 policy: Callable[[], _Partnership], receivers: Callable[[], Mapping[str, str]],
                 clock: Clock) -> None:
        self._post = post
        self._policy = policy
        self._receivers = receivers
        self._clock = clock

    def recipients(self, review: Review, event: ReviewEvent) -> list[str]:
        if event is ReviewEvent.DECIDED:
            return [review.caller]
        policy = self._policy()
        roles = set(policy.reviewers(review.agency))
        reviewers = sorted(identity for identity, bound in policy.bindings.items() if bound & roles)
        if event is ReviewEvent.REQUESTED:
            return reviewers
        agency = [self._receivers().get(review.agency, ""), *reviewers]
        return list(dict.fromkeys(r for r in (review.caller, *agency) if r))

    async def notify(self, review: Review, event: ReviewEvent) -> None:
        now = self._clock.now()
        await self._post([
            Notification(recipient, KINDS[event], review.referral_id, now, review_id=review.review_id)
            for recipient in self.recipients(review, event)
        ])


class RatedDeadlines:
    """A review of research under a rated referral is due when the rating's target for research (else for the
    decision) runs out, counted in working hours from the review's request, as the workflow counts them."""

    def __init__(self, store: ReferralStore, workflow: Callable[[], WorkflowPolicy]) -> None:
        self._store = store
        self._workflow = workflow

    async def deadline(self, referral_id: str, requested_at: datetime) -> tuple[str, datetime | None]:
        try:
            referral = await self._store.get(referral_id)
        except ReferralNotFound:
            return "", None
        workflow = self._workflow()
        mash = workflow.mashes.get(referral.mash)
        if not referral.rating or mash is None or referral.rating not in mash.ratings:
            return referral.rating, None
        for step in STEPS:
            due = workflow.due(referral.mash, referral.rating, step, requested_at)
            if due is not None:
                return referral.rating, due
        return referral.rating, None
