"""The AuditLog over the in-memory store: receipts, failing closed, checkpoints, proofs and reopening."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import structlog

from gateway.audit import log as log_module
from gateway.audit.checkpoint import CheckpointSigner, PublicKeys
from gateway.audit.encoding import encode_event, entry_bytes
from gateway.audit.log import AuditLog, CheckpointUnavailable
from gateway.audit.memory_store import MemoryStore
from gateway.audit.merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from gateway.audit.store import PendingEntry
from gateway.domain import AuditEvent
from gateway.errors import AuditUnavailable
from gateway.testing import FixedClock

EventFactory = Callable[..., AuditEvent]


async def _log(store: MemoryStore | None = None, *, interval: float | None = None,
               clock: FixedClock | None = None) -> tuple[AuditLog, MemoryStore, CheckpointSigner]:
    store = store or MemoryStore()
    signer = CheckpointSigner.generate("cp1")
    log = await AuditLog.open(store, signer, clock or FixedClock(), checkpoint_interval=interval)
    return log, store, signer


async def test_append_returns_receipts_with_index_and_leaf_hash(event: EventFactory) -> None:
    """Each receipt names the entry's index and the RFC 6962 hash of its stored bytes."""
    log, store, _ = await _log()
    events = [event(i) for i in range(3)]
    receipts = await log.append(events)
    assert [r.index for r in receipts] == [0, 1, 2]
    for receipt, ev in zip(receipts, events, strict=True):
        assert receipt.leaf_hash == leaf_hash(entry_bytes(receipt.index, encode_event(ev)))
    assert await store.size() == 3


async def test_store_failure_raises_audit_unavailable_and_stores_nothing(event: EventFactory) -> None:
    """If the store cannot take the entries the caller gets AuditUnavailable and the log is unchanged."""
    log, store, _ = await _log()
    await log.append([event(0)])
    store.unavailable = True
    with pytest.raises(AuditUnavailable):
        await log.append([event(1), event(2)])
    store.unavailable = False
    assert await store.size() == 1
    assert log.size == 1


async def test_unencodable_event_fails_closed(event: EventFactory) -> None:
    """An event that cannot be encoded is refused as AuditUnavailable, and nothing is stored."""
    log, store, _ = await _log()
    with pytest.raises(AuditUnavailable, match="encode"):
        await log.append([event(0), event(1, occurred_at=datetime(2026, 1, 1))])
    assert await store.size() == 0


async def test_event_that_is_not_valid_unicode_fails_closed(event: EventFactory) -> None:
    """An event holding a lone surrogate is refused as AuditUnavailable (not a raw UnicodeEncodeError)."""
    log, store, _ = await _log()
    with pytest.raises(AuditUnavailable, match="encode"):
        await log.append([event(0, reason="bad-\udcff-name.csv")])
    assert await store.size() == 0


async def test_an_entry_prepared_ahead_is_stored_exactly_as_its_event_would_be(event: EventFactory) -> None:
    """`prepare` encodes an event before its append; appending the prepared entry beside plain events stores
    the same bytes, in the same order, as appending the events themselves."""
    log, store, _ = await _log()
    events = [event(i) for i in range(3)]
    prepared = log.prepare(events[1])
    assert prepared == PendingEntry.from_event(events[1])
    receipts = await log.append([events[0], prepared, events[2]])
    for receipt, ev in zip(receipts, events, strict=True):
        assert receipt.leaf_hash == leaf_hash(entry_bytes(receipt.index, encode_event(ev)))
    stored = [e.data for e in await store.scan(0, 10)]
    assert stored == [entry_bytes(i, encode_event(ev)) for i, ev in enumerate(events)]


async def test_an_event_that_cannot_be_prepared_is_refused_at_its_append(event: EventFactory) -> None:
    """`prepare` never raises: an unencodable event comes back unchanged, and its append fails closed with
    nothing stored, as if it had never been prepared."""
    log, store, _ = await _log()
    bad = event(1, occurred_at=datetime(2026, 1, 1))  # a naive timestamp cannot be encoded
    assert log.prepare(bad) is bad
    with pytest.raises(AuditUnavailable, match="encode"):
        await log.append([log.prepare(event(0)), log.prepare(bad)])
    assert await store.size() == 0


