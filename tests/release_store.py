"""A real policy release store for tests: signing keys, a signers file and one proposal, made with the same
code as `mash-gateway policy propose|approve`.

The proposal is a copy of a policy directory with lines of its agencies' files replaced or added, so a test
chooses what widens (▲, which the owning agency's IG officer must approve) and what narrows (▼).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.policy.release import approve, generate_key, load_private_key, propose
from gateway.policy.snapshot import load_snapshot

ADMIN = "alice"  # the policy administrator who proposes


@dataclass(frozen=True, slots=True)
class ReleaseStore:
    store: Path  # the gateway's `policy_releases`
    signers: Path  # the gateway's `policy_signers`
    keys: Path
    version: str  # the proposal's release id (sha256:...)

    def approve(self, agency: str) -> None:
        """The agency's IG officer (`ig-<agency>`) approves the proposal."""
        approve(self.store, self.version, agency=agency, officer=f"ig-{agency}",
                key=load_private_key(self.keys / f"ig-{agency}.key"))


def make_release_store(where: Path, policy_dir: Path, edits: Iterable[tuple[str, str, str]],
                       ig_officers: Iterable[str]) -> ReleaseStore:
    """A store under `where` with one proposal of `policy_dir` edited by `edits`, each (agency, old line, new
    line) with an empty old line meaning "add the new one"; each agency of `ig_officers` has one IG officer."""
    keys, store = where / "keys", where / "releases"
    signers = {"policy_admins": {ADMIN: generate_key(keys / f"{ADMIN}.key")},
               "ig_officers": {agency: {f"ig-{agency}": generate_key(keys / f"ig-{agency}.key")}
                               for agency in ig_officers}}
    signers_file = where / "signers.json"
    signers_file.write_text(json.dumps(signers), encoding="utf-8")
    edited = where / "edited"
    shutil.copytree(policy_dir, edited)
    for agency, old, new in edits:
        path = edited / "agencies" / f"{agency}.csv"
        text = path.read_text(encoding="utf-8")
        if old:
            assert old in text, f"{old!r} is not a line of {agency}.csv; the shipped policy changed"
            text = text.replace(old, new)
        else:
            text += new
        path.write_text(text, encoding="utf-8")
    version = propose(store, edited, load_snapshot(policy_dir), admin=ADMIN,
                      key=load_private_key(keys / f"{ADMIN}.key"))
    return ReleaseStore(store, signers_file, keys, version)
