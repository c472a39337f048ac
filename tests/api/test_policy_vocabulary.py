"""PolicyService.GetVocabulary over real mTLS: the active policy's names for forms, readable by any certificate
bound to a role and refused (and audited) for one bound to none."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from hub_helpers import error_reason

from agency_stubs import World
from gateway.api.tls import client_credentials
from gateway.audit import decode_entry
from gateway.demo.partnership import Partnership
from gateway.domain import AuditKind
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.generated.mash.gateway.v1 import policy_service_pb2_grpc as policy_grpc
from gateway.pki.authority import issue_client
from gateway.testing import FixedClock


def _stub(partnership: Partnership, agency: str, system: str) -> policy_grpc.PolicyServiceAsyncStub:
    return policy_grpc.PolicyServiceStub(partnership.channel(client_credentials(partnership.pki, agency, system)))


async def test_the_vocabulary_lists_the_active_policys_names_and_agreements_by_end_date(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """A police case system (bound to police roles, not to policy_admin) reads the names the policy declares,
    with each role's agency and reviewer kind, each category's agency, and each agreement's days left."""
    clock = FixedClock(datetime(2027, 11, 15, 9, 0, tzinfo=UTC))
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world, clock=clock) as partnership:
        version = await _stub(partnership, "hub", "policy-admin").GetPolicyVersion(
            policy_pb.GetPolicyVersionRequest(), timeout=10)
        reply = await _stub(partnership, "police", "case-system").GetVocabulary(
            policy_pb.GetVocabularyRequest(), timeout=10)
    assert reply.policy_version == version.policy_version
    agencies = {a.name: a for a in reply.agencies}
    assert {"police", "health", "csc", "hub"} <= set(agencies)
    assert [a.name for a in reply.agencies] == sorted(agencies)
    assert not agencies["hub"].holds_records
    roles = {r.name: r for r in reply.roles}
    assert roles["mash_researcher_police"].agency == "police"
    assert {r.reviewer_kind for r in reply.roles} >= {"", "first"}
    assert not roles["auditor"].sees_records
    purposes = {p.name: p for p in reply.purposes}
    assert all(purposes[n].legal_bases for n in purposes if not purposes[n].group)
    categories = {c.name: c for c in reply.record_categories}
    assert categories["health.sexual_health"].agency == "health"
    assert [a.valid_until for a in reply.agreements] == sorted(a.valid_until for a in reply.agreements)
    mash_isa = next(a for a in reply.agreements if a.name == "mash-isa-2026")
    assert (mash_isa.valid_until, mash_isa.days_left) == ("2027-12-31", 46)
    assert "police" in mash_isa.parties
    assert mash_isa.purposes
    assert reply.mashes, "the shipped policy has a workflow"
    for mash in reply.mashes:
        assert {"red", "amber", "green"} <= set(mash.ratings)
        assert mash.decisions
        assert all(d.name and d.meaning for d in mash.decisions)


async def test_a_certificate_bound_to_no_role_is_refused_the_vocabulary_and_that_is_audited(
    partnership: Partnership
) -> None:
    issue_client(partnership.pki, "spiffe://mash.local/agency/police/system/unbound-tool")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(partnership, "police", "unbound-tool").GetVocabulary(policy_pb.GetVocabularyRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "ROLE_NOT_BOUND"
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 1000)
    refusals = [e for e in (decode_entry(r.data).event for r in rows) if e.kind is AuditKind.REFUSAL]
    assert [(e.caller, e.status, e.details.get("rpc")) for e in refusals] == [
        ("spiffe://mash.local/agency/police/system/unbound-tool", "PERMISSION_DENIED", "GetVocabulary")]
