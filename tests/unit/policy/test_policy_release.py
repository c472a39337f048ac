"""Signed policy releases: proposed and released by a policy administrator, approved by the IG officer of every
agency whose access widens, and the only policies a production-mode holder activates."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from policy_helpers import PolicyCopy, append, edit, shipped_record_holders

from gateway.cli.main import main
from gateway.domain import AuditEvent, AuditKind, DisclosureLevel
from gateway.policy import PolicyHolder
from gateway.policy.release import (
    CURRENT,
    FILES,
    RELEASED,
    ReleaseError,
    Signers,
    _sign,
    approve,
    generate_key,
    load_private_key,
    propose,
    release,
    release_dir,
    release_gate,
    verify_release,
)
from gateway.policy.snapshot import load_snapshot

HOLDERS = shipped_record_holders()  # every IG officer of the partnership approves the first release
CELL = ("housing_officer", "s47_enquiry", "education", "education.attendance")
WIDER = (
    "p, role:housing_officer, agency:education, cat:education.attendance, purpose:child_protection, "
    "PERTINENT, allow\n"
)


@dataclass
class Partnership:
    """A release store with a first release every IG officer approved, and the keys to sign more."""

    store: Path
    signers_file: Path
    keys: Path
    first: str

    @property
    def signers(self) -> Signers:
        return Signers.load(self.signers_file)

    def approve(self, version: str, *agencies: str) -> None:
        for agency in agencies:
            approve(self.store, version, agency=agency, officer=f"ig-{agency}",
                    key=load_private_key(self.keys / f"ig-{agency}.key"))

    def propose(self, directory: Path, base: str) -> str:
        return propose(self.store, directory, load_snapshot(release_dir(self.store, base) / FILES), admin="alice",
                       key=load_private_key(self.keys / "alice.key"))


class Recorder:
    """An audit sink that keeps events."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def __call__(self, event: AuditEvent) -> None:
        self.events.append(event)


@pytest.fixture
def partnership(tmp_path: Path, policy_copy: PolicyCopy) -> Partnership:
    keys = tmp_path / "keys"
    doc = {"policy_admins": {"alice": generate_key(keys / "alice.key")},
           "ig_officers": {a: {f"ig-{a}": generate_key(keys / f"ig-{a}.key")} for a in HOLDERS}}
    signers_file = tmp_path / "signers.json"
    signers_file.write_text(json.dumps(doc))
    store = tmp_path / "releases"
    first = propose(store, policy_copy(), None, admin="alice", key=load_private_key(keys / "alice.key"))
    p = Partnership(store, signers_file, keys, first)
    p.approve(first, *HOLDERS)
    release(store, first, p.signers, None, admin="alice", key=load_private_key(keys / "alice.key"))
    return p


def _force_current(p: Partnership, version: str) -> None:
    """What a careless (or hostile) operator could do: sign a release and make it current without the approvals."""
    doc = _sign(load_private_key(p.keys / "alice.key"), "release",
                {"version": version, "released_by": "alice", "released_at": "2026-11-28T00:00:00+00:00",
                 "approvers": []})
    (release_dir(p.store, version) / RELEASED).write_text(json.dumps(doc))
    (p.store / CURRENT).write_text(version)


def _holder(p: Partnership, recorder: Recorder) -> PolicyHolder:
    verified = verify_release(p.store, p.first, p.signers, None)
    return PolicyHolder.from_directory(verified.directory, on_event=recorder,
                                       release_gate=release_gate(p.store, p.signers_file))


def test_first_release_needs_every_agency_and_then_verifies(partnership: Partnership) -> None:
    """A first release is approved by every record-holding agency; it then verifies and names them."""
    verified = verify_release(partnership.store, partnership.first, partnership.signers, None)
    assert verified.version == partnership.first
    assert verified.approvers == tuple(sorted(f"{a}:ig-{a}" for a in HOLDERS))


