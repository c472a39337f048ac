"""Sealing subject identifiers inside audit entries with AES-256-GCM under a key id."""

from __future__ import annotations

import base64

import pytest

from gateway.audit.sealing import IdentifierSealer, SealingError
from gateway.domain import SubjectIdentifiers
from gateway.keyring import Keyring, KeyringError

SUBJECT = SubjectIdentifiers(nhs_number="9434765919", given_name="Amelia", family_name="Price",
                             date_of_birth="2015-03-02", postcode="LS6 2AB", address_line="1 Hill Road")


def test_sealed_identifiers_open_to_the_same_subject() -> None:
    """seal then open with the same context gives back every identifier."""
    sealer = IdentifierSealer(Keyring.generate("s1"))
    assert sealer.open(sealer.seal(SUBJECT, aad=b"req-1"), aad=b"req-1") == SUBJECT


def test_sealed_value_shows_key_id_and_no_identifier() -> None:
    """The sealed text starts with the key id and contains none of the identifiers."""
    sealed = IdentifierSealer(Keyring.generate("s1")).seal(SUBJECT, aad=b"")
    assert sealed.startswith("s1:")
    for value in ("9434765919", "Amelia", "Price", "2015-03-02", "LS6 2AB", "Hill"):
        assert value not in sealed


def test_sealing_twice_gives_different_ciphertexts() -> None:
    """A fresh nonce each time, so equal subjects cannot be linked by their sealed values."""
    sealer = IdentifierSealer(Keyring.generate("s1"))
    assert sealer.seal(SUBJECT, aad=b"x") != sealer.seal(SUBJECT, aad=b"x")


def test_wrong_context_does_not_open() -> None:
    """A sealed value moved to another entry (different AAD) does not open."""
    sealer = IdentifierSealer(Keyring.generate("s1"))
    with pytest.raises(SealingError, match="wrong context"):
        sealer.open(sealer.seal(SUBJECT, aad=b"req-1"), aad=b"req-2")


def test_altered_ciphertext_does_not_open() -> None:
    """Flipping one bit of the ciphertext is detected."""
    sealer = IdentifierSealer(Keyring.generate("s1"))
    kid, body = sealer.seal(SUBJECT, aad=b"").split(":")
    blob = bytearray(base64.b64decode(body))
    blob[-1] ^= 1
    with pytest.raises(SealingError):
        sealer.open(f"{kid}:{base64.b64encode(bytes(blob)).decode()}", aad=b"")


def test_values_sealed_before_rotation_still_open() -> None:
    """After key rotation new values use the new key and old ones open with the old key."""
    ring = Keyring.generate("s1")
    old = IdentifierSealer(ring).seal(SUBJECT, aad=b"a")
    rotated = IdentifierSealer(ring.rotated("s2"))
    assert rotated.seal(SUBJECT, aad=b"a").startswith("s2:")
    assert rotated.open(old, aad=b"a") == SUBJECT


def test_relabelled_key_id_does_not_open() -> None:
    """The key id is bound into the AAD, so changing it breaks the seal even if that key exists."""
    ring = Keyring.generate("s1").rotated("s2")
    sealed = IdentifierSealer(ring).seal(SUBJECT, aad=b"")
    with pytest.raises(SealingError):
        IdentifierSealer(ring).open("s1:" + sealed.split(":", 1)[1], aad=b"")


@pytest.mark.parametrize("value", ["", "nokid", ":abc", "zz:abc", "s1:!!!", "s1:AAAA"])
def test_malformed_sealed_values_raise_sealing_error(value: str) -> None:
    """Unknown key ids, bad base64 and short blobs give SealingError, never a crash."""
    with pytest.raises(SealingError):
        IdentifierSealer(Keyring.generate("s1")).open(value, aad=b"")


def test_key_of_wrong_length_is_refused() -> None:
    """AES-256 needs 32-byte keys."""
    with pytest.raises(KeyringError, match="32 bytes"):
        IdentifierSealer(Keyring("s1", {"s1": b"short"}))
