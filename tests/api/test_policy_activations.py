"""PolicyService.ListPolicyActivations over real mTLS: the audit log's policy activations and refused changes,
newest first, for policy administrators and auditors only; every read and refusal is an audit entry."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest
from hub_helpers import error_reason, field_violations

from agency_stubs import World
from gateway.api.tls import client_credentials
from gateway.audit import decode_entry
from gateway.demo.partnership import Partnership
from gateway.domain import AuditEvent, AuditKind
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.generated.mash.gateway.v1 import policy_service_pb2_grpc as policy_grpc

ADMIN = (("x-mash-user", "ig.officer.1"),)


def _stub(partnership: Partnership, agency: str, system: str) -> policy_grpc.PolicyServiceAsyncStub:
    return policy_grpc.PolicyServiceStub(partnership.channel(client_credentials(partnership.pki, agency, system)))


async def _events(partnership: Partnership, kind: AuditKind) -> list[AuditEvent]:
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 1000)
    return [e for e in (decode_entry(r.data).event for r in rows) if e.kind is kind]


async def test_the_history_lists_activations_and_refused_changes_newest_first_and_the_read_is_audited(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """Startup activation, a refused broken edit, then its fix: three entries, newest first, each with its
    version, previous version, trigger and who asked; an auditor's read is recorded under the auditor."""
    live = tmp_path / "policies"
    shutil.copytree(policy_dir, live)
    async with Partnership(tmp_path / "state", live, world=shared_world) as partnership:
        admin = _stub(partnership, "hub", "policy-admin")
        first = (await admin.GetPolicyVersion(policy_pb.GetPolicyVersionRequest(), timeout=10)).policy_version
        police = live / "agencies" / "police.csv"
        good = police.read_text()
        police.write_text(good + "p, role:police_officer, agency:police, cat:police, purpose:safeguarding, FULLY\n")
        refused = await admin.ReloadPolicy(policy_pb.ReloadPolicyRequest(), metadata=ADMIN, timeout=30)
        police.write_text(good + "# reviewed by the police IG officer\n")
        fixed = await admin.ReloadPolicy(policy_pb.ReloadPolicyRequest(), metadata=ADMIN, timeout=30)

        reply = await admin.ListPolicyActivations(policy_pb.ListPolicyActivationsRequest(), metadata=ADMIN,
                                                  timeout=10)
        assert reply.total_size == 3
        rows = [(a.activated, a.policy_version, a.previous_version, a.trigger, a.user) for a in reply.activations]
        assert rows == [
            (True, fixed.policy_version, first, "admin RPC", "ig.officer.1"),
            (False, refused.attempted_version, first, "admin RPC", "ig.officer.1"),
            (True, first, rows[2][2], "startup", ""),
        ]
        assert [a.index for a in reply.activations] == sorted((a.index for a in reply.activations), reverse=True)
        assert reply.activations[0].reason.startswith("activated ")
        assert reply.activations[1].reason

        one = await _stub(partnership, "hub", "audit-console").ListPolicyActivations(
            policy_pb.ListPolicyActivationsRequest(page_size=1), timeout=10)
        assert [a.policy_version for a in one.activations] == [fixed.policy_version]
        assert one.total_size == 3

        reads = [e for e in await _events(partnership, AuditKind.AUDIT_ACCESS)
                 if e.details.get("rpc") == "ListPolicyActivations"]
        assert [(e.caller.rsplit("/", 1)[-1], e.user) for e in reads] == [
            ("policy-admin", "ig.officer.1"), ("audit-console", "")]


async def test_a_certificate_not_bound_to_policy_admin_or_auditor_is_refused_and_audited(
    partnership: Partnership
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(partnership, "police", "case-system").ListPolicyActivations(
            policy_pb.ListPolicyActivationsRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "ROLE_NOT_BOUND"
    refusals = await _events(partnership, AuditKind.REFUSAL)
    assert [(e.status, e.details.get("rpc")) for e in refusals] == [("PERMISSION_DENIED", "ListPolicyActivations")]
    assert not [e for e in await _events(partnership, AuditKind.AUDIT_ACCESS)
                if e.details.get("rpc") == "ListPolicyActivations"]


async def test_a_page_size_out_of_range_is_invalid_and_audited(partnership: Partnership) -> None:
    admin = _stub(partnership, "hub", "policy-admin")
    for size in (-1, 201):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin.ListPolicyActivations(policy_pb.ListPolicyActivationsRequest(page_size=size),
                                              metadata=ADMIN, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(caught.value)) == {"page_size"}
    refusals = await _events(partnership, AuditKind.REFUSAL)
    assert [(e.status, e.details.get("rpc")) for e in refusals] == [
        ("INVALID_ARGUMENT", "ListPolicyActivations")] * 2
