"""ReviewService over real mTLS: a researcher's answer held for health's review, decided, and released."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from hub_helpers import SCREENING, error_reason, field_violations, rich_status, subject

from agency_stubs.cast import JODIE_MERCER
from gateway.api.tls import client_credentials
from gateway.demo.partnership import Partnership
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
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
    assert partnership.gateway is not None
    entries = partnership.gateway.deps.review.list_entries()
    refusals = [r.event async for r in entries if r.event.kind.value == "refusal"]
    assert [e.details["rpc"] for e in refusals[-3:]] == ["DecideReview", "DecideReview", "ListReviews"]
