"""The Merkle tree against the published RFC 6962 test vectors, and proofs our own tree generates."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "rfc6962"
ROOTS = json.loads((DATA / "roots.json").read_text())
LEAVES = [bytes.fromhex(h) for h in ROOTS["leaf_inputs_hex"]]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(p) for p in value or []]


def _vectors(kind: str) -> list[Any]:
    files = sorted((DATA / kind).rglob("*.json"))
    assert files, f"no {kind} vectors found"
    return [pytest.param(json.loads(f.read_text()), id=str(f.relative_to(DATA / kind))) for f in files]


@pytest.mark.parametrize("size", range(9))
def test_root_matches_published_root_for_each_size(size: int) -> None:
    """The tree head of the first `size` standard leaves equals the published RFC 6962 root."""
    tree = MerkleTree(leaf_hash(d) for d in LEAVES[:size])
    assert tree.root().hex() == ROOTS["root_by_tree_size_hex"][size]


def test_empty_tree_root_is_hash_of_nothing() -> None:
    """An empty tree's head is SHA-256 of the empty string."""
    assert MerkleTree().root() == EMPTY_ROOT


def test_roots_of_prefixes_agree_with_trees_built_to_that_size() -> None:
    """root(size) of a full tree equals the root of a tree built with only that many leaves."""
    full = MerkleTree(leaf_hash(d) for d in LEAVES)
    for size in range(9):
        assert full.root(size).hex() == ROOTS["root_by_tree_size_hex"][size]


@pytest.mark.parametrize("vector", _vectors("inclusion"))
def test_inclusion_vector_verifies_or_is_rejected_as_published(vector: dict[str, Any]) -> None:
    """Happy-path inclusion vectors verify and every mutated one raises ProofError."""
    args = (vector["leafIdx"], vector["treeSize"], _b64(vector["leafHash"]), _proof(vector["proof"]),
            _b64(vector["root"]))
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("vector", _vectors("consistency"))
def test_consistency_vector_verifies_or_is_rejected_as_published(vector: dict[str, Any]) -> None:
    """Happy-path consistency vectors verify and every mutated one raises ProofError."""
    args = (vector["size1"], vector["size2"], _b64(vector["root1"]), _b64(vector["root2"]),
            _proof(vector["proof"]))
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_generated_inclusion_proofs_match_published_happy_paths() -> None:
    """Our tree produces exactly the published inclusion proof for each happy-path vector."""
    tree = MerkleTree(leaf_hash(d) for d in LEAVES)
    checked = 0
    for path in sorted((DATA / "inclusion").glob("[0-9]*/happy-path.json")):
        v = json.loads(path.read_text())
        assert tree.inclusion_proof(v["leafIdx"], v["treeSize"]) == _proof(v["proof"])
        checked += 1
    assert checked > 0


def test_generated_consistency_proofs_match_published_happy_paths() -> None:
    """Our tree produces exactly the published consistency proof for each happy-path vector."""
    tree = MerkleTree(leaf_hash(d) for d in LEAVES)
    checked = 0
    for path in sorted((DATA / "consistency").glob("[0-9]*/happy-path.json")):
        v = json.loads(path.read_text())
        assert tree.consistency_proof(v["size1"], v["size2"]) == _proof(v["proof"])
        checked += 1
    assert checked > 0


def test_every_generated_proof_verifies_for_all_small_trees() -> None:
    """For every size up to 40, every inclusion and consistency proof the tree makes verifies."""
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(40)]
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    for size in range(1, 41):
        root = tree.root(size)
        assert root == MerkleTree(leaves[:size]).root()
        for index in range(size):
            verify_inclusion(index, size, leaves[index], tree.inclusion_proof(index, size), root)
        for size1 in range(1, size + 1):
            verify_consistency(size1, size, tree.root(size1), root, tree.consistency_proof(size1, size))


def test_proof_for_wrong_leaf_is_rejected() -> None:
    """An inclusion proof does not verify for a different leaf at the same index."""
    tree = MerkleTree(leaf_hash(bytes([i])) for i in range(7))
    with pytest.raises(ProofError):
        verify_inclusion(3, 7, leaf_hash(b"other"), tree.inclusion_proof(3, 7), tree.root())


def test_proofs_beyond_the_tree_are_refused() -> None:
    """Asking for an index or size the tree does not have raises ProofError."""
    tree = MerkleTree(leaf_hash(bytes([i])) for i in range(3))
    with pytest.raises(ProofError):
        tree.inclusion_proof(3, 3)
    with pytest.raises(ProofError):
        tree.inclusion_proof(0, 4)
    with pytest.raises(ProofError):
        tree.consistency_proof(0, 3)


def test_node_hash_uses_the_interior_prefix() -> None:
    """Interior nodes are domain-separated from leaves (0x01 vs 0x00 prefix)."""
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) != leaf_hash(a + b)
    assert MerkleTree([a, b]).root() == node_hash(a, b)


def test_inclusion_proof_at_a_million_entries_takes_under_a_millisecond() -> None:
    """At 1,000,000 entries an inclusion proof is generated in well under 1 ms (median of 200)."""
    import statistics
    import time

    size = 1_000_000
    tree = MerkleTree(i.to_bytes(32, "big") for i in range(size))
    root = tree.root()
    timings = []
    for index in [*range(0, size, size // 200), size - 1]:
        started = time.perf_counter()
        proof = tree.inclusion_proof(index, size)
        timings.append(time.perf_counter() - started)
        verify_inclusion(index, size, tree.leaf(index), proof, root)
    assert statistics.median(timings) < 0.001
