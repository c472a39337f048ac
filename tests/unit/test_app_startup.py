"""`open_dependencies` against a real SQLite audit store: whatever start-up opened is closed on every outcome."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from gateway.app import open_dependencies
from gateway.errors import PolicyError
from gateway.keys import KeyPaths, init_keys
from gateway.pki import init_pki
from gateway.settings import Settings


def _store_threads() -> set[threading.Thread]:
    """The live threads of SQLite audit stores (each open store runs a writer thread)."""
    return {t for t in threading.enumerate() if t.name.startswith("audit-sqlite")}


def _settings(tmp_path: Path, policy_dir: Path, pki_dir: Path) -> Settings:
    state = tmp_path / "state"
    init_keys(KeyPaths(state / "keys"))
    return Settings(state_dir=state, policy_dir=policy_dir, pki_dir=pki_dir, policy_watch_interval=1.0)


async def test_unreadable_agency_credentials_close_the_audit_store(tmp_path: Path, policy_dir: Path) -> None:
    """Start-up that fails at the agency credentials closes the audit log and store it had opened."""
    before = _store_threads()
    settings = _settings(tmp_path, policy_dir, tmp_path / "no-pki")
    with pytest.raises(FileNotFoundError):
        await open_dependencies(settings)
    assert _store_threads() == before
    assert (settings.state_dir / "audit.sqlite").exists()  # the store was opened before the failure


async def test_a_broken_policy_closes_the_audit_store(tmp_path: Path, policy_dir: Path) -> None:
    """Start-up that fails on a policy that does not load closes the audit store it had opened."""
    broken = tmp_path / "policies"
    shutil.copytree(policy_dir, broken)
    (broken / "bindings.yaml").write_text("bindings: [")
    before = _store_threads()
    settings = _settings(tmp_path, broken, tmp_path / "no-pki")
    with pytest.raises(PolicyError):
        await open_dependencies(settings)
    assert _store_threads() == before
    assert (settings.state_dir / "audit.sqlite").exists()


async def test_closing_opened_dependencies_closes_the_audit_store(tmp_path: Path, policy_dir: Path) -> None:
    """Dependencies that opened successfully close their audit store (and everything else) on aclose."""
    before = _store_threads()
    pki = tmp_path / "pki"
    init_pki(pki)
    deps = await open_dependencies(_settings(tmp_path, policy_dir, pki))
    assert _store_threads() != before
    await deps.aclose()
    assert _store_threads() == before


def _record_holders(policy_dir: Path) -> tuple[str, ...]:
    """Every IG officer of the partnership: one per record-holding agency the policy declares."""
    from gateway.partnership import load_plan

    return load_plan(policy_dir).record_holders


def _release_store(tmp_path: Path, policy_dir: Path, approving: tuple[str, ...]) -> tuple[Path, Path, str]:
    """A release store whose current release the given agencies approved, and its signers file."""
    import json

    from gateway.policy.release import Signers, approve, generate_key, load_private_key, propose, release

    keys, store = tmp_path / "release-keys", tmp_path / "releases"
    agencies = _record_holders(policy_dir)
    doc = {"policy_admins": {"alice": generate_key(keys / "alice.key")},
           "ig_officers": {a: {f"ig-{a}": generate_key(keys / f"ig-{a}.key")} for a in agencies}}
    signers = tmp_path / "signers.json"
    signers.write_text(json.dumps(doc))
    admin = load_private_key(keys / "alice.key")
    version = propose(store, policy_dir, None, admin="alice", key=admin)
    for agency in agencies:
        approve(store, version, agency=agency, officer=f"ig-{agency}", key=load_private_key(keys / f"ig-{agency}.key"))
    release(store, version, Signers.load(signers), None, admin="alice", key=admin)
    if len(approving) < len(agencies):  # withdraw approvals after the release, as a tampered store would
        for path in (store / version.removeprefix("sha256:") / "approvals").glob("*.json"):
            if path.name.split(".")[0] not in approving:
                path.unlink()
    return store, signers, version


async def test_production_mode_starts_from_the_verified_release_without_a_watcher(tmp_path: Path,
                                                                                  policy_dir: Path) -> None:
    """In production the gateway serves the current release, audits its approvers, and runs no watcher."""
    from dataclasses import replace

    from gateway.audit.encoding import decode_entry

    store, signers, version = _release_store(tmp_path, policy_dir, _record_holders(policy_dir))
    pki = tmp_path / "pki"
    init_pki(pki)
    settings = replace(_settings(tmp_path, tmp_path / "unused", pki), policy_mode="production",
                       policy_releases=store, policy_signers=signers)
    deps = await open_dependencies(settings)
    try:
        assert deps.policy.version == version
        assert deps.watcher is None
        [row] = await deps.audit.store.scan(0, 10)
        activation = decode_entry(row.data).event
        assert activation.details["release_id"] == version
        assert "health:ig-health" in activation.details["approvers"]
    finally:
        await deps.aclose()


async def test_production_mode_refuses_to_start_on_an_unapproved_release(tmp_path: Path, policy_dir: Path) -> None:
    """A current release missing an owner's approval stops start-up, and the refusal is audited."""
    from dataclasses import replace

    from gateway.audit import open_store
    from gateway.audit.encoding import decode_entry
    from gateway.domain import AuditKind
    from gateway.policy.release import ReleaseError

    store, signers, _ = _release_store(tmp_path, policy_dir, ("police", "csc"))
    settings = replace(_settings(tmp_path, tmp_path / "unused", tmp_path / "no-pki"), policy_mode="production",
                       policy_releases=store, policy_signers=signers)
    with pytest.raises(ReleaseError, match=r"asc, education, health, housing, probation$"):
        await open_dependencies(settings)
    audit = await open_store(settings.audit_store_url)
    try:
        [row] = await audit.scan(0, 10)
    finally:
        await audit.close()
    assert decode_entry(row.data).event.kind is AuditKind.POLICY_REJECTED


async def test_production_mode_runs_the_referral_workflow_of_the_release_not_of_policy_dir(
        tmp_path: Path, policy_dir: Path) -> None:
    """workflow.yaml is part of the signed release: in production its ratings come from the release, whatever
    (or nothing) `policy_dir` holds."""
    from dataclasses import replace

    released = tmp_path / "released-policy"
    shutil.copytree(policy_dir, released)
    workflow = released / "workflow.yaml"
    workflow.write_text(workflow.read_text().replace("deadlines: {research: 4, decision: 4}",
                                                     "deadlines: {research: 3, decision: 4}"))
    (released / "tests" / "workflow").joinpath("deadlines.yaml").write_text("deadlines: []\n")
    store, signers, version = _release_store(tmp_path, released, _record_holders(released))
    pki = tmp_path / "pki"
    init_pki(pki)
    settings = replace(_settings(tmp_path, tmp_path / "unused", pki), policy_mode="production",
                       policy_releases=store, policy_signers=signers)
    deps = await open_dependencies(settings)
    try:
        assert deps.policy.version == version
        assert deps.referrals is not None  # policy_dir ("unused") has no workflow.yaml; the release has
        assert deps.referrals.workflow.mashes["children"].ratings["red"].hours("research") == 3
    finally:
        await deps.aclose()
