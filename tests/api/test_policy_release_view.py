"""PolicyService.GetPolicyRelease over real mTLS: a proposed release compared with the serving policy, each
change ▲ or ▼, and which agencies' IG officers have approved and which still must; policy admins only."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from hub_helpers import error_reason, field_violations

from agency_stubs import World
from gateway.api.tls import client_credentials
from gateway.demo.partnership import Partnership
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.generated.mash.gateway.v1 import policy_service_pb2_grpc as policy_grpc
from tests.release_store import ReleaseStore, make_release_store

ADMIN = (("x-mash-user", "ig.officer.1"),)
WIDER = ("p, role:housing_officer, agency:education, cat:education.attendance, purpose:child_protection, "
         "PERTINENT, allow\n")


def _stub(partnership: Partnership, agency: str = "hub", system: str = "policy-admin"
          ) -> policy_grpc.PolicyServiceAsyncStub:
    return policy_grpc.PolicyServiceStub(partnership.channel(client_credentials(partnership.pki, agency, system)))


def _store(tmp_path: Path, policy_dir: Path) -> ReleaseStore:
    """A release store holding one proposal that widens education's attendance records for housing officers."""
    return make_release_store(tmp_path, policy_dir, [("education", "", WIDER)], ig_officers=["education"])


async def test_a_proposed_release_shows_its_widenings_and_who_still_has_to_approve(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    made = _store(tmp_path, policy_dir)
    version = made.version
    settings = {"policy_releases": made.store, "policy_signers": made.signers}
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world, settings=settings) as partnership:
        admin = _stub(partnership)
        before = await admin.GetPolicyRelease(policy_pb.GetPolicyReleaseRequest(release_id=version[:20]),
                                              metadata=ADMIN, timeout=30)
        assert before.release_id == version
        assert before.proposed_by == "alice"
        assert not before.released_by
        assert before.base_version == before.active_version
        wider = [c for c in before.changes if c.widened]
        assert wider, before.changes
        assert all(c.agency == "education" and c.area == "level" for c in wider)
        assert any("housing_officer" in c.text and "PERTINENT" in c.text for c in wider)
        assert before.total_changes == len(before.changes)
        assert [(a.agency, list(a.approved_by)) for a in before.approvals] == [("education", [])]
        assert list(before.awaiting) == ["education"]

        made.approve("education")
        after = await admin.GetPolicyRelease(policy_pb.GetPolicyReleaseRequest(release_id=version),
                                             metadata=ADMIN, timeout=30)
        assert [(a.agency, list(a.approved_by)) for a in after.approvals] == [("education", ["ig-education"])]
        assert list(after.awaiting) == []


async def test_release_requests_are_checked_and_refused_plainly(partnership: Partnership) -> None:
    """A malformed id is INVALID_ARGUMENT naming the field; a gateway with no release store says so
    (FAILED_PRECONDITION); a certificate not bound to policy_admin is PERMISSION_DENIED."""
    admin = _stub(partnership)
    for bad in ("", "sha256:", "xyz", "abc", "ABCDEF0123"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin.GetPolicyRelease(policy_pb.GetPolicyReleaseRequest(release_id=bad), metadata=ADMIN,
                                         timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert set(field_violations(caught.value)) == {"release_id"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.GetPolicyRelease(policy_pb.GetPolicyReleaseRequest(release_id="0123456789abcdef"),
                                     metadata=ADMIN, timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "release store" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(partnership, "police", "case-system").GetPolicyRelease(
            policy_pb.GetPolicyReleaseRequest(release_id="0123456789abcdef"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "ROLE_NOT_BOUND"


async def test_an_unknown_release_is_not_found(tmp_path: Path, policy_dir: Path, shared_world: World) -> None:
    made = _store(tmp_path, policy_dir)
    settings = {"policy_releases": made.store, "policy_signers": made.signers}
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world, settings=settings) as partnership:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _stub(partnership).GetPolicyRelease(
                policy_pb.GetPolicyReleaseRequest(release_id="ffffffffffffffff"), metadata=ADMIN, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
