"""RFC 6962 / RFC 9162 Merkle tree: hashing, an in-memory tree with fast proofs, and proof verification."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
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


class LeavesDropped(LookupError):
    """A compact tree was asked for hashes inside a block of leaves it no longer holds; `add_block` them."""

    def __init__(self, block: int) -> None:
        super().__init__(f"the leaves of block {block} are not held in memory")
        self.block = block


class MerkleTree:
    """An append-only RFC 6962 tree holding the hash of every complete aligned subtree, level by level.

    Level k stores, concatenated, the hashes of subtrees of 2**k leaves starting at multiples of 2**k, so any
    root or proof for any size up to `size` needs only O(log n) hashing.

    A tree made compact with `compact(bits)` keeps the levels below `bits` only for the newest leaves (the last
    complete block of 2**bits leaves and the incomplete one after it): the rest of the log costs 64 / 2**bits
    bytes a leaf instead of 64. An answer that needs hashes inside an older block raises `LeavesDropped`; the
    caller reads that block's leaves from wherever they are stored, hands them to `add_block` (which checks
    them against the block's retained hash) and asks again. Every root and proof is unchanged.
    """

    __slots__ = ("_bits", "_blocks", "_dropped", "_levels")

    _BLOCKS_KEPT = 4  # re-read blocks kept for the next proofs (a proof needs at most three)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._bits = 0  # 0: every level kept whole
        self._dropped = 0  # leaves whose lower levels were dropped (a multiple of 2**bits)
        self._blocks: OrderedDict[int, list[bytes]] = OrderedDict()
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return self._dropped + len(self._levels[0]) // HASH_SIZE

    def _offset(self, k: int) -> int:
        """Index of the first hash level k still holds (levels at or above `bits` are whole)."""
        return self._dropped >> k if k < self._bits else 0

    def compact(self, bits: int) -> None:
        """Keep the levels below `bits` only for the newest leaves from now on (see the class docstring)."""
        if not 1 <= bits <= 30:
            raise ValueError("block bits must be between 1 and 30")
        if self._bits and bits != self._bits:
            raise ValueError("a compact tree keeps its block size")
        self._bits = bits
        self._prune()

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
            low = self._offset(k)
            pairs = (low + len(below) // HASH_SIZE) // 2
            if pairs == 0:
                break
            if k + 1 == len(levels):
                levels.append(bytearray())
            above = levels[k + 1]
            have = self._offset(k + 1) + len(above) // HASH_SIZE
            if have == pairs:
                # Nothing new at this level means nothing new above it either.
                break
            view = memoryview(below)
            for i in range(have, pairs):
                at = (2 * i - low) * HASH_SIZE
                above += sha(_NODE_PREFIX + view[at:at + 2 * HASH_SIZE]).digest()
            k += 1
        if self._bits:
            self._prune()

    def _prune(self) -> None:
        # Drop whole blocks below the last complete one, once three are held (so each copy is amortised).
        bits = self._bits
        held = len(self._levels[0]) // HASH_SIZE
        if held < 3 << bits:
            return
        drop = ((held >> bits) - 1) << bits
        for k in range(bits):
            level = self._levels[k]
            self._levels[k] = bytearray(memoryview(level)[(drop >> k) * HASH_SIZE:])
        self._dropped += drop

    def add_block(self, block: int, leaves: Sequence[bytes]) -> None:
        """Hand back the leaf hashes of a dropped `block`; raises ProofError unless they hash to its retained
        hash (so stored rows changed after the tree was built are never used in a proof)."""
        width = 1 << self._bits
        if not self._bits or not 0 <= block < self._dropped >> self._bits:
            raise ValueError(f"block {block} was not dropped")
        if len(leaves) != width or any(len(leaf) != HASH_SIZE for leaf in leaves):
            raise ProofError(f"block {block} needs {width} leaf hashes of {HASH_SIZE} bytes")
        levels = [b"".join(leaves)]
        sha = hashlib.sha256
        while len(levels[-1]) > HASH_SIZE:
            view = memoryview(levels[-1])
            levels.append(b"".join(sha(_NODE_PREFIX + view[at:at + 2 * HASH_SIZE]).digest()
                                   for at in range(0, len(view), 2 * HASH_SIZE)))
        top = self._levels[self._bits]
        if levels[-1] != top[block * HASH_SIZE:(block + 1) * HASH_SIZE]:
            raise ProofError(f"the leaves given for block {block} do not match the tree")
        self._blocks[block] = levels
        self._blocks.move_to_end(block)
        while len(self._blocks) > self._BLOCKS_KEPT:
            self._blocks.popitem(last=False)

    def _held(self, k: int, start: int) -> bytes:
        """The hash at level k of the subtree starting at leaf `start`."""
        if k >= self._bits or start >= self._dropped:
            pos = ((start >> k) - self._offset(k)) * HASH_SIZE
            return bytes(self._levels[k][pos:pos + HASH_SIZE])
        block = start >> self._bits
        levels = self._blocks.get(block)
        if levels is None:
            raise LeavesDropped(block)
        pos = ((start - (block << self._bits)) >> k) * HASH_SIZE
        return levels[k][pos:pos + HASH_SIZE]

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise ProofError(f"index {index} is outside the tree of size {self.size}")
        return self._held(0, index)

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for lo < hi, where lo is aligned to the largest power of two within hi - lo."""
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            return self._held(n.bit_length() - 1, lo)
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
