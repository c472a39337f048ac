"""RFC 6962 / RFC 9162 Merkle tree: hashing, an in-memory tree with fast proofs, and proof verification."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from gateway.errors import GatewayError

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(GatewayError):
    """A Merkle proof does not verify, or was asked for an index or size the tree cannot prove."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only RFC 6962 tree holding the hash of every complete aligned subtree, level by level.

    Level k stores, concatenated, the hashes of subtrees of 2**k leaves starting at multiples of 2**k, so any
    root or proof for any size up to `size` needs only O(log n) hashing.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def append(self, leaf: bytes) -> int:
        """Add one leaf hash; returns its index."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash is 32 bytes")
        index = self.size
        self._levels[0] += leaf
        self._complete()
        return index

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add many leaf hashes at once (cheaper than repeated `append`)."""
        level0 = self._levels[0]
        for leaf in leaves:
            if len(leaf) != HASH_SIZE:
                raise ValueError("a leaf hash is 32 bytes")
            level0 += leaf
        self._complete()

    def _complete(self) -> None:
        # Build every complete aligned subtree the new leaves finished, from the bottom up.
        levels = self._levels
        sha = hashlib.sha256
        k = 0
        while True:
            below = levels[k]
            pairs = len(below) // (2 * HASH_SIZE)
            if pairs == 0:
                break
            if k + 1 == len(levels):
                levels.append(bytearray())
            above = levels[k + 1]
            have = len(above) // HASH_SIZE
            if have == pairs:
                # Nothing new at this level means nothing new above it either.
                break
            view = memoryview(below)
            for i in range(have, pairs):
                above += sha(_NODE_PREFIX + view[i * 64:(i + 1) * 64]).digest()
            k += 1

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise ProofError(f"index {index} is outside the tree of size {self.size}")
        return bytes(self._levels[0][index * HASH_SIZE:(index + 1) * HASH_SIZE])

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for lo < hi, where lo is aligned to the largest power of two within hi - lo."""
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            k = n.bit_length() - 1
            level = self._levels[k]
            pos = (lo >> k) * HASH_SIZE
            return bytes(level[pos:pos + HASH_SIZE])
        k = _split(n)
        return node_hash(self._subtree(lo, lo + k), self._subtree(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        """The tree head for the first `size` leaves (default: all)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is larger than the log ({self.size})")
        return EMPTY_ROOT if size == 0 else self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The RFC 6962 audit path for leaf `index` in the tree of `size` leaves, bottom first."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is larger than the log ({self.size})")
        if not 0 <= index < size:
            raise ProofError(f"index {index} is not in a tree of size {size}")
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._subtree(lo, lo + k))
                lo = lo + k
        path.reverse()
        return path

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """The RFC 6962 consistency proof that the tree of `size1` leaves is a prefix of the one of `size2`."""
        size2 = self.size if size2 is None else size2
        if not 0 <= size2 <= self.size:
            raise ProofError(f"tree size {size2} is larger than the log ({self.size})")
        if not 0 < size1 <= size2:
            raise ProofError(f"need 0 < size1 <= size2, got {size1} and {size2}")
        path: list[bytes] = []
        lo, hi, m, whole = 0, size2, size1, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                path.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._subtree(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        if not whole:
            path.append(self._subtree(lo, hi))
        path.reverse()
        return path


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root implied by an inclusion proof; raises ProofError if it is malformed."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p, "proof element")
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that `leaf` is at `index` in the tree of `size` leaves with head `root`; raises ProofError."""
    _check_hash(root, "root")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError("inclusion proof does not lead to the given root")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: check the tree (size1, root1) is a prefix of (size2, root2); raises ProofError."""
    if not 0 <= size1 <= size2:
        raise ProofError(f"need 0 <= size1 <= size2, got {size1} and {size2}")
    if size1 == size2:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if root1 != root2:
            raise ProofError("equal sizes but different roots")
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise ProofError("the empty tree has only one root")
        return
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    for p in proof:
        _check_hash(p, "proof element")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != root1:
        raise ProofError("consistency proof does not lead to root1")
    if sr != root2:
        raise ProofError("consistency proof does not lead to root2")
