"""The audit log: durable appends with receipts, an in-memory Merkle tree for proofs, and signed checkpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from functools import partial
from typing import Protocol, TypeVar

import structlog

from gateway.audit.checkpoint import CheckpointSignatureError, CheckpointSigner, PublicKeys, SignedCheckpoint
from gateway.audit.encoding import EncodingError
from gateway.audit.merkle import LeavesDropped, MerkleTree, ProofError
from gateway.audit.note import Signature
from gateway.audit.store import CheckpointConflict, DisclosureStore, PendingEntry, StoreError
from gateway.audit.verify import LogVerifier, checked_leaf
from gateway.domain import AuditEvent, AuditReceipt, Clock
from gateway.errors import AuditUnavailable, GatewayError

_log = structlog.get_logger("gateway.audit")
_TICK = timedelta(microseconds=1)
_LOAD_BATCH = 5000  # rows per read while loading or catching up
# The tree keeps its lower levels only for the newest 1,024-2,047 entries: older proofs re-read one block of
# 1,024 entries from the store, and the log's memory no longer grows 64 bytes with every entry.
_BLOCK_BITS = 10
_T = TypeVar("_T")


class CheckpointUnavailable(GatewayError):
    """A checkpoint could not be made: no signing key, or the store refused it."""


class Cosigner(Protocol):
    """A witness the log asks to cosign each checkpoint (see `gateway.witness.WitnessClient`)."""

    async def add_checkpoint(self, note: str, tree_size: int,
                             proof: Callable[[int, int], Awaitable[list[bytes]]]) -> Signature:
        """The witness's cosignature line on `note`; `proof(old, new)` gives consistency proofs it asks for."""
        ...