def test_a_first_release_without_the_newest_agencys_approval_is_refused_naming_it(
        tmp_path: Path, policy_copy: PolicyCopy) -> None:
    """Every record holder owns part of a first release: without adult social care's IG officer it is refused."""
    assert HOLDERS[-1] == "asc"
    assert len(HOLDERS) == 7
    keys = tmp_path / "keys"
    doc = {"policy_admins": {"alice": generate_key(keys / "alice.key")},
           "ig_officers": {a: {f"ig-{a}": generate_key(keys / f"ig-{a}.key")} for a in HOLDERS}}
    (tmp_path / "signers.json").write_text(json.dumps(doc))
    store = tmp_path / "releases"
    first = propose(store, policy_copy(), None, admin="alice", key=load_private_key(keys / "alice.key"))
    for agency in HOLDERS[:-1]:
        approve(store, first, agency=agency, officer=f"ig-{agency}", key=load_private_key(keys / f"ig-{agency}.key"))
    with pytest.raises(ReleaseError, match=r"without the approval of the IG officer of: asc$"):
        verify_release(store, first, Signers.load(tmp_path / "signers.json"), None, require_released=False)


def test_release_of_an_unapproved_widening_is_refused_naming_the_owner(partnership: Partnership,
                                                                         policy_copy: PolicyCopy) -> None:
    """Every ▲ needs its owner's approval: a wider education grant without education's IG officer is refused."""
    directory = policy_copy()
    append(directory / "agencies" / "education.csv", WIDER)
    version = partnership.propose(directory, partnership.first)
    partnership.approve(version, "health")  # the wrong agency's approval does not count
    with pytest.raises(ReleaseError, match="without the approval of the IG officer of: education"):
        release(partnership.store, version, partnership.signers, load_snapshot(release_dir(
            partnership.store, partnership.first) / FILES), admin="alice",
            key=load_private_key(partnership.keys / "alice.key"))


async def test_activation_of_an_unapproved_widening_is_refused_and_audited(
        partnership: Partnership, policy_copy: PolicyCopy) -> None:
    """A release made current without its approvals is refused at activation, audited, and the old policy serves."""
    recorder = Recorder()
    holder = _holder(partnership, recorder)
    directory = policy_copy()
    append(directory / "agencies" / "education.csv", WIDER)
    version = partnership.propose(directory, partnership.first)
    _force_current(partnership, version)
    outcome = await holder.reload(directory, trigger="SIGHUP")
    assert not outcome.activated
    assert holder.version == partnership.first
    assert holder.current.decide(*CELL).level is DisclosureLevel.EXISTS
    [event] = recorder.events
    assert event.kind is AuditKind.POLICY_REJECTED
    assert event.policy_version == version
    assert "without the approval of the IG officer of: education" in event.reason


async def test_approved_release_is_activated_and_the_entry_names_the_approvers(
        partnership: Partnership, policy_copy: PolicyCopy) -> None:
    """With education's approval the release activates; the audit entry records release id, approvers and diff."""
    recorder = Recorder()
    holder = _holder(partnership, recorder)
    directory = policy_copy()
    append(directory / "agencies" / "education.csv", WIDER)
    version = partnership.propose(directory, partnership.first)
    partnership.approve(version, "education")
    release(partnership.store, version, partnership.signers, holder.current, admin="alice",
            key=load_private_key(partnership.keys / "alice.key"))
    outcome = await holder.reload(trigger="SIGHUP")
    assert outcome.activated
    assert holder.version == version
    assert holder.current.decide(*CELL).level is DisclosureLevel.PERTINENT
    [event] = recorder.events
    assert event.kind is AuditKind.POLICY_ACTIVATION
    assert event.details["release_id"] == version
    assert event.details["approvers"] == "education:ig-education"
    assert "wider" in event.details["diff_summary"]


async def test_a_narrowing_needs_no_approval(partnership: Partnership, policy_copy: PolicyCopy) -> None:
    """Only widenings need an owner's approval: removing a grant releases with the administrator alone."""
    directory = policy_copy()
    edit(directory / "agencies" / "education.csv", "PERTINENT", "EXISTS")
    version = partnership.propose(directory, partnership.first)
    verified = release(partnership.store, version, partnership.signers, load_snapshot(
        release_dir(partnership.store, partnership.first) / FILES), admin="alice",
        key=load_private_key(partnership.keys / "alice.key"))
    assert verified.approvers == ()


