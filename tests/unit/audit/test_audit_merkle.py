"""The Merkle tree against the published RFC 6962 test vectors, and proofs our own tree generates."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.merkle import (
    EMPTY_ROOT,
    LeavesDropped,
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


def _answer(tree: MerkleTree, leaves: list[bytes], ask: Callable[[], Any], width: int = 4) -> Any:
    """`ask()` on a compact tree of `width`-leaf blocks, handing back each dropped block it asks for."""
    for _ in range(8):
        try:
            return ask()
        except LeavesDropped as missing:
            tree.add_block(missing.block, leaves[missing.block * width:(missing.block + 1) * width])
    raise AssertionError("the compact tree kept asking for blocks")


def test_a_compact_tree_gives_the_same_roots_and_proofs_as_a_full_one() -> None:
    """With blocks of 4 leaves dropped as it grows, every root, leaf and proof up to 60 leaves equals the full
    tree's, once the blocks it asks for are handed back."""
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(60)]
    full = MerkleTree(leaves)
    compact = MerkleTree()
    compact.compact(2)
    for leaf in leaves:
        compact.append(leaf)
    assert compact.size == 60
    assert compact.root() == full.root()
    for size in range(1, 61):
        assert _answer(compact, leaves, partial(compact.root, size)) == full.root(size)
        for index in range(size):
            assert _answer(compact, leaves, partial(compact.inclusion_proof, index, size)) == \
                full.inclusion_proof(index, size), f"inclusion proof of {index} in {size}"
        for size1 in range(1, size + 1):
            assert _answer(compact, leaves, partial(compact.consistency_proof, size1, size)) == \
                full.consistency_proof(size1, size), f"consistency proof {size1} -> {size}"
    assert [_answer(compact, leaves, partial(compact.leaf, i)) for i in range(60)] == leaves


def test_a_compact_tree_matches_the_published_roots_when_built_in_one_go() -> None:
    """Compacting a tree built from the RFC 6962 leaves leaves its published roots unchanged."""
    leaves = [leaf_hash(d) for d in LEAVES]
    tree = MerkleTree(leaves)
    tree.compact(1)
    for size in range(9):
        assert _answer(tree, leaves, partial(tree.root, size), 2).hex() == ROOTS["root_by_tree_size_hex"][size]


def test_a_compact_tree_holds_its_lower_levels_only_for_the_newest_blocks() -> None:
    """The compact tree's memory does not grow with every leaf: below the block level it holds at most three
    blocks' worth of hashes, and it asks for an old block's leaves instead of keeping them."""
    tree = MerkleTree()
    tree.compact(4)
    tree.extend(leaf_hash(i.to_bytes(4, "big")) for i in range(10_000))
    assert tree.size == 10_000
    assert sum(len(level) for level in tree._levels) < 3 * 16 * 64 + 10_000 // 16 * 64
    with pytest.raises(LeavesDropped) as dropped:
        tree.inclusion_proof(5, 10_000)
    assert dropped.value.block == 0
    # The newest leaves are still held, so their proofs need nothing from the store.
    tree.inclusion_proof(9_999, 10_000)


def test_a_compact_tree_refuses_leaves_that_do_not_match_the_dropped_block() -> None:
    """Leaves handed back for a dropped block must hash to the hash the tree kept for it (no proof is ever
    made from stored rows changed after the tree was built)."""
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(32)]
    tree = MerkleTree(leaves)
    tree.compact(2)
    altered = list(leaves[:4])
    altered[1] = leaf_hash(b"changed")
    with pytest.raises(ProofError, match="do not match"):
        tree.add_block(0, altered)
    with pytest.raises(ProofError, match="needs 4 leaf hashes"):
        tree.add_block(0, leaves[:3])
    with pytest.raises(ValueError, match="not dropped"):
        tree.add_block(7, leaves[28:32])
    with pytest.raises(LeavesDropped):
        tree.leaf(1)
