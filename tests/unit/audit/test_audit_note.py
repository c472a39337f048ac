"""Checkpoints as C2SP signed notes: the spec's published example, an independent verifier, cosignatures."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit.checkpoint import CheckpointSigner
from gateway.audit.note import NoteError, Verifier, cosign, parse_note, verify_note

DATA = Path(__file__).parents[2] / "data" / "c2sp"
WHEN = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
ROOT = hashlib.sha256(b"root").digest()


def spec_verify(note: str, vkey: str) -> tuple[str, int, bytes]:
    """A signed-note and tlog-checkpoint verifier written straight from the C2SP text, sharing no gateway code.

    Returns (origin, tree size, root hash) if `vkey` signed `note`; raises otherwise.
    """
    name, hex_id, b64 = vkey.split("+", 2)  # the base64 key may itself contain "+"
    blob = base64.b64decode(b64)
    assert blob[0] == 0x01, "Ed25519 vkeys have signature type 0x01"
    assert len(blob) == 33, "type byte and a 32-byte key"
    key_id = hashlib.sha256(name.encode() + b"\n" + blob[:1] + blob[1:]).digest()[:4]
    assert key_id.hex() == hex_id
    text, sep, sigs = note.rpartition("\n\n")
    assert sep, "a blank line separates the text from the signatures"
    assert sigs.endswith("\n")
    text += "\n"
    for line in sigs[:-1].split("\n"):
        assert line.startswith("\u2014 ")
        sig_name, sig_b64 = line[2:].split(" ")
        sig = base64.b64decode(sig_b64)
        if sig_name == name and sig[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(blob[1:]).verify(sig[4:], text.encode())
            lines = text.split("\n")
            origin, size, root = lines[0], lines[1], lines[2]
            assert size == str(int(size)), "tree size without leading zeroes"
            return origin, int(size), base64.b64decode(root, validate=True)
    raise AssertionError("no signature by the trusted key")


def test_the_specs_published_example_verifies_with_the_gateways_verifier() -> None:
    """The signed-note specification's example note verifies under its example verifier key."""
    verifier = Verifier.parse((DATA / "signed-note-example.vkey").read_text())
    note = parse_note((DATA / "signed-note-example.note").read_bytes())
    assert note.text == b"This is an example message.\n"
    assert verify_note(note, [verifier]) == [verifier]
    assert verifier.vkey == (DATA / "signed-note-example.vkey").read_text().strip()


def test_the_specs_example_with_one_changed_letter_is_refused() -> None:
    """The example note with its text altered fails, as a known key's bad signature must."""
    verifier = Verifier.parse((DATA / "signed-note-example.vkey").read_text())
    data = (DATA / "signed-note-example.note").read_bytes().replace(b"example", b"Example", 1)
    with pytest.raises(NoteError, match="does not verify"):
        verify_note(parse_note(data), [verifier])


def test_a_gateway_checkpoint_verifies_with_an_independent_verifier() -> None:
    """A checkpoint the gateway signs is a standard tlog-checkpoint note that a from-the-spec verifier accepts."""
    signer = CheckpointSigner.generate("cp1", origin="gateway.example.org/audit")
    cp = signer.sign(42, ROOT, WHEN)
    assert spec_verify(cp.note(), signer.vkey) == ("gateway.example.org/audit", 42, ROOT)
    assert cp.note().startswith("gateway.example.org/audit\n42\n" + base64.b64encode(ROOT).decode() + "\n\n")


def test_an_altered_gateway_checkpoint_fails_the_independent_verifier() -> None:
    """Changing the tree size in the note breaks the signature for the independent verifier too."""
    signer = CheckpointSigner.generate("cp1", origin="gateway.example.org/audit")
    note = signer.sign(42, ROOT, WHEN).note().replace("\n42\n", "\n41\n")
    with pytest.raises(InvalidSignature):
        spec_verify(note, signer.vkey)


def test_unknown_signatures_are_ignored_and_a_note_without_a_trusted_one_is_refused() -> None:
    """Per signed-note, signatures by unknown keys are skipped; with no trusted signature the note is refused."""
    signer = CheckpointSigner.generate("cp1", origin="gateway.example.org/audit")
    other = CheckpointSigner.generate("cp1", origin="gateway.example.org/audit")
    note = parse_note(signer.sign(3, ROOT, WHEN).note())
    ours = Verifier.parse(signer.vkey)
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        verify_note(note, [Verifier.parse(other.vkey)])
    assert verify_note(note, [Verifier.parse(other.vkey), ours]) == [ours]


def test_a_cosignature_verifies_under_the_cosigners_type_4_key() -> None:
    """An Ed25519 cosignature/v1 line signs the time and the note text and verifies under a type 0x04 vkey."""
    signer = CheckpointSigner.generate("cp1", origin="gateway.example.org/audit")
    cp = signer.sign(7, ROOT, WHEN)
    witness_key = Ed25519PrivateKey.generate()
    witness = Verifier("witness.example.org/w1", 0x04, witness_key.public_key())
    line = cosign(witness.name, witness_key, cp.body(), 1_790_000_000).line
    note = parse_note(cp.note((line,)))
    assert verify_note(note, [witness]) == [witness]
    forged = line[:-10] + ("A" if line[-10] != "A" else "B") + line[-9:]
    with pytest.raises(NoteError):
        verify_note(parse_note(cp.note((forged,))), [witness])


@pytest.mark.parametrize("text", [
    "no blank line\n\u2014 a AAAAAAA=\n", "text\n\n- a AAAAAAAA\n", "text\n\n\u2014 a not-base64!\n",
    "text\n\n\u2014 a AAAAAAAA", "te\x01xt\n\n\u2014 a AAAAAAAA\n",
])
def test_malformed_notes_are_refused(text: str) -> None:
    """Notes without a blank line, with a bad signature line, control characters or no final newline are refused."""
    with pytest.raises(NoteError):
        parse_note(text)


@pytest.mark.parametrize("vkey", [
    "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # wrong key ID
    "example.com/foo+530d903a+AkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # truncated key
    "example.com/foo+530d903a",
])
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    """A verifier key whose key ID does not match, or that is cut short, is refused."""
    with pytest.raises(NoteError):
        Verifier.parse(vkey)


def test_the_worked_example_in_the_format_document_verifies() -> None:
    """docs/audit-format.md's example checkpoint verifies under its log and witness keys, also independently."""
    doc = (Path(__file__).parents[3] / "docs" / "audit-format.md").read_text()
    example = doc[doc.index("### Worked example"):doc.index("### Checkpoints from before")]
    blocks = example.split("```")
    log_vkey, witness_vkey = blocks[1].split()
    note = blocks[3].lstrip("\n")
    log, witness = Verifier.parse(log_vkey), Verifier.parse(witness_vkey)
    assert verify_note(parse_note(note), [log, witness]) == [log, witness]
    origin, size, root = spec_verify(note, log_vkey)
    assert (origin, size, root.hex()) == ("gateway.example.org/audit", 1, hashlib.sha256(
        b'\x00{"event":{"agency":"health","kind":"disclosure"},"index":0,"v":1}').hexdigest())
