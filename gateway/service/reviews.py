"""The review use cases: hold an agency's answer for review, let its reviewers list, open and decide,
expire what is not decided in time, and release an approval to the requester through the normal answer path.

Nothing under review is fetched when the request is made: the gateway asks the node only whether it holds
records in each category under review, at EXISTS, and only where the policy lets the requester know that
much without review; a review is created only for what the node holds. The reviewer's view asks the node
for the records when opened, and the requester's release asks it again at the approved levels, redacted
exactly like any other answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from gateway.audit.sealing import IdentifierSealer
from gateway.domain import AnswerStatus, AuditEvent, AuditKind, Clock, DisclosureLevel, SubjectIdentifiers
from gateway.errors import FieldViolation, GatewayError, InvalidRequest
from gateway.review.model import Review, ReviewAlreadyDecided, ReviewNotFound, ReviewState
from gateway.review.store import ReviewStore
from gateway.service.access import audited_user
from gateway.service.admission import AdmittedRequest, BaseEvent, requester_area
from gateway.service.fanout import AgencyFanout, AgencyOutcome
from gateway.service.planning import AgencyPlan
from gateway.service.ports import AuditSink, PolicySource, PolicyView
from gateway.service.validation import Caller, QueryCommand
from gateway.tasks import together

log = structlog.get_logger("gateway.reviews")

NOT_IN_TIME = "not decided in time"
MAX_REASON = 500
MAX_LIST = 200
_EXPIRE_BATCH = 100
_FETCH_TIMEOUT = 10.0


class ReviewEvent(enum.Enum):
    """What happened to a review, and so whom a notifier tells."""

    REQUESTED = "requested"  # the owning agency's reviewers
    DECIDED = "decided"  # the requester
    EXPIRED = "expired"  # the requester and the owning agency


class ReviewNotifier(Protocol):
    """Tells the parties of a review that it changed; references only (review id, referral id), never content."""

    async def notify(self, review: Review, event: ReviewEvent) -> None: ...


class LogNotifier:
    """The notifier without a referral workflow (no outbox): one application-log line per notice."""

    async def notify(self, review: Review, event: ReviewEvent) -> None:
        log.info("review notice", review_id=review.review_id, state=review.state.value, event=event.value)


class ReferralDeadlines(Protocol):
    """The referral a query was linked to: its rating, and the deadline that rating sets for a review."""

    async def deadline(self, referral_id: str, requested_at: datetime) -> tuple[str, datetime | None]:
        """(rating, deadline) for a review requested at `requested_at`; ("", None) for an unrated referral,
        and (rating, None) for a rating with no target."""
        ...


@dataclass(frozen=True, slots=True)
class Opened:
    """Reviews stored for one request, with their "requested" audit entries still to be appended (before
    anything that names them leaves) and their notices still to be sent (after that append)."""

    reviews: dict[str, Review]
    steps: tuple[AuditEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class ReviewDecision:
    """What a reviewer decided: approve (as requested, lower, or some categories only) or decline with a reason."""

    approve: bool
    level: DisclosureLevel | None = None  # None: each category at the level requested
    categories: tuple[str, ...] = ()  # empty: every category under review
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    """A review as its requester sees it, with the released answer once approved."""

    review: Review
    answer: AgencyOutcome | None = None


def agency_of_reviewers(policy: PolicyView, caller: Caller) -> tuple[str, bool]:
    """The agency the caller's role reviews for and whether only as escalation; ("", False) if it reviews none."""
    role = policy.roles.get(caller.role)
    if role is None or role.reviews not in ("first", "escalation"):
        return "", False
    return role.agency, role.reviews == "escalation"


