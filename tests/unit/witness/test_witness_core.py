"""The witness's add-checkpoint rules (C2SP tlog-witness) against its real SQLite state."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.checkpoint import CheckpointSigner
from gateway.audit.merkle import MerkleTree
from gateway.audit.note import Verifier, parse_note, parse_signature_lines, verify_note
from gateway.witness import Witness

ORIGIN = "gateway.example.org/audit"
WHEN = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _tree(n: int, salt: bytes = b"") -> MerkleTree:
    return MerkleTree(hashlib.sha256(b"\x00" + salt + bytes([i])).digest() for i in range(n))


def _body(old: int, proof: list[bytes], note: str) -> bytes:
    return (f"old {old}\n" + "".join(base64.b64encode(p).decode() + "\n" for p in proof) + "\n" + note).encode()


@pytest.fixture
def log() -> CheckpointSigner:
    return CheckpointSigner.generate("cp1", origin=ORIGIN)


@pytest.fixture
def witness(tmp_path: Path, log: CheckpointSigner) -> Iterator[Witness]:
    w = Witness("witness.example.org/w1", Ed25519PrivateKey.generate(), [Verifier.parse(log.vkey)],
                tmp_path / "witness.sqlite", clock=lambda: 1_790_000_000.0)
    yield w
    w.close()


def _add(witness: Witness, log: CheckpointSigner, old: int, tree: MerkleTree, size: int,
         proof: list[bytes] | None = None) -> tuple[int, bytes]:
    note = log.sign(size, tree.root(size), WHEN).note()
    if proof is None:
        proof = tree.consistency_proof(old, size) if 0 < old < size else []
    response = witness.add_checkpoint(_body(old, proof, note))
    return response.status, response.body


def test_the_first_checkpoint_is_cosigned_and_the_cosignature_verifies(witness: Witness, log: CheckpointSigner) -> None:
    """From old size 0 the witness cosigns; its line verifies under its type 0x04 key over the checkpoint."""
    tree = _tree(5)
    note = log.sign(5, tree.root(), WHEN).note()
    response = witness.add_checkpoint(_body(0, [], note))
    assert response.status == 200
    lines = parse_signature_lines(response.body.decode())
    assert verify_note(parse_note(note + lines[0].line), [witness.verifier]) == [witness.verifier]


def test_a_consistent_larger_checkpoint_is_cosigned(witness: Witness, log: CheckpointSigner) -> None:
    """A later checkpoint with a valid consistency proof from the cosigned size is cosigned too."""
    tree = _tree(9)
    assert _add(witness, log, 0, tree, 4)[0] == 200
    assert _add(witness, log, 4, tree, 9)[0] == 200


def test_a_wrong_old_size_gets_409_with_the_witnessed_size(witness: Witness, log: CheckpointSigner) -> None:
    """An old size other than the last cosigned one is answered 409 with that size as text/x.tlog.size."""
    tree = _tree(9)
    _add(witness, log, 0, tree, 4)
    note = log.sign(9, tree.root(), WHEN).note()
    response = witness.add_checkpoint(_body(0, [], note))
    assert (response.status, response.body, response.content_type) == (409, b"4\n", "text/x.tlog.size")


def test_a_rewritten_history_is_refused(witness: Witness, log: CheckpointSigner) -> None:
    """A checkpoint whose tree does not extend the cosigned one (a rewritten entry) fails the proof: 422."""
    _add(witness, log, 0, _tree(4), 4)
    rewritten = _tree(9, salt=b"x")
    assert _add(witness, log, 4, rewritten, 9)[0] == 422


def test_a_split_view_of_the_same_size_is_refused(witness: Witness, log: CheckpointSigner) -> None:
    """A second, different checkpoint of the size already cosigned is refused (422), never cosigned."""
    assert _add(witness, log, 0, _tree(4), 4)[0] == 200
    assert _add(witness, log, 4, _tree(4, salt=b"fork"), 4)[0] == 422
    assert _add(witness, log, 4, _tree(4), 4)[0] == 200  # the same head again is fine


def test_a_rollback_to_a_smaller_tree_is_refused(witness: Witness, log: CheckpointSigner) -> None:
    """Claiming an old size larger than the new checkpoint is a bad request (400)."""
    tree = _tree(9)
    _add(witness, log, 0, tree, 9)
    assert _add(witness, log, 9, tree, 4, proof=[])[0] == 400


def test_a_checkpoint_of_an_unknown_log_is_404(witness: Witness) -> None:
    """A log the witness was not configured with is 404."""
    other = CheckpointSigner.generate("cp1", origin="other.example/log")
    assert _add(witness, other, 0, _tree(2), 2)[0] == 404


def test_a_checkpoint_not_signed_by_the_logs_key_is_403(witness: Witness) -> None:
    """A checkpoint for a known origin but signed by another key is 403."""
    impostor = CheckpointSigner.generate("cp1", origin=ORIGIN)
    assert _add(witness, impostor, 0, _tree(2), 2)[0] == 403


@pytest.mark.parametrize("body", [
    b"", b"old 01\n\nx", b"old 1\nnot base64!\n\nx", b"new 1\n\n", b"old 0\n" + b"AAAA\n" * 3 + b"\nx",
])
def test_malformed_requests_are_400(witness: Witness, body: bytes) -> None:
    """Requests without the old line, with leading zeroes or bad proof lines are 400."""
    assert witness.add_checkpoint(body).status == 400


def test_a_proof_from_the_empty_tree_is_refused(witness: Witness, log: CheckpointSigner) -> None:
    """With old size 0 the proof must be empty (422)."""
    tree = _tree(4)
    assert _add(witness, log, 0, tree, 4, proof=[tree.root(2)])[0] == 422


def test_the_latest_cosigned_checkpoint_is_served_by_origin_hash(witness: Witness, log: CheckpointSigner) -> None:
    """GET <sha256(origin)>/checkpoint serves the cosigned note; an unknown hash is 404."""
    _add(witness, log, 0, _tree(3), 3)
    response = witness.latest(hashlib.sha256(ORIGIN.encode()).hexdigest())
    assert response.status == 200
    note = parse_note(response.body)
    assert verify_note(note, [witness.verifier, Verifier.parse(log.vkey)]) == [Verifier.parse(log.vkey),
                                                                                 witness.verifier]
    assert witness.latest("0" * 64).status == 404


def test_the_witnessed_size_survives_a_restart(tmp_path: Path, log: CheckpointSigner) -> None:
    """The state is on disk: a restarted witness still refuses an old size below what it cosigned."""
    key = Ed25519PrivateKey.generate()
    first = Witness("w", key, [Verifier.parse(log.vkey)], tmp_path / "w.sqlite")
    _add(first, log, 0, _tree(6), 6)
    first.close()
    again = Witness("w", key, [Verifier.parse(log.vkey)], tmp_path / "w.sqlite")
    try:
        assert _add(again, log, 0, _tree(8), 8)[:2] == (409, b"6\n")
    finally:
        again.close()
