"""Signed policy releases: the only policies a production gateway activates.

A release is a content-addressed copy of a policy directory (its id is the policy version, the hash of its
files), proposed and released by a policy administrator and approved by the IG officer of every agency whose
access the release widens; each signs with their own Ed25519 key. Before activation the gateway recomputes
the changes against the policy it is serving, so an approval cannot be skipped by proposing against an old base.

Layout of a release store: ``<store>/<hex>/files/…`` (the policy), ``proposal.json``, ``approvals/*.json``,
``release.json``, and ``<store>/current`` naming the release to activate.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import GatewayError, PolicyError
from gateway.policy.diff import LevelChange, PolicyChange, diff_settings, diff_snapshots
from gateway.policy.holder import validate
from gateway.policy.snapshot import PolicySnapshot, load_snapshot
from gateway.policy.sources import content_hash

FILES = "files"
PROPOSAL = "proposal.json"
APPROVALS = "approvals"
RELEASED = "release.json"
CURRENT = "current"
_DOMAIN = "mash-gateway policy release v1"  # signed texts start with this, so no other signature can be replayed


class ReleaseError(GatewayError):
    """A release cannot be proposed, approved, released or activated; the message says why (never file content)."""

    def __init__(self, message: str, version: str = "") -> None:
        super().__init__(message)
        self.version = version  # the release concerned, if known


@dataclass(frozen=True, slots=True)
class Signers:
    """Who may sign what: policy administrators' keys, and each agency's IG officers' keys, by signer name."""

    admins: Mapping[str, Ed25519PublicKey]
    ig_officers: Mapping[str, Mapping[str, Ed25519PublicKey]]  # agency -> signer -> key

    @classmethod
    def load(cls, path: Path) -> Signers:
        """Read the signers file: ``{"policy_admins": {name: key}, "ig_officers": {agency: {name: key}}}``, each key
        the base64 of a raw 32-byte Ed25519 public key (as `policy keygen` prints it)."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            admins = {str(n): _public_key(k) for n, k in doc.get("policy_admins", {}).items()}
            officers = {str(a): {str(n): _public_key(k) for n, k in names.items()}
                        for a, names in doc.get("ig_officers", {}).items()}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise ReleaseError(f"the signers file {Path(path).name} cannot be read ({type(exc).__name__})") from exc
        return cls(admins, officers)


def _public_key(text: object) -> Ed25519PublicKey:
    if not isinstance(text, str):
        raise ValueError("a key must be a base64 string")
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def generate_key(path: Path) -> str:
    """Write a new Ed25519 private key (PEM, owner-only) to `path`; returns the public key to list in the signers
    file."""
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return public_key_text(key.public_key())


def public_key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ReleaseError(f"the signing key {Path(path).name} cannot be read") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"the signing key {Path(path).name} is not an Ed25519 key")
    return key


def _signed_text(kind: str, body: Mapping[str, Any]) -> bytes:
    return f"{_DOMAIN}\n{kind}\n".encode() + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _sign(key: Ed25519PrivateKey, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "signature": base64.b64encode(key.sign(_signed_text(kind, body))).decode()}


def _verify(doc: Mapping[str, Any], kind: str, key: Ed25519PublicKey) -> bool:
    body = {k: v for k, v in doc.items() if k != "signature"}
    try:
        key.verify(base64.b64decode(str(doc.get("signature", "")), validate=True), _signed_text(kind, body))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{path.name} of the release cannot be read") from exc
    if not isinstance(doc, dict):
        raise ReleaseError(f"{path.name} of the release is not a JSON object")
    return doc


def _write(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n", encoding="utf-8")


def release_dir(store: Path, version: str) -> Path:
    """Where the release of `version` (``sha256:<hex>``, the hex alone, or a unique prefix of it) is kept."""
    wanted = version.removeprefix("sha256:").lower()
    if not wanted or not all(c in "0123456789abcdef" for c in wanted):
        raise ReleaseError("a release id is a policy version, sha256:<hex>")
    found = [p for p in Path(store).iterdir() if p.is_dir() and p.name.startswith(wanted)] if Path(store).is_dir() \
        else []
    if len(found) != 1:
        raise ReleaseError("no release has that id" if not found else "that id prefix names several releases")
    return found[0]


# -- who must approve -----------------------------------------------------------------------------------

def _owners_of_setting(change: PolicyChange, snapshot: PolicySnapshot) -> set[str]:
    """The record-holding agencies whose IG officers must approve a widened setting."""
    holders = {name for name, a in snapshot.agencies.items() if a.holds_records}
    subject = change.subject
    if subject in snapshot.record_categories:
        return {snapshot.record_categories[subject].agency}
    if subject in holders:
        return {subject}
    if subject in snapshot.agreements:
        return set(snapshot.agreements[subject].parties) & holders or holders
    return holders  # a role, purpose or certificate that may see more can reach every agency's records


def required_approvals(old: PolicySnapshot | None, new: PolicySnapshot) -> tuple[dict[str, list[str]], str]:
    """For each agency, the widenings (▲) it must approve, and a one-line summary of every change.

    With no `old` policy (a first activation), every record-holding agency must approve.
    """
    if old is None:
        holders = sorted(name for name, a in new.agencies.items() if a.holds_records)
        return {agency: ["first release: everything it grants"] for agency in holders}, "first release"
    levels, vocabulary = diff_snapshots(old, new)
    settings = diff_settings(old, new)
    owners: dict[str, list[str]] = {}
    for change in levels:
        if change.widened:
            owners.setdefault(change.agency, []).append(_level_text(change))
    for setting in settings:
        if setting.widened:
            for agency in sorted(_owners_of_setting(setting, new)):
                owners.setdefault(agency, []).append(f"▲ {setting.area} {setting.subject}: {setting.change}")
    wider = sum(1 for c in levels if c.widened)
    summary = (f"{len(levels)} access change(s): {wider} wider, {len(levels) - wider} narrower; "
               f"{len(settings)} other change(s), {sum(1 for s in settings if s.widened)} wider; "
               f"{len(vocabulary)} vocabulary name(s) added or removed")
    return {a: owners[a] for a in sorted(owners)}, summary


def _level_text(change: LevelChange) -> str:
    return (f"▲ {change.role} for {change.purpose}: {change.agency} {change.category} "
            f"{change.old.name} -> {change.new.name}")


# -- propose, approve, release ----------------------------------------------------------------------------

def propose(store: Path, directory: Path, base: PolicySnapshot | None, *, admin: str, key: Ed25519PrivateKey,
            now: datetime | None = None) -> str:
    """Copy `directory` into the store as a proposed release, signed by `admin`; returns its id (the version).

    The policy must pass everything activation checks (loading, `policy check` errors, policy tests); the
    proposal lists the approvals it needs against `base`.
    """
    snapshot, findings = validate(Path(directory), (now or datetime.now(UTC)).date())
    if snapshot is None:
        raise PolicyError(findings, "the policy cannot be activated, so it cannot be proposed")
    version = content_hash(directory)
    target = Path(store) / version.removeprefix("sha256:")
    if target.exists():
        raise ReleaseError(f"release {version} was already proposed")
    shutil.copytree(directory, target / FILES)
    if content_hash(target / FILES) != version:  # a file changed while it was copied
        shutil.rmtree(target)
        raise ReleaseError("the policy directory changed while it was copied; propose it again")
    owners, summary = required_approvals(base, snapshot)
    _write(target / PROPOSAL, _sign(key, "proposal", {
        "version": version, "base_version": base.version if base is not None else "", "proposed_by": admin,
        "proposed_at": _now(now), "summary": summary, "owners": owners,
    }))
    return version


def approve(store: Path, version: str, *, agency: str, officer: str, key: Ed25519PrivateKey,
            now: datetime | None = None) -> Path:
    """Record `officer`'s approval, for `agency`, of the release's files as they are now; returns the file."""
    where = release_dir(store, version)
    proposal = _read(where / PROPOSAL)
    version = str(proposal.get("version", ""))
    if content_hash(where / FILES) != version:
        raise ReleaseError("the release's files do not match its id; it cannot be approved")
    path = where / APPROVALS / f"{agency}.{officer}.json"
    _write(path, _sign(key, "approval", {"version": version, "agency": agency, "approved_by": officer,
                                         "approved_at": _now(now)}))
    return path


@dataclass(frozen=True, slots=True)
class VerifiedRelease:
    """A release whose files, signatures and approvals all check out against the policy being replaced."""

    version: str
    directory: Path  # the policy files to activate
    proposed_by: str
    released_by: str
    approvers: tuple[str, ...]  # "agency:officer"
    summary: str

    def audit_details(self) -> dict[str, str]:
        """What the activation audit entry records about the release."""
        return {"release_id": self.version, "proposed_by": self.proposed_by, "released_by": self.released_by,
                "approvers": ",".join(self.approvers), "diff_summary": self.summary}


def verify_release(store: Path, version: str, signers: Signers, active: PolicySnapshot | None, *,
                   require_released: bool = True) -> VerifiedRelease:
    """Check a release before activation; ReleaseError naming what is missing or wrong otherwise.

    Its files must hash to its id, its proposal (and, with `require_released`, its release) be signed by a policy
    administrator, and every agency whose access it widens compared with `active` (with no active policy, as at
    start-up: compared with the release it was proposed against, if the store has it) must have approved it.
    """
    where = release_dir(store, version)
    proposal = _read(where / PROPOSAL)
    version = str(proposal.get("version", ""))
    if content_hash(where / FILES) != version:
        raise ReleaseError(f"release {version}: its files do not match its id (changed after it was proposed)",
                           version)
    proposer = str(proposal.get("proposed_by", ""))
    if proposer not in signers.admins or not _verify(proposal, "proposal", signers.admins[proposer]):
        raise ReleaseError(f"release {version}: the proposal is not signed by a known policy administrator", version)
    released_by = ""
    if require_released:
        if not (where / RELEASED).exists():
            raise ReleaseError(f"release {version} has not been released (`policy release`)", version)
        release = _read(where / RELEASED)
        released_by = str(release.get("released_by", ""))
        if (release.get("version") != version or released_by not in signers.admins
                or not _verify(release, "release", signers.admins[released_by])):
            raise ReleaseError(f"release {version}: the release is not signed by a known policy administrator",
                               version)
    approved = _approvals(where, version, signers)
    if active is None and proposal.get("base_version"):
        with contextlib.suppress(ReleaseError):
            active = load_snapshot(release_dir(store, str(proposal["base_version"])) / FILES)
    owners, summary = required_approvals(active, load_snapshot(where / FILES))
    missing = sorted(agency for agency in owners if agency not in approved)
    if missing:
        widenings = sum(len(owners[a]) for a in missing)
        raise ReleaseError(f"release {version} widens access ({widenings} ▲) without the approval of the IG "
                           f"officer of: {', '.join(missing)}", version)
    approvers = tuple(sorted(f"{agency}:{officer}" for agency, officers in approved.items() for officer in officers))
    return VerifiedRelease(version, where / FILES, proposer, released_by, approvers, summary)


def release_gate(store: Path, signers_file: Path) -> Callable[[PolicySnapshot], tuple[Path, str, Mapping[str, str]]]:
    """The holder's production-mode gate: the store's current release, verified against the active policy."""

    def gate(active: PolicySnapshot) -> tuple[Path, str, Mapping[str, str]]:
        verified = verify_release(store, current_release(store), Signers.load(signers_file), active)
        return verified.directory, verified.version, verified.audit_details()

    return gate


def _approvals(where: Path, version: str, signers: Signers) -> dict[str, list[str]]:
    """Valid approvals of `version`, by agency; files that do not verify under that agency's officers are ignored."""
    found: dict[str, list[str]] = {}
    folder = where / APPROVALS
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        doc = _read(path)
        agency, officer = str(doc.get("agency", "")), str(doc.get("approved_by", ""))
        key = signers.ig_officers.get(agency, {}).get(officer)
        if doc.get("version") == version and key is not None and _verify(doc, "approval", key):
            found.setdefault(agency, []).append(officer)
    return found