class ReviewDesk:
    """The review use cases over one review store; every step is an audit entry before anything is returned."""

    def __init__(
        self, *, store: ReviewStore, policy: PolicySource, audit: AuditSink, fanout: AgencyFanout,
        sealer: IdentifierSealer, clock: Clock, notifier: ReviewNotifier | None = None,
    ) -> None:
        self._store = store
        self._policy = policy
        self._audit = audit
        self._fanout = fanout
        self._sealer = sealer
        self._clock = clock
        self._notifier: ReviewNotifier = notifier or LogNotifier()
        self._referrals: ReferralDeadlines | None = None
        self._decided = asyncio.Condition()  # wakes outcome watchers in this process
        self._telling: set[asyncio.Task[None]] = set()  # notices `announce_soon` is still writing

    def use_notifier(self, notifier: ReviewNotifier) -> None:
        """Send notices through `notifier` from now on (the gateway's referral outbox, once it is open)."""
        self._notifier = notifier

    def use_referrals(self, referrals: ReferralDeadlines) -> None:
        """Take review deadlines from the rating of the referral a query is linked to."""
        self._referrals = referrals

    # -- the requester's side ---------------------------------------------------------------------------
    async def hold(self, request: AdmittedRequest, plans: Sequence[AgencyPlan]) -> dict[str, Review]:
        """One pending review per agency that holds records in a category under review, stored, audited and
        announced (`store_reviews`, the "requested" entries appended, then `announce`)."""
        opened = await self.store_reviews(request, plans)
        if opened.reviews:
            await self._audit.append(list(opened.steps))
            await self.announce(opened)
        return opened.reviews

    async def announce(self, opened: Opened) -> None:
        """Tell the owning agencies' reviewers of the reviews; only once their "requested" entries are audited."""
        for review in opened.reviews.values():
            await self._tell(review, ReviewEvent.REQUESTED)

    def announce_soon(self, opened: Opened) -> None:
        """`announce` without keeping the caller waiting for the notices' commit. A notice that cannot be
        written is only logged, never the caller's error (see `_tell`), so an answer need not wait for its
        fsync; `drain` waits for the notices still being written (before the outbox closes)."""
        if not opened.reviews:
            return
        task = asyncio.create_task(self.announce(opened))
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    async def drain(self) -> None:
        """Wait until every notice `announce_soon` started is written (or its failure logged)."""
        while self._telling:
            await asyncio.gather(*self._telling, return_exceptions=True)

    async def store_reviews(self, request: AdmittedRequest, plans: Sequence[AgencyPlan]) -> Opened:
        """One pending review per agency that holds records in a category under review, durably stored; the
        caller appends their "requested" entries (`Opened.steps`) before any answer naming them leaves.

        A category the requester may know of without review (EXISTS or more) is put under review only if
        its node says it holds records in it; one they may not know of at all is never asked about, so it is
        put under review as the policy says, whatever the node holds.
        """
        now = self._clock.now()
        candidates = [plan for plan in plans if plan.review]
        if not candidates:
            return Opened({})
        held = await together([self._held(request, plan) for plan in candidates])
        if not any(held):
            return Opened({})
        rating, due = await self._rated_deadline(request, now)
        reviews = {}
        for plan, categories in zip(candidates, held, strict=True):
            if not categories:
                continue  # nothing under review: the answer is what policy gives without review
            agency = request.policy.agencies[plan.agency]
            escalate = agency.escalate_after_hours
            cmd, base = request.command, request.base_event
            reviews[plan.agency] = Review(
                review_id=f"rev-{uuid.uuid4()}", request_id=request.request_id, agency=plan.agency,
                requested={c: plan.review[c] for c in categories}, granted=plan.level,
                caller=request.caller.identity, user=request.caller.user, role=request.caller.role,
                requester_agency=request.caller.agency, purpose=cmd.purpose, legal_basis=cmd.legal_basis,
                agreement=cmd.agreement, case_reference=base.case_reference,
                sealed_identifiers=base.sealed_identifiers, policy_version=request.policy.version, created_at=now,
                deadline=due or now + timedelta(hours=agency.review_hours),
                escalate_at=now + timedelta(hours=escalate) if escalate else None,
                referral_id=cmd.referral_id, rating=rating,
            )
        if not reviews:
            return Opened({})
        await self._store.create(list(reviews.values()))
        return Opened(reviews, tuple(
            self._step(r, "requested", base=request.base_event, categories=tuple(r.requested)) for r in reviews.values()
        ))

    async def _held(self, request: AdmittedRequest, plan: AgencyPlan) -> tuple[str, ...]:
        """The plan's categories under review that go into a review: those the node holds records in (asked at
        EXISTS, one category at a time), and those the requester may not know of without review."""
        knowable = [c for c in plan.review if c in plan.content or c in plan.existence]
        if not plan.asked:  # the locator: the node holds no token of the subject, so it never hears of it
            return tuple(c for c in plan.review if c not in knowable)
        answers = await together([
            self._fanout.answer(request, AgencyPlan(plan.agency, {}, (c,), ())) for c in knowable])
        held = {c for c, a in zip(knowable, answers, strict=True)
                if a.outcome.status is AnswerStatus.MATCH and not a.outcome.ambiguous}
        return tuple(c for c in plan.review if c in held or c not in knowable)

    async def _rated_deadline(self, request: AdmittedRequest, now: datetime) -> tuple[str, datetime | None]:
        referral_id = request.command.referral_id
        if not referral_id or self._referrals is None:
            return "", None
        try:
            return await self._referrals.deadline(referral_id, now)
        except GatewayError as exc:  # the referral store is down: the policy default still holds the line
            log.warning("review deadline from the referral unavailable", error_type=type(exc).__name__)
            return "", None

    async def outcome(self, caller: Caller, review_id: str) -> ReviewOutcome:
        """The review's state for its requester; once approved, the released answer (fetched and audited now)."""
        return await self._outcome_of(await self._requester_review(caller, review_id))

    async def watch(self, caller: Caller, review_id: str, *, poll: float = 1.0) -> AsyncGenerator[ReviewOutcome, None]:
        """The review as it stands now; if pending, then its outcome once decided or expired, and the end.

        A decision or expiry in this process wakes the watcher at once; one made by another gateway process
        sharing the store is seen within `poll` seconds. Cancelling (the call's deadline) stops the wait.
        """
        review = await self._requester_review(caller, review_id)
        if not review.pending:
            yield await self._outcome_of(review)
            return
        yield ReviewOutcome(review)
        while review.pending:
            left = (review.deadline - self._clock.now()).total_seconds()
            if left > 0:
                async with self._decided:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._decided.wait(), min(poll, left))
            else:
                await self.expire_due()
            found = await self._store.get(review_id)
            if found is None:  # cannot happen short of someone deleting the row; say nothing more
                raise ReviewNotFound("no review with that id was requested by this caller")
            review = found
        yield await self._outcome_of(review)

    async def _outcome_of(self, review: Review) -> ReviewOutcome:
        if review.state is not ReviewState.APPROVED:
            return ReviewOutcome(review)
        return ReviewOutcome(review, await self._release(review))

    async def _requester_review(self, caller: Caller, review_id: str) -> Review:
        _check_id(review_id)
        await self.expire_due()
        review = await self._store.get(review_id)
        # Only the requester (certificate, user and role) learns a review's outcome, or that it exists.
        if review is None or (review.caller, review.user, review.role) != (caller.identity, caller.user, caller.role):
            raise ReviewNotFound("no review with that id was requested by this caller")
        return review

    async def _tell(self, review: Review, event: ReviewEvent) -> None:
        """Notify, and wake this process's watchers. The decision is stored already, so a notice that cannot be
        written is logged, not raised: the requester still has the outcome by GetReviewOutcome."""
        if event is not ReviewEvent.REQUESTED:
            async with self._decided:
                self._decided.notify_all()
        try:
            await self._notifier.notify(review, event)
        except GatewayError as exc:
            log.warning("review notice not written", review_id=review.review_id, event=event.value,
                        error_type=type(exc).__name__)

    async def _release(self, review: Review) -> AgencyOutcome:
        """Ask the node for exactly the approved categories and levels, capped by the policy now in force."""
        policy = self._policy.current
        decisions = policy.decisions_for(review.role, review.purpose).get(review.agency, {})
        levels: dict[str, DisclosureLevel] = {}
        for category, level in review.approved.items():
            decision = decisions.get(category)
            ceiling = max(decision.level, decision.review) if decision is not None else DisclosureLevel.NONE
            if min(level, ceiling) > DisclosureLevel.NONE:
                levels[category] = min(level, ceiling)
        plan = AgencyPlan(
            review.agency, {c: lvl for c, lvl in levels.items() if lvl >= DisclosureLevel.PERTINENT},
            tuple(c for c, lvl in levels.items() if lvl == DisclosureLevel.EXISTS),
            tuple(f"{c}: review {review.review_id}" for c in levels),
        )
        caller = Caller(review.caller, review.requester_agency, review.user, review.role)
        request = await self._request_for(review, caller, policy, "released")
        answer = await self._fanout.answer(request, plan)
        (receipt,) = await self._audit.append([answer.event])
        return replace(answer.outcome, receipt=receipt, review_id=review.review_id)

    # -- the reviewer's side ----------------------------------------------------------------------------
    async def pending(self, caller: Caller, *, limit: int = 50) -> list[Review]:
        """The caller's agency's undecided reviews, nearest deadline then oldest first (escalated ones only for
        an escalation reviewer)."""
        agency, escalation_only = self._reviewer(caller)
        if not 0 < limit <= MAX_LIST:
            raise InvalidRequest([FieldViolation("limit", f"must be between 1 and {MAX_LIST}")])
        await self.expire_due()
        now = self._clock.now()
        found = await self._store.pending(agency, limit=MAX_LIST)
        if escalation_only:
            found = [r for r in found if r.escalate_at is not None and r.escalate_at <= now]
        return found[:limit]

    async def open(self, caller: Caller, review_id: str) -> tuple[Review, AgencyOutcome]:
        """The review and the agency's own records under it, fetched from the node now; the opening is audited."""
        review = await self._reviewer_review(caller, review_id)
        plan = AgencyPlan(review.agency, dict.fromkeys(review.requested, DisclosureLevel.FULL), (),
                          tuple(f"{c}: review {review.review_id}" for c in review.requested))
        request = await self._request_for(review, caller, self._policy.current, "opened")
        answer = await self._fanout.answer(request, plan)
        event = replace(answer.event, kind=AuditKind.REVIEW)
        (receipt,) = await self._audit.append([event])
        return review, replace(answer.outcome, receipt=receipt, review_id=review.review_id)

    async def decide(self, caller: Caller, review_id: str, decision: ReviewDecision) -> Review:
        """Store the decision if nobody decided first (else ReviewAlreadyDecided with the winner), then audit it."""
        violations = _decision_problems(decision)
        review = await self._reviewer_review(caller, review_id, violations)
        unknown = [c for c in decision.categories if c not in review.requested]
        if unknown:
            raise InvalidRequest([FieldViolation("categories", "names a category that is not under this review")])
        now = self._clock.now()
        if decision.approve:
            chosen = decision.categories or tuple(review.requested)
            approved = {c: min(review.requested[c], decision.level or review.requested[c]) for c in chosen}
            decided = replace(review, state=ReviewState.APPROVED, approved=approved, reason=decision.reason)
        else:
            decided = replace(review, state=ReviewState.DECLINED, approved={}, reason=decision.reason)
        decided = replace(decided, decided_by=caller.user, decided_role=caller.role, decided_at=now)
        stored = await self._store.decide(decided)
        await self._audit.append([self._step(stored, stored.state.value.lower(), actor=caller)])
        await self._tell(stored, ReviewEvent.DECIDED)
        return stored

    async def expire_due(self) -> list[Review]:
        """Decline every review past its deadline ("not decided in time"), audit it and tell both sides."""
        now = self._clock.now()
        expired = []
        for review in await self._store.due(now, limit=_EXPIRE_BATCH):
            try:
                stored = await self._store.decide(replace(
                    review, state=ReviewState.EXPIRED, decided_at=now, reason=NOT_IN_TIME, approved={}))
            except ReviewAlreadyDecided:  # decided by a reviewer meanwhile: theirs stands
                continue
            expired.append(stored)
        if expired:
            await self._audit.append([self._step(r, "expired") for r in expired])
            for review in expired:
                await self._tell(review, ReviewEvent.EXPIRED)
        return expired

    def _reviewer(self, caller: Caller) -> tuple[str, bool]:
        agency, escalation_only = agency_of_reviewers(self._policy.current, caller)
        if not agency:
            raise ReviewNotFound("this role reviews for no agency")
        return agency, escalation_only

    async def _reviewer_review(
        self, caller: Caller, review_id: str, violations: Sequence[FieldViolation] = ()
    ) -> Review:
        agency, escalation_only = self._reviewer(caller)
        _check_id(review_id, violations)
        await self.expire_due()
        review = await self._store.get(review_id)
        # Another agency's review, or one not yet escalated, is "not found": its existence is not theirs to learn.
        if review is None or review.agency != agency or (
            escalation_only and (review.escalate_at is None or review.escalate_at > self._clock.now())
        ):
            raise ReviewNotFound("no review with that id is open to this reviewer")
        return review

    async def _request_for(self, review: Review, caller: Caller, policy: PolicyView, step: str) -> AdmittedRequest:
        subject = await asyncio.to_thread(self._unseal, review)
        command = QueryCommand(review.request_id, subject, review.purpose, review.legal_basis, review.agreement,
                               review.case_reference, tuple(review.requested))
        now = self._clock.now()
        base = AuditEvent(
            kind=AuditKind.DISCLOSURE, occurred_at=now, request_id=review.request_id, caller=caller.identity,
            user=caller.user, role=caller.role, purpose=review.purpose, legal_basis=review.legal_basis,
            agreement=review.agreement, case_reference=review.case_reference,
            sealed_identifiers=review.sealed_identifiers, policy_version=policy.version,
            details={"review_id": review.review_id, "step": step, **requester_area(policy, review.requester_agency)},
        )
        deadline = asyncio.get_running_loop().time() + _FETCH_TIMEOUT
        return AdmittedRequest(caller, command, policy, now.date(), deadline, BaseEvent(base))

    def _unseal(self, review: Review) -> SubjectIdentifiers:
        if not review.sealed_identifiers:
            return SubjectIdentifiers()
        return self._sealer.open(review.sealed_identifiers, aad=review.request_id.encode())

    def _step(self, review: Review, step: str, *, base: AuditEvent | None = None, actor: Caller | None = None,
              categories: tuple[str, ...] = ()) -> AuditEvent:
        levels = review.approved if review.state is ReviewState.APPROVED else review.requested
        return AuditEvent(
            kind=AuditKind.REVIEW, occurred_at=self._clock.now(), request_id=review.request_id,
            caller=actor.identity if actor else review.caller, user=audited_user(actor) if actor else review.user,
            role=actor.role if actor else review.role, purpose=review.purpose, legal_basis=review.legal_basis,
            agreement=review.agreement, case_reference=review.case_reference,
            subject_tokens=base.subject_tokens if base else (), sealed_identifiers=review.sealed_identifiers,
            agency=review.agency, status=review.state.value,
            level=max(levels.values(), default=DisclosureLevel.NONE).name,
            categories=categories or tuple(sorted(levels)), policy_version=review.policy_version,
            reason=review.reason if step in ("declined", "expired") else "",
            details=_details(review, step),
        )