class AuditLog:
    """Appends audit events durably and keeps the Merkle tree of the whole log in memory.

    The tree is rebuilt on open by hashing every stored entry's bytes (never trusting the stored leaf hash
    column) and checked against the latest stored checkpoint; rows other processes appended are taken in
    the same way before each checkpoint or proof, so several gateways can share one PostgreSQL log. A
    checkpoint is signed only if the latest stored one verifies and is a prefix of the tree being signed.

    The tree is compact: below blocks of 1,024 entries it holds hashes only for the newest entries, and a
    root or proof that reaches into an older block re-reads that block's stored leaf hashes and checks them
    against the hash the tree kept for the block before using them.
    """

    def __init__(self, store: DisclosureStore, signer: CheckpointSigner | None, clock: Clock,
                 tree: MerkleTree, checkpoint_interval: float | None,
                 append_timeout: float | None = None, *, keys: PublicKeys | None = None,
                 seen: SignedCheckpoint | None = None, witnesses: Sequence[Cosigner] = ()) -> None:
        self.store = store
        self._witnesses = list(witnesses)
        self._append_timeout = append_timeout
        self._signer = signer
        self._keys = keys
        self._seen = seen  # the newest checkpoint this log has verified or signed
        self._clock = clock
        self._tree = tree
        tree.compact(_BLOCK_BITS)
        self._interval = checkpoint_interval
        self._receipts: dict[int, bytes] = {}  # our own receipts not yet contiguous with the tree
        self._tree_lock = asyncio.Lock()
        self._checkpoint_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._available = True
        self._on_availability: list[Callable[[bool], None]] = []

    @classmethod
    async def open(cls, store: DisclosureStore, signer: CheckpointSigner | None, clock: Clock, *,
                   checkpoint_interval: float | None = 60.0, append_timeout: float | None = None,
                   keys: PublicKeys | None = None, witnesses: Sequence[Cosigner] = ()) -> AuditLog:
        """Load and check the tree from `store`. Without a `signer` the log can append and prove but not checkpoint.

        Every entry's leaf hash is recomputed from its bytes, and the latest stored checkpoint must verify
        under `keys` (default: the signer's key directory; with neither, only its root is compared) and match
        the tree at its size. If not, this raises AuditUnavailable naming the first bad entry (or checkpoint):
        a gateway must not append to, or sign, a log that does not match its own checkpoints.

        With `append_timeout`, an append the store has not confirmed within that many seconds raises
        AuditUnavailable (the entry may still land later; it is then logged but nothing was disclosed).

        Each checkpoint is then submitted to the `witnesses`, and the cosignatures they return are stored.
        """
        if checkpoint_interval is not None and checkpoint_interval <= 0:
            raise ValueError("checkpoint_interval must be positive (or None for no idle checkpoints)")
        if append_timeout is not None and append_timeout <= 0:
            raise ValueError("append_timeout must be positive (or None to wait for the store)")
        if keys is None and signer is not None:
            keys = signer.public_keys
        try:
            # The checkpoint first: it can only cover rows that exist, so the scan below reaches its size.
            latest = await store.latest_checkpoint()
            # Entries after the latest checkpoint are normal here: the next checkpoint will cover them.
            verifier = LogVerifier([latest] if latest is not None else [], keys, require_coverage=False)
            start = 0
            while rows := await store.scan(start, _LOAD_BATCH):
                verifier.feed(rows)
                start = rows[-1].index + 1
        except StoreError as exc:
            raise AuditUnavailable(f"cannot load the audit log: {exc}") from exc
        report = verifier.finish()
        if not report.ok:
            raise AuditUnavailable(f"the audit log does not match its own checks ({report.summary()}); "
                                   "run `mash-gateway audit verify` for the full report")
        return cls(store, signer, clock, verifier.tree, checkpoint_interval, append_timeout, keys=keys,
                   seen=latest, witnesses=witnesses)

    @property
    def can_checkpoint(self) -> bool:
        """Whether this log holds a signing key, so `checkpoint` may succeed."""
        return self._signer is not None

    @property
    def last_checkpoint(self) -> SignedCheckpoint | None:
        """The newest checkpoint this log has verified or signed (None before the first)."""
        return self._seen

    @property
    def size(self) -> int:
        """Entries in the in-memory tree (may trail the store until the next `sync`)."""
        return self._tree.size

    @staticmethod
    def prepare(event: AuditEvent) -> AuditEvent | PendingEntry:
        """`event` encoded for `append` now, while the caller has time (a query encodes each agency's entry as
        its answer arrives, not after the last); an event that cannot be encoded comes back as it is, and
        `append` refuses it."""
        try:
            return PendingEntry.from_event(event)
        except EncodingError:
            return event

    async def append(self, events: Sequence[AuditEvent | PendingEntry]) -> list[AuditReceipt]:
        """Durably store `events` (or entries from `prepare`) in order; returns their receipts only after the
        commit.

        Raises AuditUnavailable if the store did not take them, in which case none of them counts as logged.
        """
        if not events:
            return []
        try:
            pending = [e if isinstance(e, PendingEntry) else PendingEntry.from_event(e) for e in events]
        except EncodingError as exc:
            raise AuditUnavailable(f"cannot encode an audit event: {exc}") from exc
        try:
            async with asyncio.timeout(self._append_timeout):  # no task of its own, unlike wait_for
                receipts = await self.store.append(pending)
            if len(receipts) != len(events):
                raise AuditUnavailable("the audit store returned the wrong number of receipts")
        except TimeoutError as exc:
            self._set_available(False)
            raise AuditUnavailable("the audit store did not confirm the entries in time") from exc
        except AuditUnavailable:
            self._set_available(False)
            raise
        except Exception as exc:  # fail closed on anything the store lets through
            self._set_available(False)
            raise AuditUnavailable(f"the audit store failed: {exc}") from exc
        self._set_available(True)
        for receipt in receipts:
            self._receipts[receipt.index] = receipt.leaf_hash
        self._advance()
        return receipts

    @property
    def available(self) -> bool:
        """False from a failed append until an append or a `probe` succeeds again."""
        return self._available

    def on_availability(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(available)` whenever appends start failing or work again."""
        self._on_availability.append(listener)

    def _set_available(self, available: bool) -> None:
        if available == self._available:
            return
        self._available = available
        if available:
            _log.info("audit_store_available")
        else:
            _log.error("audit_store_unavailable")
        for listener in self._on_availability:
            listener(available)

    async def probe(self) -> bool:
        """Whether the store could take an entry again (then also take in what landed meanwhile, such as an
        append whose commit was confirmed too late); updates `available`."""
        try:
            await asyncio.wait_for(self.store.check_writable(), self._append_timeout)
            await asyncio.wait_for(self.sync(), self._append_timeout)
        except Exception as exc:  # any failure means "not yet"; only its type, a message could quote data
            _log.warning("audit_store_probe_failed", error_type=type(exc).__name__)
            return False
        self._set_available(True)
        return True

    def _advance(self) -> None:
        tree, waiting = self._tree, self._receipts
        while tree.size in waiting:
            tree.append(waiting.pop(tree.size))
        # Receipts below the tree size were already taken in by `sync`.
        for index in [i for i in waiting if i < tree.size]:
            del waiting[index]

    async def sync(self) -> int:
        """Take in entries appended by other processes (or not yet applied); returns the tree size."""
        async with self._tree_lock:
            self._advance()
            start = self._tree.size
            try:
                leaves = await self._read_leaves(start)
            except StoreError as exc:
                raise AuditUnavailable(f"cannot read the audit log: {exc}") from exc
            # Our own appends may have advanced the tree while we read; take in only what is still new.
            self._tree.extend(leaves[self._tree.size - start:])
            self._advance()
            return self._tree.size

    async def _read_leaves(self, start: int) -> list[bytes]:
        """Leaf hashes of the stored entries from `start` on, recomputed from their bytes and checked."""
        leaves: list[bytes] = []
        while rows := await self.store.scan(start + len(leaves), _LOAD_BATCH):
            for row in rows:
                if row.index != start + len(leaves):
                    raise StoreError(f"audit log has a gap at index {start + len(leaves)}")
                leaves.append(checked_leaf(row))
        return leaves

    async def _covering(self, size: int) -> None:
        if size > self._tree.size:
            await self.sync()
        if size > self._tree.size:
            raise ProofError(f"tree size {size} is larger than the log ({self._tree.size})")

    async def _from_tree(self, answer: Callable[[], _T]) -> _T:
        """`answer()`, after re-reading any block of entries the compact tree dropped and it needs."""
        for _attempt in range(16):  # a proof needs at most three blocks; others' reads may evict one meanwhile
            try:
                return answer()
            except LeavesDropped as missing:
                await self._reload_block(missing.block)
        raise AuditUnavailable("the audit tree could not keep the entries a proof needs")

    async def _reload_block(self, block: int) -> None:
        # The stored leaf hashes suffice: the block's hash kept in the tree (computed from the entries' bytes
        # when they were appended or loaded) authenticates them, and a proof is about leaf hashes only.
        width = 1 << _BLOCK_BITS
        try:
            self._tree.add_block(block, await self.store.leaf_hashes(block * width, width))
        except (StoreError, ProofError) as exc:
            raise AuditUnavailable(f"cannot re-read audit entries for a proof: {exc}") from exc

    async def root(self, size: int | None = None) -> bytes:
        if size is None:
            await self.sync()
        else:
            await self._covering(size)
        return await self._from_tree(lambda: self._tree.root(size))

    async def leaf_hash(self, index: int) -> bytes:
        await self._covering(index + 1)
        return await self._from_tree(lambda: self._tree.leaf(index))

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        await self._covering(tree_size)
        return await self._from_tree(lambda: self._tree.inclusion_proof(index, tree_size))

    async def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        await self._covering(size2)
        return await self._from_tree(lambda: self._tree.consistency_proof(size1, size2))

    async def checkpoint(self) -> SignedCheckpoint:
        """Sign and store a checkpoint of the whole log now; timestamps strictly increase.

        Refuses (CheckpointUnavailable) unless the latest stored checkpoint verifies, is not older than any
        this log has seen, and its root is the tree's root at its size: the log never vouches for a history
        that contradicts an earlier signed one.
        """
        if self._signer is None:
            raise CheckpointUnavailable("this audit log has no checkpoint signing key")
        async with self._checkpoint_lock:
            for _attempt in range(5):
                try:
                    # Latest first: it only covers stored rows, so the sync below takes all of them in.
                    latest = await self.store.latest_checkpoint()
                    size = await self.sync()
                except (StoreError, AuditUnavailable) as exc:
                    raise CheckpointUnavailable(f"cannot read the audit store: {exc}") from exc
                latest_root = None
                if latest is not None and 0 <= latest.tree_size <= size:
                    latest_root = await self._from_tree(partial(self._tree.root, latest.tree_size))
                self._check_latest(latest, latest_root)
                now = self._clock.now()
                if latest is not None and now <= latest.timestamp:
                    # Clocks may stall or step back; the next checkpoint must still be strictly later.
                    now = latest.timestamp + _TICK
                checkpoint = self._signer.sign(size, await self._from_tree(partial(self._tree.root, size)), now)
                try:
                    await self.store.add_checkpoint(checkpoint)
                except CheckpointConflict:
                    continue  # another process checkpointed meanwhile; catch up and try again
                except StoreError as exc:
                    raise CheckpointUnavailable(f"cannot store the checkpoint: {exc}") from exc
                self._seen = checkpoint
                await self._witness(checkpoint)
                return checkpoint
            raise CheckpointUnavailable("could not store a checkpoint after several attempts")

    async def _witness(self, checkpoint: SignedCheckpoint) -> None:
        """Ask every witness to cosign `checkpoint` and store the cosignatures; a refusal is logged, not raised.

        The checkpoint stands without them; `audit verify --witness ... --quorum K` tells whether enough
        witnesses vouch for it.
        """
        if not self._witnesses or not checkpoint.is_note:
            return
        note = checkpoint.note()
        results = await asyncio.gather(
            *(w.add_checkpoint(note, checkpoint.tree_size, self.consistency_proof) for w in self._witnesses),
            return_exceptions=True)
        for result in results:
            if isinstance(result, Signature):
                try:
                    await self.store.add_cosignature(checkpoint.tree_size, checkpoint.root_hash, result.line)
                except StoreError as exc:
                    _log.warning("audit_cosignature_not_stored", witness=result.name, error=str(exc))
            elif isinstance(result, GatewayError):
                _log.warning("audit_witness_refused", tree_size=checkpoint.tree_size, error=str(result))
            elif isinstance(result, BaseException):
                _log.error("audit_witness_failed", error_type=type(result).__name__, unexpected=True)

    def _check_latest(self, latest: SignedCheckpoint | None, latest_root: bytes | None) -> None:
        """Raise CheckpointUnavailable unless `latest` is a trustworthy prefix of the tree: `latest_root` is the
        tree's root at the latest checkpoint's size (None if the tree is smaller than that)."""
        seen = self._seen
        if seen is not None and (latest is None or latest.timestamp < seen.timestamp):
            raise CheckpointUnavailable("refusing to sign: checkpoints this log already saw were removed "
                                        "from the store; run `mash-gateway audit verify`")
        if latest is None:
            return
        try:
            if self._keys is not None:
                self._keys.verify(latest)
        except CheckpointSignatureError as exc:
            raise CheckpointUnavailable(f"refusing to sign: the latest stored checkpoint does not verify "
                                        f"({exc}); run `mash-gateway audit verify`") from exc
        if latest_root is None or latest_root != latest.root_hash:
            raise CheckpointUnavailable(
                f"refusing to sign: the log does not match the latest stored checkpoint (tree size "
                f"{latest.tree_size}); run `mash-gateway audit verify`")
        self._seen = latest

    async def latest_checkpoint(self) -> SignedCheckpoint | None:
        return await self.store.latest_checkpoint()

    def start(self) -> None:
        """Start emitting a checkpoint every `checkpoint_interval` seconds, even when nothing was appended."""
        if self._interval is None or self._signer is None:
            raise CheckpointUnavailable("idle checkpoints need a signing key and an interval")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(self._interval), name="audit-checkpoints")

    async def _run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                checkpoint = await self.checkpoint()
            except GatewayError as exc:
                _log.warning("audit_checkpoint_failed", error=str(exc))
            except Exception as exc:  # a bug or an unexpected store error must not end the schedule for good
                # Only the exception type: an unexpected message could quote stored content.
                _log.error("audit_checkpoint_failed", error_type=type(exc).__name__, unexpected=True)
            else:
                _log.info("audit_checkpoint", tree_size=checkpoint.tree_size, key_id=checkpoint.key_id)

    async def aclose(self) -> None:
        """Stop the idle checkpoint task and, if it ran, sign a final checkpoint over every entry appended.

        The store stays open (its owner closes it). A graceful stop thus leaves no unsigned tail behind.
        """
        task, self._task = self._task, None
        if task is None:
            return
        await self._stop(task)
        try:
            latest = await self.store.latest_checkpoint()
            if latest is None or latest.tree_size < await self.sync():
                checkpoint = await self.checkpoint()
                _log.info("audit_final_checkpoint", tree_size=checkpoint.tree_size)
        except GatewayError as exc:
            _log.warning("audit_final_checkpoint_failed", error=str(exc))
        except Exception as exc:  # closing must still succeed; only the type, as in `_run`
            _log.error("audit_final_checkpoint_failed", error_type=type(exc).__name__, unexpected=True)

    async def _stop(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled, not just the task we stopped
        except Exception as exc:  # the task already failed; closing must still succeed
            _log.error("audit_checkpoint_task_failed", error_type=type(exc).__name__)