async def test_concurrent_appends_get_distinct_contiguous_indices(event: EventFactory) -> None:
    """Many concurrent appenders never share or skip an index."""
    log, _, _ = await _log()
    results = await asyncio.gather(*(log.append([event(i), event(i + 100)]) for i in range(20)))
    indices = sorted(r.index for batch in results for r in batch)
    assert indices == list(range(40))
    assert log.size == 40


async def test_checkpoint_signs_the_current_tree(event: EventFactory) -> None:
    """A checkpoint records the size and root of the log and verifies under the signer's key."""
    log, store, signer = await _log()
    await log.append([event(i) for i in range(5)])
    cp = await log.checkpoint()
    assert cp.tree_size == 5
    assert cp.root_hash == await log.root(5)
    PublicKeys({"cp1": signer.public_key}).verify(cp)
    assert await store.latest_checkpoint() == cp


async def test_checkpoint_timestamps_strictly_increase_even_if_the_clock_stands_still(
        event: EventFactory) -> None:
    """With a clock that does not move, successive checkpoints still get strictly later times."""
    log, store, _ = await _log(clock=FixedClock())
    first = await log.checkpoint()
    second = await log.checkpoint()
    assert second.timestamp > first.timestamp
    assert [c.timestamp for c in await store.checkpoints()] == [first.timestamp, second.timestamp]


async def test_idle_log_still_emits_scheduled_checkpoints() -> None:
    """With nothing appended, the background task keeps emitting checkpoints at the interval."""
    log, store, _ = await _log(interval=0.02)
    log.start()
    try:
        for _ in range(100):
            if len(await store.checkpoints()) >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await log.aclose()
    checkpoints = await store.checkpoints()
    assert len(checkpoints) >= 2
    assert all(cp.tree_size == 0 for cp in checkpoints)


async def test_checkpoint_without_a_signing_key_is_refused() -> None:
    """A read-only log (no signer) cannot checkpoint or start the schedule."""
    log = await AuditLog.open(MemoryStore(), None, FixedClock(), checkpoint_interval=None)
    with pytest.raises(CheckpointUnavailable):
        await log.checkpoint()
    with pytest.raises(CheckpointUnavailable):
        log.start()


async def test_receipt_verifies_against_a_later_checkpoint(event: EventFactory) -> None:
    """A receipt plus an inclusion proof verifies against a later signed checkpoint's root."""
    log, _, _ = await _log()
    receipt = (await log.append([event(0), event(1), event(2)]))[1]
    await log.append([event(3)])
    cp = await log.checkpoint()
    proof = await log.inclusion_proof(receipt.index, cp.tree_size)
    verify_inclusion(receipt.index, cp.tree_size, receipt.leaf_hash, proof, cp.root_hash)


async def test_consistency_between_checkpoints_verifies(event: EventFactory) -> None:
    """The log at an earlier checkpoint is provably a prefix of the log at a later one."""
    log, _, _ = await _log()
    await log.append([event(i) for i in range(3)])
    old = await log.checkpoint()
    await log.append([event(i) for i in range(3, 11)])
    new = await log.checkpoint()
    proof = await log.consistency_proof(old.tree_size, new.tree_size)
    verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)


async def test_reopened_log_rebuilds_the_same_tree(event: EventFactory) -> None:
    """Opening a log on an existing store reproduces the tree (same size and root)."""
    log, store, _ = await _log()
    await log.append([event(i) for i in range(9)])
    again = await AuditLog.open(store, None, FixedClock(), checkpoint_interval=None)
    assert again.size == 9
    assert await again.root() == await log.root()


async def test_log_catches_up_with_entries_appended_by_another_writer(event: EventFactory) -> None:
    """Entries another process appended to the shared store are taken in before proving or checkpointing."""
    log_a, store, _ = await _log()
    log_b = await AuditLog.open(store, None, FixedClock(), checkpoint_interval=None)
    await log_a.append([event(0)])
    await log_b.append([event(1), event(2)])
    await log_a.append([event(3)])
    cp = await log_a.checkpoint()
    assert cp.tree_size == 4
    assert cp.root_hash == await log_b.root(4)