def release(store: Path, version: str, signers: Signers, active: PolicySnapshot | None, *, admin: str,
            key: Ed25519PrivateKey, now: datetime | None = None) -> VerifiedRelease:
    """Sign the release once every approval it needs (against `active`) is there, and name it the current one."""
    verified = verify_release(store, version, signers, active, require_released=False)
    where = release_dir(store, verified.version)
    _write(where / RELEASED, _sign(key, "release", {"version": verified.version, "released_by": admin,
                                                    "released_at": _now(now),
                                                    "approvers": list(verified.approvers)}))
    (Path(store) / CURRENT).write_text(verified.version + "\n", encoding="utf-8")
    return verify_release(store, verified.version, signers, active)


def current_release(store: Path) -> str:
    """The id of the release the gateway should serve, as `policy release` last set it."""
    try:
        return (Path(store) / CURRENT).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ReleaseError("the release store names no current release; run `policy release` first") from exc


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """What `policy show` prints about a release: who proposed, approved and released it, and its files."""

    version: str
    proposed_by: str
    proposed_at: str
    released_by: str
    released_at: str
    approvers: tuple[str, ...]
    summary: str
    files: tuple[str, ...]
    directory: Path


def describe(store: Path, version: str) -> ReleaseRecord:
    """The record of a release, from its stored documents (not verified: `verify_release` does that)."""
    where = release_dir(store, version)
    proposal = _read(where / PROPOSAL)
    released = _read(where / RELEASED) if (where / RELEASED).exists() else {}
    files = tuple(sorted(p.relative_to(where / FILES).as_posix() for p in (where / FILES).rglob("*") if p.is_file()))
    approvals = [_read(path) for path in sorted((where / APPROVALS).glob("*.json"))]
    approvers = _names(released.get("approvers", [])) or tuple(
        f"{d.get('agency', '')}:{d.get('approved_by', '')}" for d in approvals)
    return ReleaseRecord(str(proposal.get("version", "")), str(proposal.get("proposed_by", "")),
                         str(proposal.get("proposed_at", "")), str(released.get("released_by", "")),
                         str(released.get("released_at", "")), approvers, str(proposal.get("summary", "")), files,
                         where / FILES)


def _names(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, Iterable) and not isinstance(value, str) else ()


def _now(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).isoformat(timespec="seconds")


def valid_approvals(store: Path, version: str, signers: Signers) -> dict[str, list[str]]:
    """The approvals of release `version` (an id or unique prefix) whose signatures verify, by agency."""
    where = release_dir(store, version)
    return _approvals(where, str(_read(where / PROPOSAL).get("version", "")), signers)
