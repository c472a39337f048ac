"""Sealing of a referral's personal data at rest (AES-256-GCM with the gateway's sealing key ring)."""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import asdict, fields

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.audit.sealing import SealingError
from gateway.domain import SubjectIdentifiers
from gateway.keyring import Keyring, KeyringError
from gateway.workflow.referral import Content

_NONCE = 12
_PERSON_FIELDS = tuple(f.name for f in fields(SubjectIdentifiers))


def _person(doc: object) -> SubjectIdentifiers:
    if not isinstance(doc, dict):
        raise SealingError("sealed referral holds a malformed person")
    return SubjectIdentifiers(**{name: str(doc.get(name, "")) for name in _PERSON_FIELDS})


class ContentSealer:
    """Seals `Content` as ``"<kid>:<base64(nonce || ciphertext)>"``, bound to the referral id.

    New content is sealed with the ring's active key; any key still in the ring opens old content, so a
    rotation never locks a referral away.
    """

    def __init__(self, keyring: Keyring) -> None:
        for kid, key in keyring.keys.items():
            if len(key) != 32 or ":" in kid:
                raise KeyringError(f"sealing key {kid!r} must be 32 bytes and its id must not contain ':'")
        self._ring = keyring

    @staticmethod
    def _aad(kid: str, referral_id: str) -> bytes:
        # Binding the referral id stops sealed content being copied onto another referral.
        return b"mash-referral-seal-v1\x00" + kid.encode() + b"\x00" + referral_id.encode()

    def seal(self, content: Content, *, referral_id: str) -> str:
        kid = self._ring.active_id
        plain = json.dumps(asdict(content), sort_keys=True, separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self._ring.active).encrypt(nonce, plain, self._aad(kid, referral_id))
        return f"{kid}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, *, referral_id: str) -> Content:
        kid, sep, body = sealed.partition(":")
        if not sep or not kid:
            raise SealingError("sealed referral must look like '<key id>:<base64>'")
        try:
            key = self._ring.get(kid)
            blob = base64.b64decode(body, validate=True)
        except KeyringError as exc:
            raise SealingError("referral sealed with a key id not in the ring") from exc
        except binascii.Error as exc:
            raise SealingError("sealed referral is not valid base64") from exc
        try:
            plain = AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], self._aad(kid, referral_id))
            doc = json.loads(plain)
            return Content(
                subject=_person(doc["subject"]),
                household=tuple(_person(p) for p in doc.get("household", [])),
                concern=str(doc.get("concern", "")),
                decision_reason=str(doc.get("decision_reason", "")),
            )
        except (InvalidTag, ValueError):
            raise SealingError("sealed referral does not open: altered, or sealed for another referral") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise SealingError("sealed referral holds malformed content") from exc