async def test_non_positive_checkpoint_interval_is_refused() -> None:
    """A zero or negative interval is a configuration error."""
    with pytest.raises(ValueError, match="checkpoint_interval"):
        await AuditLog.open(MemoryStore(), None, FixedClock(), checkpoint_interval=0)


async def test_failed_idle_checkpoint_does_not_stop_the_schedule(event: EventFactory) -> None:
    """If the store is down for one tick the task keeps running and checkpoints again afterwards."""
    log, store, _ = await _log(interval=0.02)
    store.unavailable = True
    log.start()
    try:
        await asyncio.sleep(0.05)
        store.unavailable = False
        for _ in range(100):
            if await store.checkpoints():
                break
            await asyncio.sleep(0.01)
    finally:
        await log.aclose()
    assert await store.checkpoints()


class _BuggyOnceStore(MemoryStore):
    """A store whose checkpoint reads fail with a plain bug (not a GatewayError) while `failures` lasts."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    async def latest_checkpoint(self):  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            raise ValueError("a leaf hash is 32 bytes")
        return await super().latest_checkpoint()


async def test_unexpected_error_in_an_idle_checkpoint_does_not_stop_the_schedule() -> None:
    """A checkpoint that fails with an unexpected exception is logged; the task keeps going and closes cleanly."""
    store = _BuggyOnceStore()
    log, _, _ = await _log(store, interval=0.02)
    store.failures = 1
    with structlog.testing.capture_logs() as logs:
        log.start()
        try:
            for _ in range(100):
                if await store.checkpoints():
                    break
                await asyncio.sleep(0.01)
        finally:
            await log.aclose()
    assert await store.checkpoints()
    assert any(entry["event"] == "audit_checkpoint_failed" for entry in logs)


class _StalledStore(MemoryStore):
    """A store whose appends never complete, like a database that stopped answering."""

    async def append(self, entries):  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_append_to_a_stalled_store_times_out_as_unavailable(event: EventFactory) -> None:
    """With an append timeout, a store that does not answer yields AuditUnavailable instead of hanging."""
    log = await AuditLog.open(_StalledStore(), None, FixedClock(), checkpoint_interval=None, append_timeout=0.05)
    with pytest.raises(AuditUnavailable, match="in time"):
        await log.append([event(0)])


class _SlowReadStore(MemoryStore):
    """A store whose leaf-hash reads pause until released, so appends can land in the middle of one."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def leaf_hashes(self, start: int, limit: int | None = None) -> list[bytes]:
        await self.release.wait()
        return await super().leaf_hashes(start, limit)


async def test_appends_during_a_catch_up_are_not_counted_twice(event: EventFactory) -> None:
    """Entries this log appends while it is reading the store for a catch-up are taken in exactly once."""
    store = _SlowReadStore()
    store.release.set()
    log = await AuditLog.open(store, CheckpointSigner.generate("cp1"), FixedClock(), checkpoint_interval=None)
    store.release.clear()
    syncing = asyncio.create_task(log.sync())
    await asyncio.sleep(0)  # the catch-up is now waiting on the store
    await log.append([event(0), event(1)])
    store.release.set()
    await syncing
    await store.append([PendingEntry.from_event(event(2))])  # written by "another process"
    await log.append([event(3)])
    await log.sync()
    assert log.size == 4
    assert await log.root() == MerkleTree(await MemoryStore.leaf_hashes(store, 0)).root()


async def test_a_graceful_stop_signs_a_final_checkpoint_over_every_entry(event: EventFactory) -> None:
    """Closing a running log checkpoints the entries appended since the last checkpoint, so no tail is unsigned."""
    log, store, _ = await _log(interval=3600)
    log.start()
    await log.append([event(i) for i in range(3)])
    await log.aclose()
    latest = await store.latest_checkpoint()
    assert latest is not None
    assert latest.tree_size == 3


