"""ReviewService servicer: translate, delegate to the review desk, audit refused input. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.api.calls import Call
from gateway.api.convert import answer_to_proto
from gateway.domain import DisclosureLevel
from gateway.errors import FieldViolation, InvalidRequest
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import review_service_pb2 as review_pb
from gateway.review.model import Review, ReviewState
from gateway.service.access import Refusals
from gateway.service.reviews import ReviewDecision, ReviewDesk, ReviewOutcome

STATES = {
    ReviewState.PENDING_REVIEW: hub_pb.REVIEW_STATE_PENDING_REVIEW,
    ReviewState.APPROVED: hub_pb.REVIEW_STATE_APPROVED,
    ReviewState.DECLINED: hub_pb.REVIEW_STATE_DECLINED,
    ReviewState.EXPIRED: hub_pb.REVIEW_STATE_EXPIRED,
}
_LEVELS = {level: common_pb.DisclosureLevel.Value(f"DISCLOSURE_LEVEL_{level.name}") for level in DisclosureLevel}
_LEVEL_FROM = {v: k for k, v in _LEVELS.items()}
_DEFAULT_LIMIT = 50


def _ts(when: datetime | None) -> Timestamp | None:
    if when is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(when.astimezone(UTC))
    return ts


def review_to_proto(review: Review) -> review_pb.Review:
    """A review for its reviewers and requester: the request's context, never the subject's identifiers."""
    return review_pb.Review(
        review_id=review.review_id, request_id=review.request_id, agency=review.agency,
        state=STATES[review.state],
        requested=[review_pb.ReviewCategory(category=c, level=_LEVELS[lvl]) for c, lvl in review.requested.items()],
        granted=_LEVELS[review.granted], purpose=review.purpose, legal_basis=review.legal_basis,
        agreement=review.agreement, case_reference=review.case_reference, requester_role=review.role,
        requester_agency=review.requester_agency, requester_user=review.user, created_at=_ts(review.created_at),
        deadline=_ts(review.deadline), rating=review.rating,
        approved=[review_pb.ReviewCategory(category=c, level=_LEVELS[lvl]) for c, lvl in review.approved.items()],
        decided_by=review.decided_by, decided_role=review.decided_role, decided_at=_ts(review.decided_at),
        reason=review.reason,
    )


def decision_from_proto(request: review_pb.DecideReviewRequest) -> ReviewDecision:
    """The reviewer's decision; InvalidRequest naming every field that cannot be read."""
    violations = []
    if request.verdict not in (review_pb.REVIEW_VERDICT_APPROVE, review_pb.REVIEW_VERDICT_DECLINE):
        violations.append(FieldViolation("verdict", "must be APPROVE or DECLINE"))
    level = None
    if request.level != common_pb.DISCLOSURE_LEVEL_UNSPECIFIED:
        level = _LEVEL_FROM.get(request.level)
        if level is None:
            violations.append(FieldViolation("level", "is not a disclosure level"))
    for i, category in enumerate(request.categories):
        if not category.strip() or len(category) > 100:
            violations.append(FieldViolation(f"categories[{i}]", "is not a record category"))
    if violations:
        raise InvalidRequest(violations)
    return ReviewDecision(request.verdict == review_pb.REVIEW_VERDICT_APPROVE, level,
                          tuple(request.categories), request.reason)


class ReviewServicer:
    def __init__(self, desk: ReviewDesk, refusals: Refusals) -> None:
        self._desk = desk
        self._refusals = refusals

    async def ListReviews(self, request: review_pb.ListReviewsRequest, call: Call) -> review_pb.ListReviewsResponse:
        limit = request.limit or _DEFAULT_LIMIT
        reviews = await self._refusals.checked(call.caller, call.rpc, self._desk.pending(call.caller, limit=limit))
        return review_pb.ListReviewsResponse(reviews=[review_to_proto(r) for r in reviews])

    async def OpenReview(self, request: review_pb.OpenReviewRequest, call: Call) -> review_pb.OpenReviewResponse:
        review, records = await self._refusals.checked(
            call.caller, call.rpc, self._desk.open(call.caller, request.review_id))
        return review_pb.OpenReviewResponse(review=review_to_proto(review), records=answer_to_proto(records))

    async def DecideReview(
        self, request: review_pb.DecideReviewRequest, call: Call
    ) -> review_pb.DecideReviewResponse:
        async with self._refusals.audited(call.caller, call.rpc):
            decision = decision_from_proto(request)
            review = await self._desk.decide(call.caller, request.review_id, decision)
        return review_pb.DecideReviewResponse(review=review_to_proto(review))

    async def GetReviewOutcome(
        self, request: review_pb.GetReviewOutcomeRequest, call: Call
    ) -> review_pb.GetReviewOutcomeResponse:
        outcome = await self._refusals.checked(
            call.caller, call.rpc, self._desk.outcome(call.caller, request.review_id))
        return review_pb.GetReviewOutcomeResponse(
            review=review_to_proto(outcome.review),
            answer=answer_to_proto(outcome.answer) if outcome.answer is not None else None,
        )

    async def WatchReviewOutcome(
        self, request: review_pb.WatchReviewOutcomeRequest, call: Call
    ) -> AsyncIterator[review_pb.WatchReviewOutcomeResponse]:
        outcomes = self._desk.watch(call.caller, request.review_id)
        try:
            # The first item is where a bad id or another requester's review is refused (and audited).
            first = await self._refusals.checked(call.caller, call.rpc, anext(outcomes))
            yield _watched(first)
            async for outcome in outcomes:
                yield _watched(outcome)
        finally:
            await outcomes.aclose()


def _watched(outcome: ReviewOutcome) -> review_pb.WatchReviewOutcomeResponse:
    return review_pb.WatchReviewOutcomeResponse(
        review=review_to_proto(outcome.review),
        answer=answer_to_proto(outcome.answer) if outcome.answer is not None else None,
    )
