"""An in-memory `DisclosureStore` for unit tests elsewhere; not durable, so never used by a running gateway."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

from gateway.audit.checkpoint import SignedCheckpoint
from gateway.audit.encoding import entry_bytes
from gateway.audit.merkle import leaf_hash
from gateway.audit.store import (
    CheckpointConflict,
    EntryFilter,
    EntryMeta,
    PendingEntry,
    StoredEntry,
    StoreUnavailable,
    meta_mismatches,
)
from gateway.domain import AuditReceipt


class MemoryStore:
    """Keeps entries and checkpoints in lists; `unavailable = True` makes every call fail like a dead store.

    Closing it also makes every later call fail, as with the durable stores.
    """

    def __init__(self) -> None:
        self.rows: list[tuple[StoredEntry, EntryMeta]] = []
        self.checkpoint_rows: list[SignedCheckpoint] = []
        self.cosignature_rows: list[tuple[int, bytes, str]] = []
        self.unavailable = False
        self.closed = False
        self._lock = asyncio.Lock()

    def _check(self) -> None:
        if self.unavailable or self.closed:
            raise StoreUnavailable("the in-memory audit store is unavailable or closed")

    async def append(self, entries: Sequence[PendingEntry]) -> list[AuditReceipt]:
        async with self._lock:
            self._check()
            receipts = []
            start = len(self.rows)
            for offset, pending in enumerate(entries):
                data = entry_bytes(start + offset, pending.event_json)
                digest = leaf_hash(data)
                self.rows.append((StoredEntry(start + offset, digest, data), pending.meta))
                receipts.append(AuditReceipt(start + offset, digest))
            return receipts

    async def size(self) -> int:
        self._check()
        return len(self.rows)

    async def leaf_hashes(self, start: int, limit: int | None = None) -> list[bytes]:
        self._check()
        return [row.leaf_hash for row, _ in self.rows[start:None if limit is None else start + limit]]

    async def get_entry(self, index: int) -> StoredEntry | None:
        self._check()
        return self.rows[index][0] if 0 <= index < len(self.rows) else None

    async def scan(self, start: int, limit: int) -> list[StoredEntry]:
        self._check()
        return [row for row, _ in self.rows[max(start, 0):max(start, 0) + limit]]

    async def find(self, where: EntryFilter, *, start: int, limit: int, before: int | None = None,
                   newest_first: bool = False) -> list[StoredEntry]:
        self._check()
        rows = self.rows[max(start, 0):len(self.rows) if before is None else max(before, 0)]
        matching = (row for row, meta in (reversed(rows) if newest_first else rows) if where.matches(meta))
        return list(itertools.islice(matching, max(limit, 0)))

    async def count(self, where: EntryFilter, *, before: int | None = None) -> int:
        self._check()
        return sum(1 for row, meta in self.rows if (before is None or row.index < before) and where.matches(meta))

    async def metadata_mismatches(self, start: int, end: int) -> dict[int, tuple[str, ...]]:
        self._check()
        found = ((row.index, meta_mismatches(row.data, meta)) for row, meta in self.rows[max(start, 0):max(end, 0)])
        return {index: differing for index, differing in found if differing}

    async def add_checkpoint(self, checkpoint: SignedCheckpoint) -> None:
        async with self._lock:
            self._check()
            latest = self.checkpoint_rows[-1] if self.checkpoint_rows else None
            if latest is not None and (checkpoint.timestamp <= latest.timestamp
                                       or checkpoint.tree_size < latest.tree_size):
                raise CheckpointConflict("checkpoint is not later than the latest stored one")
            if checkpoint.tree_size > len(self.rows):
                raise CheckpointConflict("checkpoint covers entries the store does not hold")
            self.checkpoint_rows.append(checkpoint)

    async def latest_checkpoint(self) -> SignedCheckpoint | None:
        self._check()
        return self.checkpoint_rows[-1] if self.checkpoint_rows else None

    async def checkpoints(self) -> list[SignedCheckpoint]:
        self._check()
        return list(self.checkpoint_rows)

    async def check_writable(self) -> None:
        self._check()

    async def add_cosignature(self, tree_size: int, root_hash: bytes, line: str) -> None:
        self._check()
        if (tree_size, root_hash, line) not in self.cosignature_rows:
            self.cosignature_rows.append((tree_size, root_hash, line))

    async def cosignatures(self) -> list[tuple[int, bytes, str]]:
        self._check()
        return sorted(self.cosignature_rows)

    async def close(self) -> None:
        self.closed = True