@pytest.mark.parametrize("tamper", ["file", "approval", "proposal"])
async def test_a_release_changed_after_signing_is_refused(partnership: Partnership, policy_copy: PolicyCopy,
                                                          tamper: str) -> None:
    """A policy file, an approval or the proposal changed after signing makes the release fail at activation."""
    recorder = Recorder()
    holder = _holder(partnership, recorder)
    directory = policy_copy()
    append(directory / "agencies" / "education.csv", WIDER)
    version = partnership.propose(directory, partnership.first)
    partnership.approve(version, "education")
    release(partnership.store, version, partnership.signers, holder.current, admin="alice",
            key=load_private_key(partnership.keys / "alice.key"))
    where = release_dir(partnership.store, version)
    if tamper == "file":
        append(where / FILES / "agencies" / "health.csv", WIDER.replace("education", "health"))
    elif tamper == "approval":
        path = next((where / "approvals").glob("education.*.json"))
        path.write_text(path.read_text().replace(version, partnership.first))
    else:
        doc = json.loads((where / "proposal.json").read_text())
        (where / "proposal.json").write_text(json.dumps({**doc, "proposed_by": "mallory"}))
    outcome = await holder.reload(trigger="SIGHUP")
    assert not outcome.activated
    assert holder.version == partnership.first
    assert recorder.events[-1].kind is AuditKind.POLICY_REJECTED


def test_policy_show_maps_a_version_to_its_release_and_numbered_files(
        partnership: Partnership, capsys: pytest.CaptureFixture[str]) -> None:
    """`policy show VERSION` names who proposed, approved and released it; `--file` prints numbered lines."""
    assert main(["policy", "show", partnership.first, "--releases", str(partnership.store)]) == 0
    out = capsys.readouterr().out
    assert "proposed by alice" in out
    assert "released by alice" in out
    assert "education:ig-education" in out
    assert "agencies/education.csv  sha256:" in out
    assert main(["policy", "show", partnership.first[:20], "--releases", str(partnership.store), "--file",
                 "agencies/education.csv"]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith("    1 ")


@pytest.mark.parametrize("version", ["sha256:" + "0" * 64, "not-a-version"])
def test_policy_show_of_an_unknown_version_is_a_usage_error(partnership: Partnership, version: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A version with no release in the store exits 2 and says so."""
    assert main(["policy", "show", version, "--releases", str(partnership.store)]) == 2


def test_cli_release_flow(tmp_path: Path, partnership: Partnership, policy_copy: PolicyCopy,
                          capsys: pytest.CaptureFixture[str]) -> None:
    """propose, release (refused, exit 1), approve, release (exit 0) from the command line."""
    directory = policy_copy()
    append(directory / "agencies" / "education.csv", WIDER)
    common: Callable[[str], list[str]] = lambda who: [  # noqa: E731 - a one-line helper read where it is used
        "--releases", str(partnership.store), "--key", str(partnership.keys / f"{who}.key"), "--as", who]
    assert main(["policy", "propose", str(directory), *common("alice")]) == 0
    out = capsys.readouterr().out
    assert "needs the approval of education's IG officer (1 ▲)" in out
    version = out.split()[2]
    release_args = ["policy", "release", version, "--signers", str(partnership.signers_file), *common("alice")]
    assert main(release_args) == 1
    assert "education" in capsys.readouterr().out
    assert main(["policy", "approve", version, "--agency", "education", *common("ig-education")]) == 0
    assert "▲ housing_officer" in capsys.readouterr().out
    assert main(release_args) == 0
    assert (partnership.store / CURRENT).read_text().strip() == version


def test_a_policy_that_cannot_be_activated_cannot_be_proposed(partnership: Partnership, policy_copy: PolicyCopy,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A policy line beyond every agreement (a `policy check` error) is refused at proposal and nothing is stored."""
    directory = policy_copy()
    append(directory / "agencies" / "probation.csv",
           "p, role:housing_officer, agency:probation, cat:probation, purpose:housing_management, PERTINENT, allow\n")
    before = sorted(p.name for p in partnership.store.iterdir())
    assert main(["policy", "propose", str(directory), "--releases", str(partnership.store), "--key",
                 str(partnership.keys / "alice.key"), "--as", "alice"]) == 1
    assert "grants more than any agreement allows" in capsys.readouterr().out
    assert sorted(p.name for p in partnership.store.iterdir()) == before
