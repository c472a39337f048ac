"""ReviewService over real mTLS: a researcher's answer held for health's review, decided, and released."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from hub_helpers import SCREENING, error_reason, field_violations, rich_status, subject

from agency_stubs.cast import JODIE_MERCER, NOAH_FENWICK
from gateway.api.tls import client_credentials
from gateway.demo.partnership import Partnership
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2 as ref_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2_grpc as ref_grpc
from gateway.generated.mash.gateway.v1 import review_service_pb2 as review_pb
from gateway.generated.mash.gateway.v1 import review_service_pb2_grpc as review_grpc

pytestmark = pytest.mark.slow

DIAGNOSIS = "Moderate depression with anxiety"


class Client:
    """One system's ReviewService stub, acting for one practitioner."""

    def __init__(self, partnership: Partnership, agency: str, system: str, user: str, role: str) -> None:
        channel = partnership.channel(client_credentials(partnership.pki, agency, system))
        self.stub = review_grpc.ReviewServiceStub(channel)
        self.metadata = (("x-mash-user", user), ("x-mash-role", role))

    async def call(self, rpc: str, request: Any) -> Any:
        return await getattr(self.stub, rpc)(request, metadata=self.metadata, timeout=10)


async def held(partnership: Partnership) -> hub_pb.AgencyAnswer:
    researcher = partnership.client("police", "case-system", user="r.police", role="mash_researcher_police")
    response = await researcher.query(subject=common_pb2.SubjectIdentifiers(**subject(JODIE_MERCER)), **SCREENING)
    (health,) = [a for a in response.answers if a.agency == "health"]
    return health


async def test_a_review_from_request_to_release(partnership: Partnership) -> None:
    """PENDING_REVIEW with id and deadline; health's reviewer opens and approves; the requester gets it redacted."""
    health = await held(partnership)
    assert health.review.state == hub_pb.REVIEW_STATE_PENDING_REVIEW
    assert health.review.review_id
    assert health.review.deadline.seconds > 0
    assert DIAGNOSIS not in str(health)
    assert "health.mental_health" not in health.categories
    researcher = Client(partnership, "police", "case-system", "r.police", "mash_researcher_police")
    pending = await researcher.call("GetReviewOutcome",
                                    review_pb.GetReviewOutcomeRequest(review_id=health.review.review_id))
    assert pending.review.state == hub_pb.REVIEW_STATE_PENDING_REVIEW
    assert not pending.HasField("answer")

    reviewer = Client(partnership, "health", "review-console", "dp.1", "health_designated_professional")
    listed = await reviewer.call("ListReviews", review_pb.ListReviewsRequest())
    assert [r.review_id for r in listed.reviews] == [health.review.review_id]
    assert listed.reviews[0].requester_role == "mash_researcher_police"
    opened = await reviewer.call("OpenReview", review_pb.OpenReviewRequest(review_id=health.review.review_id))
    assert DIAGNOSIS in str(opened.records)  # the reviewer sees health's own record, fetched now
    decided = await reviewer.call("DecideReview", review_pb.DecideReviewRequest(
        review_id=health.review.review_id, verdict=review_pb.REVIEW_VERDICT_APPROVE,
        level=common_pb2.DISCLOSURE_LEVEL_PERTINENT))
    assert decided.review.state == hub_pb.REVIEW_STATE_APPROVED

    outcome = await researcher.call("GetReviewOutcome",
                                    review_pb.GetReviewOutcomeRequest(review_id=health.review.review_id))
    assert outcome.review.state == hub_pb.REVIEW_STATE_APPROVED
    assert [r.category for r in outcome.answer.records] == ["health.mental_health"]
    assert DIAGNOSIS not in str(outcome.answer)  # PERTINENT redaction applies, as to any answer
    assert outcome.answer.receipt.leaf_hash