async def test_a_graceful_stop_with_nothing_new_signs_nothing(event: EventFactory) -> None:
    """If the newest checkpoint already covers the log, closing adds no checkpoint."""
    log, store, _ = await _log(interval=3600)
    log.start()
    await log.append([event(0)])
    await log.checkpoint()
    await log.aclose()
    assert len(await store.checkpoints()) == 1


async def test_a_log_checkpointed_in_the_old_format_opens_verifies_and_continues_as_signed_notes(
        event: EventFactory) -> None:
    """Checkpoints written before signed notes still verify; the next checkpoint is a signed note after them."""
    from gateway.audit.verify import verify_store

    store = MemoryStore()
    signer = CheckpointSigner.generate("cp1")
    old = await AuditLog.open(store, None, FixedClock(), checkpoint_interval=None)
    await old.append([event(i) for i in range(4)])
    await store.add_checkpoint(signer.sign_legacy(4, await old.root(4), FixedClock().now()))
    log = await AuditLog.open(store, signer, FixedClock(), checkpoint_interval=None)
    await log.append([event(4)])
    new = await log.checkpoint()
    stored = await store.checkpoints()
    assert [cp.is_note for cp in stored] == [False, True]
    assert new.note().startswith(f"{signer.origin}\n5\n")
    report = await verify_store(store, signer.public_keys)
    assert report.ok, report.summary()
    store.checkpoint_rows[0] = dataclasses.replace(stored[0], timestamp=datetime(2020, 1, 1, tzinfo=UTC))
    assert not (await verify_store(store, signer.public_keys)).ok, "an old-format checkpoint still binds its time"


async def test_proofs_reaching_into_entries_the_tree_dropped_reread_them_and_verify(
        event: EventFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The log's tree keeps lower levels only for its newest entries; receipts, checkpoints and proofs over
    older entries re-read those entries from the store and verify exactly as before."""
    monkeypatch.setattr(log_module, "_BLOCK_BITS", 2)
    log, store, _ = await _log()
    receipts = [r for i in range(0, 40, 5) for r in await log.append([event(j) for j in range(i, i + 5)])]
    early = await log.checkpoint()  # 40 entries
    receipts += await log.append([event(i) for i in range(40, 63)])
    late = await log.checkpoint()
    assert log._tree._dropped > early.tree_size, "the tree should have dropped the early blocks"
    full = MerkleTree(await MemoryStore.leaf_hashes(store, 0))
    assert late.root_hash == full.root()
    assert early.root_hash == full.root(40)
    for receipt in receipts:
        for cp in (early, late):
            if receipt.index < cp.tree_size:
                proof = await log.inclusion_proof(receipt.index, cp.tree_size)
                verify_inclusion(receipt.index, cp.tree_size, receipt.leaf_hash, proof, cp.root_hash)
        assert await log.leaf_hash(receipt.index) == receipt.leaf_hash
    for size1 in range(1, 64, 7):
        proof = await log.consistency_proof(size1, late.tree_size)
        verify_consistency(size1, late.tree_size, full.root(size1), late.root_hash, proof)
    assert await log.root(21) == full.root(21)


async def test_a_stored_entry_changed_after_open_is_never_used_in_a_proof(
        event: EventFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """If a stored entry in a dropped block was rewritten (with a matching leaf hash column), the re-read
    block does not match the tree: the proof is refused as AuditUnavailable instead of proving the new bytes."""
    monkeypatch.setattr(log_module, "_BLOCK_BITS", 2)
    log, store, _ = await _log()
    await log.append([event(i) for i in range(30)])
    row, meta = store.rows[1]
    forged = entry_bytes(1, encode_event(event(99)))
    store.rows[1] = (dataclasses.replace(row, data=forged, leaf_hash=leaf_hash(forged)), meta)
    with pytest.raises(AuditUnavailable, match="re-read"):
        await log.inclusion_proof(1, 30)
    # Proofs over the newest entries, still held in memory, are unaffected.
    await log.inclusion_proof(29, 30)
