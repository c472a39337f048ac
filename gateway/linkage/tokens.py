"""Keyed subject tokens: HMAC-SHA256 of normalised identifiers, linking entries without naming people."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from gateway.domain import SubjectIdentifiers
from gateway.keyring import Keyring
from gateway.linkage.normalise import NormalisedSubject, normalise_subject

_DOMAIN = b"mash-gateway/subject-token/v1"


def length_prefixed(domain: bytes, parts: Sequence[str]) -> bytes:
    """`domain` then each part as u32be(len) || UTF-8 bytes: no two lists of parts share an encoding."""
    out = bytearray(domain)
    for part in parts:
        raw = part.encode("utf-8")
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


def _encode(route: str, parts: Sequence[str]) -> bytes:
    # Length-prefixed parts under a versioned domain tag, so no two (route, values) share an encoding
    # and a token can never equal an HMAC computed for some other purpose with the same key.
    return length_prefixed(_DOMAIN, (route, *parts))


def _route_messages(subject: NormalisedSubject) -> list[tuple[str, bytes]]:
    messages: list[tuple[str, bytes]] = []
    if subject.nhs_number:
        messages.append(("nhs", _encode("nhs", (subject.nhs_number,))))
    key = subject.name_and_date_of_birth
    if key is not None:
        given, family, dob = key
        messages.append(("ndob", _encode("ndob", (given, family, dob.isoformat()))))
    return messages


class SubjectTokeniser:
    """Turns subject identifiers into "<route>:<key id>:<hex>" tokens with a secret key ring."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def tokens(self, subject: SubjectIdentifiers) -> tuple[str, ...]:
        """One token per usable identifier route, with the active key; invalid identifiers are skipped."""
        return self._tokens_with(normalise_subject(subject), (self._keyring.active_id,))

    def all_tokens(self, subject: SubjectIdentifiers) -> tuple[str, ...]:
        """Tokens under every key in the ring (active first), to find a subject's entries after rotation."""
        active = self._keyring.active_id
        kids = (active, *sorted(k for k in self._keyring.keys if k != active))
        return self._tokens_with(normalise_subject(subject), kids)

    def _tokens_with(self, subject: NormalisedSubject, key_ids: Sequence[str]) -> tuple[str, ...]:
        messages = _route_messages(subject)
        out: list[str] = []
        for kid in key_ids:
            key = self._keyring.get(kid)
            for route, message in messages:
                digest = hmac.new(key, message, hashlib.sha256).hexdigest()
                out.append(f"{route}:{kid}:{digest}")
        return tuple(out)

    def text_token(self, label: str, text: str) -> str:
        """A keyed "<label>:<key id>:<hex>" token of free text typed into a search (an audit filter), so
        the log can show what was searched for without keeping the text; its own route keeps it apart
        from subject tokens."""
        kid = self._keyring.active_id
        digest = hmac.new(self._keyring.get(kid), _encode(f"text/{label}", (text,)), hashlib.sha256).hexdigest()
        return f"{label}:{kid}:{digest}"
