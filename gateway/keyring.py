"""Symmetric key rings in key files: one active key id for new work, old ids kept so old values verify."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError


class KeyringError(GatewayError):
    """A key file is missing, unreadable or malformed."""


@dataclass(frozen=True, slots=True)
class Keyring:
    """Named secret keys; `active_id` signs or seals new values, every id still verifies or opens."""

    active_id: str
    keys: Mapping[str, bytes]

    def __post_init__(self) -> None:
        if self.active_id not in self.keys:
            raise KeyringError(f"active key id {self.active_id!r} is not in the key ring")

    @property
    def active(self) -> bytes:
        return self.keys[self.active_id]

    def get(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise KeyringError(f"unknown key id {key_id!r}") from None

    def rotated(self, new_id: str, nbytes: int = 32) -> Keyring:
        """A new ring whose active key is a fresh random key `new_id`; older keys stay for verification."""
        if new_id in self.keys:
            raise KeyringError(f"key id {new_id!r} already exists")
        return Keyring(new_id, {**self.keys, new_id: secrets.token_bytes(nbytes)})

    @classmethod
    def generate(cls, key_id: str = "k1", nbytes: int = 32) -> Keyring:
        return cls(key_id, {key_id: secrets.token_bytes(nbytes)})


def save_keyring(ring: Keyring, path: Path) -> None:
    """Write `ring` as JSON readable only by its owner (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "active": ring.active_id,
        "keys": {kid: base64.b64encode(key).decode() for kid, key in sorted(ring.keys.items())},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
    os.chmod(path, 0o600)


def load_keyring(path: Path) -> Keyring:
    """Read a key file written by `save_keyring`."""
    try:
        doc = json.loads(path.read_text())
        keys = {str(kid): base64.b64decode(val, validate=True) for kid, val in doc["keys"].items()}
        return Keyring(str(doc["active"]), keys)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyringError(f"cannot read key file {path.name}: {exc}") from exc
