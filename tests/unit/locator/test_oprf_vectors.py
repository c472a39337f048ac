"""RFC 9497 OPRF(ristretto255, SHA-512) as the locator implements it: the RFC's vectors, and refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.locator import oprf

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "rfc9497" / "oprf-ristretto255-sha512.json").read_text())


def test_the_vectors_are_the_ristretto255_base_mode_suite() -> None:
    """The file holds the suite this module implements (mode 0, ristretto255-SHA512) and its group DST."""
    assert (VECTORS["identifier"], VECTORS["mode"], VECTORS["hash"]) == ("ristretto255-SHA512", 0, "SHA512")
    assert bytes.fromhex(VECTORS["groupDST"]) == oprf.HASH_TO_GROUP_DST


def test_derive_key_pair_gives_the_rfc_secret_key() -> None:
    """DeriveKeyPair(seed, "test key") is the RFC's skSm."""
    secret, public = oprf.derive_key_pair(bytes.fromhex(VECTORS["seed"]), bytes.fromhex(VECTORS["keyInfo"]))
    assert secret.hex() == VECTORS["skSm"]
    assert len(public) == oprf.ELEMENT_BYTES


@pytest.mark.parametrize("index", range(len(VECTORS["vectors"])))
def test_blind_evaluate_finalize_match_the_rfc_vector(index: int) -> None:
    """Blind, BlindEvaluate and Finalize give the vector's blinded element, evaluation and output."""
    vector = VECTORS["vectors"][index]
    secret = bytes.fromhex(VECTORS["skSm"])
    data = bytes.fromhex(vector["Input"])
    blind, blinded = oprf.blind(data, bytes.fromhex(vector["Blind"]))
    assert blinded.hex() == vector["BlindedElement"]
    evaluated = oprf.blind_evaluate(secret, blinded)
    assert evaluated.hex() == vector["EvaluationElement"]
    assert oprf.finalize(data, blind, evaluated).hex() == vector["Output"]


@pytest.mark.parametrize("index", range(len(VECTORS["vectors"])))
def test_the_key_holders_evaluate_equals_the_blinded_protocols_output(index: int) -> None:
    """The gateway's direct Evaluate (used to route questions) gives the same output a node finalises."""
    vector = VECTORS["vectors"][index]
    assert oprf.evaluate(bytes.fromhex(VECTORS["skSm"]), bytes.fromhex(vector["Input"])).hex() == vector["Output"]


def test_a_random_blind_still_finalises_to_the_same_output() -> None:
    """Blinding hides the input but not the result: any blind unblinds to the PRF output."""
    secret = bytes.fromhex(VECTORS["skSm"])
    data = b"\x00"
    outputs = set()
    for _ in range(3):
        blind, blinded = oprf.blind(data)
        outputs.add(oprf.finalize(data, blind, oprf.blind_evaluate(secret, blinded)))
    assert outputs == {bytes.fromhex(VECTORS["vectors"][0]["Output"])}


@pytest.mark.parametrize(("msg", "dst", "length", "expected"), [
    # RFC 9380 appendix K.3 (expand_message_xmd, SHA-512)
    (b"abc", b"QUUX-V01-CS02-with-expander-SHA512-256", 0x80,
     "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11bdd7732d8b38adb4a0edc26a0cef4bb4521713"
     "5456e58fbca1703cd6032cb1347ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b488431851041310ad6"
     "59e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1"),
    (b"abcdef0123456789", b"QUUX-V01-CS02-with-expander-SHA512-256", 0x20,
     "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58"),
])
def test_expand_message_xmd_matches_rfc_9380(msg: bytes, dst: bytes, length: int, expected: str) -> None:
    """The expander under hash_to_group gives RFC 9380's published outputs."""
    assert oprf.expand_message_xmd(msg, dst, length).hex() == expected


@pytest.mark.parametrize("element", [bytes(32), b"\xff" * 32, b"\x01" * 31, b""])
def test_blind_evaluate_refuses_what_is_not_a_non_identity_element(element: bytes) -> None:
    """The identity, a non-canonical encoding or a wrong length is refused, and the error quotes nothing."""
    with pytest.raises(oprf.OprfError) as caught:
        oprf.blind_evaluate(bytes.fromhex(VECTORS["skSm"]), element)
    assert element.hex() not in str(caught.value) or not element


def test_a_non_canonical_blind_is_refused() -> None:
    """A blind at or above the group order (or zero) is not a scalar: refused rather than reduced."""
    with pytest.raises(oprf.OprfError):
        oprf.blind(b"x", b"\xff" * 32)
    with pytest.raises(oprf.OprfError):
        oprf.blind(b"x", bytes(32))