async def test_two_reviewers_deciding_at_once_one_gets_failed_precondition(partnership: Partnership) -> None:
    """Exactly one decision lands; the other is FAILED_PRECONDITION naming the winning decision."""
    health = await held(partnership)
    one = Client(partnership, "health", "review-console", "dp.1", "health_designated_professional")
    two = Client(partnership, "health", "review-console", "dp.2", "health_designated_professional")
    approve = review_pb.DecideReviewRequest(review_id=health.review.review_id,
                                            verdict=review_pb.REVIEW_VERDICT_APPROVE)
    decline = review_pb.DecideReviewRequest(review_id=health.review.review_id,
                                            verdict=review_pb.REVIEW_VERDICT_DECLINE, reason="not proportionate")
    results = await asyncio.gather(one.call("DecideReview", approve), two.call("DecideReview", decline),
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    wins = [r for r in results if isinstance(r, review_pb.DecideReviewResponse)]
    assert len(errors) == len(wins) == 1
    assert errors[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(errors[0]) == "REVIEW_ALREADY_DECIDED"
    info = error_details_pb2.ErrorInfo()
    assert rich_status(errors[0]).details[0].Unpack(info)
    assert hub_pb.ReviewState.Name(wins[0].review.state) == f"REVIEW_STATE_{info.metadata['state']}"


async def test_another_agency_never_sees_health_reviews(partnership: Partnership) -> None:
    """Police's supervisor lists nothing of health's and cannot open its review."""
    health = await held(partnership)
    police = Client(partnership, "police", "review-console", "ps.1", "police_mash_supervisor")
    assert list((await police.call("ListReviews", review_pb.ListReviewsRequest())).reviews) == []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await police.call("OpenReview", review_pb.OpenReviewRequest(review_id=health.review.review_id))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_input_is_invalid_argument_with_field_violations_and_audited(partnership: Partnership) -> None:
    """An empty id, a missing verdict and a decline without reason are each named, and the refusal is audited."""
    reviewer = Client(partnership, "health", "review-console", "dp.1", "health_designated_professional")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await reviewer.call("DecideReview", review_pb.DecideReviewRequest(review_id=""))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(raised.value)) == {"verdict"}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await reviewer.call("DecideReview", review_pb.DecideReviewRequest(
            review_id="", verdict=review_pb.REVIEW_VERDICT_DECLINE))
    assert set(field_violations(raised.value)) == {"review_id", "reason"}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await reviewer.call("ListReviews", review_pb.ListReviewsRequest(limit=5000))
    assert set(field_violations(raised.value)) == {"limit"}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await reviewer.call("OpenReview", review_pb.OpenReviewRequest(review_id="x" * 300))
    assert set(field_violations(raised.value)) == {"review_id"}
    assert "x" * 300 not in str(raised.value.details())  # no value echoed
    researcher = Client(partnership, "police", "case-system", "r.police", "mash_researcher_police")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await researcher.call("GetReviewOutcome", review_pb.GetReviewOutcomeRequest(review_id="\x00bad"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(raised.value)) == {"review_id"}
    assert partnership.gateway is not None
    entries = partnership.gateway.deps.review.list_entries()
    refusals = [r.event async for r in entries if r.event.kind.value == "refusal"]
    assert [e.details["rpc"] for e in refusals[-5:]] == ["DecideReview", "DecideReview", "ListReviews", "OpenReview",
                                                         "GetReviewOutcome"]


async def test_watch_review_outcome_delivers_the_decision_over_mtls(partnership: Partnership) -> None:
    """The requester's stream says PENDING_REVIEW, then delivers the redacted release when health approves, and
    ends; a reconnect gets the stored outcome at once; another researcher is NOT_FOUND; a bad id is audited."""
    health = await held(partnership)
    review_id = health.review.review_id
    researcher = Client(partnership, "police", "case-system", "r.police", "mash_researcher_police")
    stream = researcher.stub.WatchReviewOutcome(review_pb.WatchReviewOutcomeRequest(review_id=review_id),
                                                metadata=researcher.metadata, timeout=10)
    first = await stream.read()
    assert first.review.state == hub_pb.REVIEW_STATE_PENDING_REVIEW
    assert not first.HasField("answer")
    reviewer = Client(partnership, "health", "review-console", "dp.1", "health_designated_professional")
    await reviewer.call("DecideReview", review_pb.DecideReviewRequest(
        review_id=review_id, verdict=review_pb.REVIEW_VERDICT_APPROVE, level=common_pb2.DISCLOSURE_LEVEL_PERTINENT))
    decided = await stream.read()
    assert decided.review.state == hub_pb.REVIEW_STATE_APPROVED
    assert [r.category for r in decided.answer.records] == ["health.mental_health"]
    assert DIAGNOSIS not in str(decided.answer)
    assert decided.answer.receipt.leaf_hash
    assert await stream.read() == grpc.aio.EOF

    again = researcher.stub.WatchReviewOutcome(review_pb.WatchReviewOutcomeRequest(review_id=review_id),
                                               metadata=researcher.metadata, timeout=10)
    assert [m.review.state async for m in again] == [hub_pb.REVIEW_STATE_APPROVED]

    other = Client(partnership, "police", "case-system", "r.other", "mash_researcher_police")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in other.stub.WatchReviewOutcome(review_pb.WatchReviewOutcomeRequest(review_id=review_id),
                                                     metadata=other.metadata, timeout=10):
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in researcher.stub.WatchReviewOutcome(review_pb.WatchReviewOutcomeRequest(review_id=""),
                                                          metadata=researcher.metadata, timeout=10):
            pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(raised.value)) == {"review_id"}
    assert partnership.gateway is not None
    refusals = [r.event async for r in partnership.gateway.deps.review.list_entries()
                if r.event.kind.value == "refusal"]
    assert refusals[-1].details["rpc"] == "WatchReviewOutcome"


async def test_watch_review_outcome_ends_at_the_callers_deadline(partnership: Partnership) -> None:
    """Undecided, the stream ends with DEADLINE_EXCEEDED when the call's deadline comes; the review still waits."""
    health = await held(partnership)
    researcher = Client(partnership, "police", "case-system", "r.police", "mash_researcher_police")
    stream = researcher.stub.WatchReviewOutcome(
        review_pb.WatchReviewOutcomeRequest(review_id=health.review.review_id),
        metadata=researcher.metadata, timeout=1.0)
    assert (await stream.read()).review.state == hub_pb.REVIEW_STATE_PENDING_REVIEW
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stream.read()
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    outcome = await researcher.call("GetReviewOutcome",
                                    review_pb.GetReviewOutcomeRequest(review_id=health.review.review_id))
    assert outcome.review.state == hub_pb.REVIEW_STATE_PENDING_REVIEW


async def _notices(partnership: Partnership, agency: str, system: str, user: str, role: str,
                   n: int) -> list[ref_pb.WatchNotificationsResponse]:
    channel = partnership.channel(client_credentials(partnership.pki, agency, system))
    stub = ref_grpc.ReferralServiceStub(channel)
    stream = stub.WatchNotifications(ref_pb.WatchNotificationsRequest(),
                                     metadata=(("x-mash-user", user), ("x-mash-role", role)), timeout=10)
    got = [await stream.read() for _ in range(n)]
    stream.cancel()
    return got


async def test_review_notices_reach_offline_receivers_through_the_referral_outbox(partnership: Partnership) -> None:
    """Nobody watches while the review is made and decided; on connecting, health's review console has
    REVIEW_REQUESTED and the requester's system REVIEW_DECIDED, each naming the review and nothing else."""
    health = await held(partnership)
    review_id = health.review.review_id
    reviewer = Client(partnership, "health", "review-console", "dp.1", "health_designated_professional")
    await reviewer.call("DecideReview", review_pb.DecideReviewRequest(
        review_id=review_id, verdict=review_pb.REVIEW_VERDICT_DECLINE, reason="not proportionate"))
    (requested,) = await _notices(partnership, "health", "review-console", "dp.1",
                                  "health_designated_professional", 1)
    assert (requested.kind, requested.review_id) == (ref_pb.NOTIFICATION_KIND_REVIEW_REQUESTED, review_id)
    (decided,) = await _notices(partnership, "police", "case-system", "r.police", "mash_researcher_police", 1)
    assert (decided.kind, decided.review_id) == (ref_pb.NOTIFICATION_KIND_REVIEW_DECIDED, review_id)
    for notice in (requested, decided):
        for secret in (JODIE_MERCER.family_name, JODIE_MERCER.nhs_number, "not proportionate", "mental"):
            assert secret not in str(notice)


async def test_research_under_a_rated_referral_takes_the_ratings_deadline_and_lists_the_rating(
        partnership: Partnership) -> None:
    """An adults' referral about Jodie rated red: the researcher's linked query is held for review until the
    red rating's research target (8 working hours), and health's reviewer sees the rating in the list."""
    police = partnership.channel(client_credentials(partnership.pki, "police", "case-system"))
    hub = partnership.channel(client_credentials(partnership.pki, "hub", "mash-console"))
    officer = (("x-mash-user", "pc.1234"), ("x-mash-role", "police_officer"))
    manager = (("x-mash-user", "mash.manager.1"), ("x-mash-role", "mash_manager"))
    submitted = await ref_grpc.ReferralServiceStub(police).SubmitReferral(ref_pb.SubmitReferralRequest(
        mash="adults", subject=common_pb2.SubjectIdentifiers(**subject(JODIE_MERCER)),
        concern="Neighbour reports shouting", categories=["domestic_abuse"]), metadata=officer, timeout=10)
    rid = submitted.referral.referral_id
    console = ref_grpc.ReferralServiceStub(hub)
    assert submitted.referral.screening == "NOT_OPEN"  # screened on arrival against adult social care
    await console.RateReferral(ref_pb.RateReferralRequest(referral_id=rid, rating="red"), metadata=manager,
                               timeout=10)
    researcher = partnership.client("police", "case-system", user="r.police", role="mash_researcher_police")
    response = await researcher.query(subject=common_pb2.SubjectIdentifiers(**subject(JODIE_MERCER)),
                                      referral_id=rid, **{k: v for k, v in SCREENING.items() if k != "case_reference"})
    (health,) = [a for a in response.answers if a.agency == "health"]
    reviewer = Client(partnership, "health", "review-console", "dp.1", "health_designated_professional")
    (listed,) = (await reviewer.call("ListReviews", review_pb.ListReviewsRequest())).reviews
    assert (listed.review_id, listed.rating) == (health.review.review_id, "red")
    assert partnership.gateway is not None
    assert partnership.gateway.deps.referrals is not None
    workflow = partnership.gateway.deps.referrals.workflow
    created = listed.created_at.ToDatetime(tzinfo=UTC)
    assert listed.deadline.ToDatetime(tzinfo=UTC) == workflow.due("adults", "red", "research", created)
    assert health.review.deadline == listed.deadline


async def test_no_review_when_health_holds_nothing_under_review(partnership: Partnership) -> None:
    """Noah is known to health but not to its mental-health services: health answers as without review, and
    its reviewers get nothing to review."""
    researcher = partnership.client("police", "case-system", user="r.police", role="mash_researcher_police")
    response = await researcher.query(subject=common_pb2.SubjectIdentifiers(**subject(NOAH_FENWICK)), **SCREENING)
    (health,) = [a for a in response.answers if a.agency == "health"]
    assert health.status == hub_pb.ANSWER_STATUS_MATCH
    assert not health.HasField("review")
    reviewer = Client(partnership, "health", "review-console", "dp.1", "health_designated_professional")
    assert list((await reviewer.call("ListReviews", review_pb.ListReviewsRequest())).reviews) == []


async def test_a_lone_query_asks_health_its_lookup_and_review_existence_check_in_one_message(
    partnership: Partnership, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With nobody else asking, owner review's existence check does not cost health a second message: it
    leaves with the query's own lookup, one batch of two on health's stream."""
    servicer = partnership.nodes["health"].servicer
    sizes: list[int] = []
    answer_batch = servicer._answer_batch

    def counting(request: Any) -> Any:
        sizes.append(len(request.lookups))
        return answer_batch(request)

    monkeypatch.setattr(servicer, "_answer_batch", counting)
    health = await held(partnership)
    assert health.review.state == hub_pb.REVIEW_STATE_PENDING_REVIEW
    assert sizes == [2], f"health heard the query in {len(sizes)} messages of {sizes} lookups"
