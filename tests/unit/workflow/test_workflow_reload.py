"""workflow.yaml is part of the policy: a gateway reloads it (SIGHUP, ReloadPolicy and the development watcher all
go through `PolicyHolder.reload`) together with the rest, atomically, and deadlines already set stay as set."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.app import Dependencies, open_dependencies
from gateway.audit.encoding import decode_entry
from gateway.domain import AuditKind, SubjectIdentifiers
from gateway.keys import KeyPaths, init_keys
from gateway.pki import init_pki
from gateway.policy import PolicyWatcher
from gateway.service.validation import Caller
from gateway.settings import Settings
from gateway.testing import FixedClock
from gateway.workflow.service import SubmitCommand

MONDAY = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
MANAGER = Caller("spiffe://mash.local/agency/hub/system/mash-console", "hub", "mash.manager.1", "mash_manager")
POLICE = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "pc.1234", "police_officer")
RED = "deadlines: {research: 4, decision: 4}"


@pytest.fixture
async def gateway(tmp_path: Path, policy_dir: Path) -> AsyncIterator[tuple[Dependencies, Path]]:
    """A gateway's dependencies (development mode, no agency nodes: screening finds them unavailable) over a
    writable copy of the shipped policy, at Monday 09:00."""
    policies = tmp_path / "policies"
    shutil.copytree(policy_dir, policies)
    pki = tmp_path / "pki"
    init_pki(pki)
    state = tmp_path / "state"
    init_keys(KeyPaths(state / "keys"))
    settings = Settings(state_dir=state, policy_dir=policies, pki_dir=pki, breach_sweep_interval=0)
    deps = await open_dependencies(settings, clock=FixedClock(MONDAY))
    try:
        yield deps, policies
    finally:
        await deps.aclose()


def _edit(policies: Path, old: str, new: str, file: str = "workflow.yaml", count: int = 1) -> None:
    path = policies / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def _red_research_in_two_hours(policies: Path) -> None:
    """Red research 4 → 2 working hours, with the deadline test that says so (it gates activation too)."""
    _edit(policies, RED, "deadlines: {research: 2, decision: 4}")
    _edit(policies, "    due: 2026-11-30T14:00:00Z", "    due: 2026-11-30T12:00:00Z", "tests/workflow/deadlines.yaml")


async def _rated_red(deps: Dependencies) -> str:
    assert deps.referrals is not None
    kai = SubjectIdentifiers(nhs_number="9434765919", given_name="Kai", family_name="Mercer",
                             date_of_birth="2017-03-14")
    referral = await deps.referrals.submit(POLICE, SubmitCommand("children", kai, "Police attended",
                                                                 ("domestic_abuse",)))
    await deps.referrals.rate(MANAGER, referral.referral_id, "red")
    return referral.referral_id


async def _entries(deps: Dependencies) -> list[AuditKind]:
    rows = await deps.audit.store.scan(0, 1000)
    return [decode_entry(r.data).event.kind for r in rows]


async def test_a_changed_workflow_is_activated_with_the_policy_and_old_deadlines_stay_as_set(
        gateway: tuple[Dependencies, Path]) -> None:
    """After a reload, new ratings use the new hours; a referral rated before keeps the deadline it was given."""
    deps, policies = gateway
    assert deps.referrals is not None
    assert deps.referral_store is not None
    before = await _rated_red(deps)
    _red_research_in_two_hours(policies)
    outcome = await deps.policy.reload(trigger="SIGHUP")
    assert outcome.activated, outcome.findings
    assert deps.referrals.workflow.mashes["children"].ratings["red"].hours("research") == 2
    after = await _rated_red(deps)
    assert (await deps.referral_store.get(before)).research_due == datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
    assert (await deps.referral_store.get(after)).research_due == datetime(2026, 11, 30, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(("old", "new", "why"), [
    (RED, "deadlines: {research: -1, decision: 4}", "workflow.yaml:"),  # a bad value: refused at its line
    ("subject: adult", "subject: pensioner", "subject must be one of"),
    ("  adults:\n    subject: adult", "  elders:\n    subject: adult", "MASH 'adults' is gone"),  # referrals name it
    (RED, "deadlines: {research: 3, decision: 4}", "tests/workflow/deadlines.yaml"),  # its deadline test fails
])
async def test_a_bad_workflow_refuses_the_whole_reload_and_keeps_the_old_policy_and_workflow(
        gateway: tuple[Dependencies, Path], old: str, new: str, why: str) -> None:
    """A workflow.yaml that fails its checks, its tests or drops a MASH refuses the reload, audited; a policy
    change made in the same edit is not activated either."""
    deps, policies = gateway
    assert deps.referrals is not None
    version, workflow = deps.policy.version, deps.referrals.workflow
    _edit(policies, old, new)
    if "elders" in new:  # renamed consistently, so only the gone MASH stands in the way
        _edit(policies, "mash: adults", "mash: elders", "tests/workflow/deadlines.yaml", count=-1)
    with (policies / "agencies" / "asc.csv").open("a") as f:  # a sound policy change made alongside
        f.write("# reviewed\n")
    outcome = await deps.policy.reload(trigger="SIGHUP")
    assert not outcome.activated
    assert any(why in str(f) for f in outcome.findings), outcome.findings
    assert deps.policy.version == version
    assert deps.referrals.workflow is workflow
    assert (await _entries(deps))[-1] is AuditKind.POLICY_REJECTED


async def test_removing_workflow_yaml_while_referrals_run_is_refused(gateway: tuple[Dependencies, Path]) -> None:
    """Referrals are kept under the workflow policy: a policy without workflow.yaml cannot replace it."""
    deps, policies = gateway
    assert deps.referrals is not None
    (policies / "workflow.yaml").unlink()
    shutil.rmtree(policies / "tests" / "workflow")
    outcome = await deps.policy.reload(trigger="admin RPC")
    assert not outcome.activated
    assert any("must keep its workflow.yaml" in str(f) for f in outcome.findings)
    assert deps.policy.current.workflow is deps.referrals.workflow


async def test_the_development_watcher_picks_up_a_workflow_change(gateway: tuple[Dependencies, Path]) -> None:
    """Editing workflow.yaml alone changes the policy version, so the watcher reloads it like any policy file."""
    deps, policies = gateway
    assert deps.referrals is not None
    watcher = PolicyWatcher(deps.policy, policies, interval=60)
    _red_research_in_two_hours(policies)
    assert await watcher.check_once() is None  # seen once; waits for the files to settle
    outcome = await watcher.check_once()
    assert outcome is not None
    assert outcome.activated
    assert deps.referrals.workflow.mashes["children"].ratings["red"].hours("research") == 2
