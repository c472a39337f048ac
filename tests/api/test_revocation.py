"""Certificate revocation end to end: `pki revoke` writes a CRL, the gateway refuses revoked clients and nodes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import structlog
from hub_helpers import SCREENING, error_reason, subject

from agency_stubs import World
from gateway.api.tls import client_credentials
from gateway.app import open_dependencies
from gateway.audit import decode_entry
from gateway.cli.main import main
from gateway.demo.partnership import Partnership
from gateway.domain import AuditEvent, AuditKind
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.keys import KeyPaths, init_keys
from gateway.partnership import load_plan
from gateway.pki import PkiLayout, init_pki
from gateway.pki.identity import identity_from_pem
from gateway.pki.revocation import RevocationListError
from gateway.settings import Settings

POLICE = ("police", "case-system")
CSC = ("csc", "case-system")


def revoke(pki: PkiLayout, *paths: Path) -> Path:
    """Revoke with the command an operator runs."""
    assert main(["pki", "revoke", str(pki.root), *(str(p) for p in paths)]) == 0
    return pki.root / "crl.pem"


def fresh_pki(tmp_path: Path, policy_dir: Path) -> PkiLayout:
    """The certificates the shipped policy calls for, as the partnership would make them."""
    plan = load_plan(policy_dir)
    pki = PkiLayout(tmp_path / "state" / "pki")
    init_pki(pki.root, nodes=plan.record_holders, clients=plan.clients)
    return pki


async def refusals(partnership: Partnership) -> list[AuditEvent]:
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 10_000)
    return [e for e in (decode_entry(r.data).event for r in rows) if e.kind is AuditKind.REFUSAL]


def identity(pki: PkiLayout, agency: str, system: str) -> str:
    return identity_from_pem(pki.client(agency, system)[0].read_bytes()).uri


async def test_a_revoked_client_certificate_is_refused_and_audited(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """A client whose certificate is on the CRL gets PERMISSION_DENIED / CERTIFICATE_REVOKED, the refusal is
    audited under its identity, and nothing is asked of any agency; other clients are served."""
    pki = fresh_pki(tmp_path, policy_dir)
    crl = revoke(pki, pki.client(*POLICE)[0])
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world,
                           settings={"crl_file": crl}) as partnership:
        police = partnership.client(*POLICE, user="pc.1", role="mash_researcher_police")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await police.query(subject=subject(), **SCREENING)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(caught.value) == "CERTIFICATE_REVOKED"
        (refusal,) = await refusals(partnership)
        assert refusal.caller == identity(pki, *POLICE)
        assert refusal.reason.startswith("CERTIFICATE_REVOKED")
        assert refusal.subject_tokens == ()
        csc = partnership.client(*CSC, user="sw.1", role="social_worker")
        answer = await csc.query(subject=subject(), **SCREENING)
        assert answer.answers


async def test_a_certificate_revoked_while_the_gateway_runs_is_refused_once_the_crl_is_reread(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """Replacing the CRL file takes effect without a restart: the next call with the revoked certificate
    is refused, and a call already allowed before is not affected."""
    pki = fresh_pki(tmp_path, policy_dir)
    crl = revoke(pki, pki.client("hub", "policy-admin")[0])
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world,
                           settings={"crl_file": crl}) as partnership:
        csc = partnership.client(*CSC, user="sw.1", role="social_worker")
        await csc.query(subject=subject(), **SCREENING)
        revoke(pki, pki.client(*CSC)[0])
        await asyncio.sleep(1.2)  # the file is looked at again at most once a second
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await csc.query(subject=subject(), **SCREENING)
        assert error_reason(caught.value) == "CERTIFICATE_REVOKED"


async def test_a_revoked_client_is_refused_on_every_service_not_only_queries(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """The audit console's revoked certificate cannot read the audit log either."""
    pki = fresh_pki(tmp_path, policy_dir)
    crl = revoke(pki, pki.client("hub", "audit-console")[0])
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world,
                           settings={"crl_file": crl}) as partnership:
        channel = partnership.channel(client_credentials(partnership.pki, "hub", "audit-console"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/mash.gateway.v1.AuditService/GetLatestCheckpoint")(
                b"", metadata=(("x-mash-user", "ig.1"), ("x-mash-role", "auditor")), timeout=10)
        assert error_reason(caught.value) == "CERTIFICATE_REVOKED"


async def test_an_agency_node_with_a_revoked_certificate_is_not_asked(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """Health's node presents a revoked certificate: health's answer is UNAVAILABLE, the others answer."""
    pki = fresh_pki(tmp_path, policy_dir)
    crl = revoke(pki, pki.node("health")[0])
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world,
                           settings={"crl_file": crl}) as partnership:
        csc = partnership.client(*CSC, user="sw.1", role="social_worker")
        with structlog.testing.capture_logs() as logs:
            answer = await csc.query(subject=subject(), **SCREENING)
        statuses = {a.agency: a.status for a in answer.answers}
        assert statuses.pop("health") == hub_pb.ANSWER_STATUS_UNAVAILABLE
        assert hub_pb.ANSWER_STATUS_UNAVAILABLE not in statuses.values()
        assert any(e["event"].startswith("agency node presents a revoked certificate") for e in logs)


@pytest.mark.parametrize("kind", ["not-a-crl", "another-ca"])
async def test_an_unusable_crl_stops_start_up(tmp_path: Path, policy_dir: Path, kind: str) -> None:
    """A CRL file that is not a CRL, or is another CA's, stops start-up instead of serving with nobody revoked."""
    pki = fresh_pki(tmp_path, policy_dir)
    if kind == "another-ca":
        other = PkiLayout(tmp_path / "other")
        init_pki(other.root, clients=[identity(pki, *POLICE)])
        crl = revoke(other, other.client(*POLICE)[0])
    else:
        crl = tmp_path / "garbage.crl"
        crl.write_bytes(b"\x30\x03\x02\x01\x00")
    init_keys(KeyPaths(tmp_path / "state" / "keys"))
    settings = Settings(state_dir=tmp_path / "state", policy_dir=policy_dir, pki_dir=pki.root, crl_file=crl,
                        policy_watch_interval=None)
    with pytest.raises(RevocationListError):
        await open_dependencies(settings)
