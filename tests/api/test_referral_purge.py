"""PurgeReferrals and `mash-gateway referrals purge` over real mTLS: dry run, confirm, refusals, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from hub_helpers import error_reason, field_violations, subject

from agency_stubs import World
from agency_stubs.cast import NOAH_FENWICK
from gateway.api.tls import client_credentials
from gateway.audit.encoding import decode_entry
from gateway.cli.main import build_parser
from gateway.cli.referrals_cmd import EXIT_OK, EXIT_REFUSED, run_async
from gateway.demo.partnership import Partnership
from gateway.domain import AuditEvent, AuditKind
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import referral_service_pb2 as ref_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2_grpc as ref_grpc
from gateway.testing import FixedClock

pytestmark = pytest.mark.slow

MANAGER = (("x-mash-user", "mash.manager.1"), ("x-mash-role", "mash_manager"))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
async def running(tmp_path: Path, policy_dir: Path, shared_world: World,
                  clock: FixedClock) -> AsyncIterator[Partnership]:
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world, clock=clock) as partnership:
        yield partnership


def _hub(partnership: Partnership) -> ref_grpc.ReferralServiceStub:
    return ref_grpc.ReferralServiceStub(partnership.channel(client_credentials(partnership.pki, "hub",
                                                                               "mash-console")))


async def _withdrawn(partnership: Partnership) -> str:
    police = ref_grpc.ReferralServiceStub(partnership.channel(client_credentials(partnership.pki, "police",
                                                                                 "case-system")))
    submitted = await police.SubmitReferral(ref_pb.SubmitReferralRequest(
        mash="children", subject=common_pb2.SubjectIdentifiers(**subject(NOAH_FENWICK)), concern="A concern",
        categories=["neglect"]), metadata=(("x-mash-user", "pc.1"), ("x-mash-role", "police_officer")), timeout=10)
    rid = submitted.referral.referral_id
    await _hub(partnership).WithdrawReferral(ref_pb.WithdrawReferralRequest(referral_id=rid), metadata=MANAGER,
                                             timeout=10)
    return rid


async def _entries_since(partnership: Partnership, before: int) -> list[AuditEvent]:
    assert partnership.gateway is not None
    return [decode_entry(r.data).event for r in await partnership.gateway.deps.audit.store.scan(before, 50)]


async def test_a_dry_run_names_what_is_past_retention_and_confirm_deletes_it(running: Partnership,
                                                                             clock: FixedClock) -> None:
    """Dry run by default (nothing deleted, audited DRY_RUN); with confirm the referral is gone (audited PURGED)."""
    assert running.gateway is not None
    rid = await _withdrawn(running)
    hub = _hub(running)
    early = await hub.PurgeReferrals(ref_pb.PurgeReferralsRequest(confirm=True), metadata=MANAGER, timeout=10)
    assert list(early.referral_ids) == []
    clock.advance((running.gateway.deps.referrals.workflow.retention_days + 1) * 86400)  # type: ignore[union-attr]
    before = await running.gateway.deps.audit.store.size()
    preview = await hub.PurgeReferrals(ref_pb.PurgeReferralsRequest(), metadata=MANAGER, timeout=10)
    assert (list(preview.referral_ids), preview.dry_run) == ([rid], True)
    await hub.GetReferral(ref_pb.GetReferralRequest(referral_id=rid), metadata=MANAGER, timeout=10)
    done = await hub.PurgeReferrals(ref_pb.PurgeReferralsRequest(confirm=True), metadata=MANAGER, timeout=10)
    assert (list(done.referral_ids), done.dry_run) == ([rid], False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.GetReferral(ref_pb.GetReferralRequest(referral_id=rid), metadata=MANAGER, timeout=10)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    purges = [e for e in await _entries_since(running, before) if e.kind is AuditKind.REFERRAL_PURGE]
    assert [(e.status, e.details["referral_ids"]) for e in purges] == [("DRY_RUN", rid), ("PURGED", rid)]


async def test_a_role_without_the_purge_permission_is_refused_and_audited(running: Partnership) -> None:
    """A MASH social worker may not purge: PERMISSION_DENIED (WORKFLOW_PERMISSION), a refusal entry, nothing gone."""
    assert running.gateway is not None
    before = await running.gateway.deps.audit.store.size()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _hub(running).PurgeReferrals(ref_pb.PurgeReferralsRequest(confirm=True), timeout=10, metadata=(
            ("x-mash-user", "sw.1"), ("x-mash-role", "mash_social_worker")))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "WORKFLOW_PERMISSION"
    (refusal,) = await _entries_since(running, before)
    assert (refusal.kind, refusal.details.get("operation")) == (AuditKind.REFUSAL, "purge")


async def test_a_malformed_user_id_is_invalid_argument_and_audited(running: Partnership) -> None:
    """A user id with characters outside the allowed set: INVALID_ARGUMENT naming the metadata key, audited."""
    assert running.gateway is not None
    before = await running.gateway.deps.audit.store.size()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _hub(running).PurgeReferrals(ref_pb.PurgeReferralsRequest(confirm=True), timeout=10, metadata=(
            ("x-mash-user", "<script>"), ("x-mash-role", "mash_manager")))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"metadata.x-mash-user"}
    (refusal,) = await _entries_since(running, before)
    assert refusal.kind is AuditKind.REFUSAL
    assert "<script>" not in str(refusal)


async def _cli(partnership: Partnership, capsys: pytest.CaptureFixture[str], *rest: str,
               role: str = "mash_manager") -> tuple[int, str, str]:
    args = build_parser().parse_args(["referrals", "purge", "--gateway", partnership.address, "--pki-dir",
                                      str(partnership.pki.root), "--user", "mash.manager.1", "--role", role, *rest])
    code = await run_async(args)
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_purge_command_is_a_dry_run_unless_confirmed(running: Partnership, clock: FixedClock,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`referrals purge` lists and keeps; `--confirm` deletes; a role without permission exits 1."""
    assert running.gateway is not None
    rid = await _withdrawn(running)
    clock.advance((running.gateway.deps.referrals.workflow.retention_days + 1) * 86400)  # type: ignore[union-attr]
    code, out, _ = await _cli(running, capsys)
    assert (code, rid in out, "dry run" in out) == (EXIT_OK, True, True)
    code, out, _ = await _cli(running, capsys, "--confirm")
    assert (code, rid in out, "dry run" in out) == (EXIT_OK, True, False)
    code, out, _ = await _cli(running, capsys, "--confirm")
    assert (code, rid in out) == (EXIT_OK, False)
    code, _, err = await _cli(running, capsys, "--confirm", role="mash_social_worker")
    assert code == EXIT_REFUSED
    assert "PERMISSION_DENIED" in err
