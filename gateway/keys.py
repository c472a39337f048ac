"""Where a gateway's key rings live in its state directory, and creating the ones that are missing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.keyring import Keyring, load_keyring, save_keyring


@dataclass(frozen=True, slots=True)
class KeyPaths:
    """The key files under `<state dir>/keys/`."""

    root: Path

    @property
    def subject_token(self) -> Path:
        return self.root / "subject-token.json"

    @property
    def sealing(self) -> Path:
        return self.root / "sealing.json"

    @property
    def pseudonym(self) -> Path:
        return self.root / "pseudonym.json"

    @property
    def locator(self) -> Path:
        return self.root / "locator.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint"


@dataclass(frozen=True, slots=True)
class GatewayKeys:
    subject_token: Keyring
    sealing: Keyring
    pseudonym: Keyring
    locator: Keyring | None = None  # the locator's OPRF key seeds; None in a state directory made before it


def init_keys(paths: KeyPaths) -> list[str]:
    """Create each key ring that does not exist; never replace one. Returns what was created."""
    from gateway.audit.checkpoint import ACTIVE_FILE, generate_signing_key

    created = []
    for path in (paths.subject_token, paths.sealing, paths.pseudonym, paths.locator):
        if not path.exists():
            save_keyring(Keyring.generate("k1"), path)
            created.append(path.name)
    if not (paths.checkpoint / ACTIVE_FILE).exists():
        generate_signing_key(paths.checkpoint, "cp1")
        created.append("checkpoint signing key cp1")
    return created


def load_keys(paths: KeyPaths) -> GatewayKeys:
    return GatewayKeys(
        subject_token=load_keyring(paths.subject_token),
        sealing=load_keyring(paths.sealing),
        pseudonym=load_keyring(paths.pseudonym),
        locator=load_keyring(paths.locator) if paths.locator.exists() else None,
    )
