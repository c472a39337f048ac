"""How the gateway's own errors reach callers: status codes and reasons, never the store's own words."""

from __future__ import annotations

import pytest
from google.rpc import code_pb2, error_details_pb2

from gateway.api.errors import to_status
from gateway.errors import GatewayError
from gateway.review.model import ReviewStoreError
from gateway.workflow.store import ReferralStoreError


@pytest.mark.parametrize(("error", "store"), [
    (ReviewStoreError("review store failed: disk I/O error at /srv/state/reviews.sqlite"), "review"),
    (ReferralStoreError("referral store failed: connection to db.internal refused"), "referral"),
])
def test_a_store_that_fails_is_unavailable_with_a_reason_and_no_internals(error: GatewayError, store: str) -> None:
    """A broken review or referral store is UNAVAILABLE / STORE_UNAVAILABLE (retry later), not INTERNAL."""
    status = to_status(error)
    assert status.code == code_pb2.UNAVAILABLE
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.metadata["store"]) == ("STORE_UNAVAILABLE", store)
    assert "sqlite" not in status.message
    assert "db.internal" not in status.message
