"""Sealing of subject identifiers inside audit entries (AES-256-GCM under a key id), for subject access only."""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import asdict, fields

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.domain import SubjectIdentifiers
from gateway.errors import GatewayError
from gateway.keyring import Keyring, KeyringError

_NONCE = 12
_FIELDS = tuple(f.name for f in fields(SubjectIdentifiers))


class SealingError(GatewayError):
    """A sealed value cannot be opened: unknown key id, wrong context (AAD), or altered ciphertext."""


class IdentifierSealer:
    """Seals identifiers as ``"<kid>:<base64(nonce || ciphertext)>"`` with the ring's active key."""

    def __init__(self, keyring: Keyring) -> None:
        for kid, key in keyring.keys.items():
            if len(key) != 32:
                raise KeyringError(f"sealing key {kid!r} must be 32 bytes for AES-256-GCM")
            if ":" in kid:
                raise KeyringError(f"sealing key id {kid!r} must not contain ':'")
        self._ring = keyring

    @staticmethod
    def _aad(kid: str, aad: bytes) -> bytes:
        # Binding the key id stops a sealed value being relabelled to another key.
        return b"mash-audit-seal-v1\x00" + kid.encode() + b"\x00" + aad

    def seal(self, subject: SubjectIdentifiers, *, aad: bytes) -> str:
        """Encrypt `subject`; `aad` (e.g. the request id) must be given again to open it."""
        kid = self._ring.active_id
        plain = json.dumps(asdict(subject), sort_keys=True, separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self._ring.active).encrypt(nonce, plain, self._aad(kid, aad))
        return f"{kid}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, *, aad: bytes) -> SubjectIdentifiers:
        """Decrypt a value made by `seal` with the same `aad`; raises SealingError otherwise."""
        kid, sep, body = sealed.partition(":")
        if not sep or not kid:
            raise SealingError("sealed value must look like '<key id>:<base64>'")
        try:
            key = self._ring.get(kid)
            blob = base64.b64decode(body, validate=True)
        except KeyringError as exc:
            raise SealingError(f"sealed with unknown key id {kid!r}") from exc
        except binascii.Error as exc:
            raise SealingError("sealed value is not valid base64") from exc
        if len(blob) <= _NONCE:
            raise SealingError("sealed value is too short")
        try:
            plain = AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], self._aad(kid, aad))
        except InvalidTag:
            raise SealingError("sealed value does not open: altered, or wrong context") from None
        try:
            doc = json.loads(plain)
            return SubjectIdentifiers(**{name: str(doc.get(name, "")) for name in _FIELDS})
        except (ValueError, AttributeError) as exc:
            raise SealingError("sealed value holds malformed identifiers") from exc