def _details(review: Review, step: str) -> Mapping[str, str]:
    details = {"review_id": review.review_id, "step": step, "deadline": review.deadline.isoformat()}
    if review.approved:
        details["approved"] = ",".join(f"{c}={lvl.name}" for c, lvl in sorted(review.approved.items()))
    return details


def _check_id(review_id: str, violations: Sequence[FieldViolation] = ()) -> None:
    found = list(violations)
    if not review_id.strip():
        found.insert(0, FieldViolation("review_id", "is required"))
    elif len(review_id) > 100 or not review_id.isascii() or not review_id.isprintable():
        found.insert(0, FieldViolation("review_id", "is not a review id"))
    if found:
        raise InvalidRequest(found)


def _decision_problems(decision: ReviewDecision) -> list[FieldViolation]:
    found = []
    if len(decision.reason) > MAX_REASON:
        found.append(FieldViolation("reason", f"is longer than {MAX_REASON} characters"))
    if decision.approve:
        if decision.level is not None and decision.level <= DisclosureLevel.NONE:
            found.append(FieldViolation("level", "an approval releases EXISTS, PERTINENT or FULL; decline instead"))
    else:
        if not decision.reason.strip():
            found.append(FieldViolation("reason", "a decline needs a reason"))
        if decision.level is not None or decision.categories:
            found.append(FieldViolation("level", "a decline releases nothing; give no level or categories"))
    return found
