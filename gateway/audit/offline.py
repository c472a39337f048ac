"""Checking a saved inclusion proof offline: receipt, proof and signed-note checkpoint, with no database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.audit.merkle import ProofError, verify_inclusion
from gateway.audit.note import ED25519, NoteError, Verifier, parse_checkpoint_text, parse_note, verify_note


@dataclass(frozen=True, slots=True)
class OfflineResult:
    """What an offline check established: the entry, the tree it is in, and who vouched for that tree."""

    index: int
    tree_size: int
    origin: str
    witnesses: tuple[str, ...]


def verify_saved_proof(proof: Mapping[str, Any], note: str, log_keys: Sequence[Verifier], *,
                       witnesses: Sequence[Verifier] = (), quorum: int = 0,
                       receipt: Mapping[str, Any] | None = None) -> OfflineResult:
    """Check that the entry of `proof` (and `receipt`) is in the tree the checkpoint `note` signs.

    The note must verify under one of `log_keys` and carry cosignatures from `quorum` distinct `witnesses`.
    Raises ProofError saying what does not hold.
    """
    try:
        index, size = int(proof["index"]), int(proof["tree_size"])
        leaf = bytes.fromhex(str(proof["leaf_hash"]))
        path = [bytes.fromhex(str(p)) for p in proof["path"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"the proof file is not an inclusion proof as `audit prove --json` writes it ({exc})") from exc
    if receipt is not None:
        try:
            same = int(receipt["index"]) == index and bytes.fromhex(str(receipt["leaf_hash"])) == leaf
        except (KeyError, TypeError, ValueError) as exc:
            raise ProofError("the receipt needs an index and a hex leaf_hash") from exc
        if not same:
            raise ProofError("the proof is for another entry than the receipt")
    try:
        parsed = parse_note(note)
        origin, note_size, root = parse_checkpoint_text(parsed.text)
        signers = verify_note(parsed, [*log_keys, *witnesses])
    except (NoteError, ValueError) as exc:
        raise ProofError(f"the checkpoint does not verify: {exc}") from exc
    if not any(s.sig_type == ED25519 and s in log_keys for s in signers):
        raise ProofError("the checkpoint is not signed by the log's key")
    cosigners = tuple(s.name for s in signers if s in witnesses)
    if len(cosigners) < quorum:
        raise ProofError(f"the checkpoint has {len(cosigners)} of the {quorum} witness cosignatures required")
    if note_size != size:
        raise ProofError(f"the proof is for tree size {size} but the checkpoint is of size {note_size}")
    verify_inclusion(index, size, leaf, path, root)
    return OfflineResult(index, size, origin, cosigners)
