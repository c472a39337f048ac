"""The log verifier on its own: what it accepts, and how it reports each kind of damage."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest

from gateway.audit.checkpoint import CheckpointSigner, PublicKeys, SignedCheckpoint
from gateway.audit.encoding import encode_event, entry_bytes
from gateway.audit.memory_store import MemoryStore
from gateway.audit.merkle import MerkleTree, leaf_hash
from gateway.audit.store import PendingEntry, StoredEntry, StoreUnavailable
from gateway.audit.verify import LogVerifier, verify_store
from gateway.domain import AuditEvent
from gateway.testing import FixedClock

EventFactory = Callable[..., AuditEvent]
SIGNER = CheckpointSigner.generate("cp1")
KEYS = PublicKeys({"cp1": SIGNER.public_key})


def _rows(event: EventFactory, n: int) -> list[StoredEntry]:
    rows = []
    for i in range(n):
        data = entry_bytes(i, encode_event(event(i)))
        rows.append(StoredEntry(i, leaf_hash(data), data))
    return rows


def _checkpoints(rows: list[StoredEntry], *sizes: int) -> list[SignedCheckpoint]:
    tree = MerkleTree(r.leaf_hash for r in rows)
    now = FixedClock().now()
    return [SIGNER.sign(size, tree.root(size), now + timedelta(seconds=k)) for k, size in enumerate(sizes)]


def test_empty_log_verifies_once_a_checkpoint_vouches_for_it() -> None:
    """An empty log verifies with the empty root only when a signed checkpoint of size 0 vouches for it."""
    assert not LogVerifier([], KEYS).finish().ok
    report = LogVerifier(_checkpoints([], 0), KEYS).finish()
    assert report.ok, report.summary()
    assert report.root_hash == MerkleTree().root()


def test_entries_after_the_last_checkpoint_are_not_verified(event: EventFactory) -> None:
    """Entries no checkpoint covers are an 'uncovered' problem: nothing signed vouches for them."""
    rows = _rows(event, 8)
    verifier = LogVerifier(_checkpoints(rows, 5), KEYS)
    verifier.feed(rows)
    report = verifier.finish()
    assert not report.ok
    assert (report.uncovered, report.first_bad_entry) == (3, None)
    assert [p.kind for p in report.problems] == ["uncovered"]
    assert "entries 5..7 are not covered" in report.summary()


def test_entries_without_any_checkpoint_are_not_verified(event: EventFactory) -> None:
    """A log (or bundle) with entries but no checkpoint at all is not verified."""
    verifier = LogVerifier([], KEYS)
    verifier.feed(_rows(event, 3))
    report = verifier.finish()
    assert not report.ok
    assert "no signed checkpoint" in report.summary()


def test_intact_log_verifies_in_batches(event: EventFactory) -> None:
    """Rows fed in several batches verify against checkpoints at sizes inside and at batch edges."""
    rows = _rows(event, 20)
    verifier = LogVerifier(_checkpoints(rows, 3, 7, 20), KEYS)
    for start in range(0, 20, 7):
        verifier.feed(rows[start:start + 7])
    report = verifier.finish()
    assert report.ok, report.summary()
    assert report.summary().startswith("OK: 20 entries and 3 checkpoints")


def test_garbage_entry_is_reported_as_malformed(event: EventFactory) -> None:
    """An entry that is not an entry envelope is named as malformed (and its hash still checked)."""
    rows = _rows(event, 3)
    rows[1] = StoredEntry(1, leaf_hash(b"junk"), b"junk")
    verifier = LogVerifier([], KEYS)
    verifier.feed(rows)
    report = verifier.finish()
    assert report.first_bad_entry == 1
    assert report.problems[0].kind == "malformed"


def test_checkpoints_going_back_in_time_are_reported(event: EventFactory) -> None:
    """A checkpoint that is not later than its predecessor is named, even if each one is validly signed."""
    rows = _rows(event, 4)
    first, second = _checkpoints(rows, 2, 4)
    second = SIGNER.sign(second.tree_size, second.root_hash, first.timestamp)
    verifier = LogVerifier([first, second], KEYS)
    verifier.feed(rows)
    report = verifier.finish()
    assert not report.ok
    assert report.first_bad_checkpoint == 1
    assert report.problems[0].kind == "order"


def test_entry_changed_in_place_is_named_even_without_checkpoints(event: EventFactory) -> None:
    """With no checkpoint at all, an entry whose bytes no longer match its leaf hash is still named."""
    rows = _rows(event, 5)
    rows[3] = dataclasses.replace(rows[3], data=rows[3].data.replace(b"req-3", b"req-X"))
    verifier = LogVerifier([], KEYS)
    verifier.feed(rows)
    report = verifier.finish()
    assert report.first_bad_entry == 3
    assert "first bad entry 3" in report.summary()


def test_problem_list_is_bounded(event: EventFactory) -> None:
    """A wholly corrupted log reports the first bad entry and a bounded list of problems."""
    rows = [dataclasses.replace(r, leaf_hash=b"\x00" * 32) for r in _rows(event, 300)]
    verifier = LogVerifier([], KEYS)
    verifier.feed(rows)
    report = verifier.finish()
    assert report.first_bad_entry == 0
    assert len(report.problems) == 100


def test_a_copied_entry_is_blamed_where_it_was_copied_to(event: EventFactory) -> None:
    """An old entry replayed at the end of the log is reported at the copy's index, not the original's."""
    rows = _rows(event, 10)
    rows.append(StoredEntry(10, rows[3].leaf_hash, rows[3].data))
    verifier = LogVerifier(_checkpoints(rows[:10], 10), KEYS)
    verifier.feed(rows)
    report = verifier.finish()
    assert report.first_bad_entry == 10
    assert [(p.kind, p.entry) for p in report.problems] == [("moved", 10), ("uncovered", None)]


def test_a_checkpoint_with_a_negative_tree_size_is_malformed(event: EventFactory) -> None:
    """A checkpoint claiming a negative size is named as malformed, not an exception."""
    rows = _rows(event, 3)
    (good,) = _checkpoints(rows, 3)
    bad = SIGNER.sign(-1, good.root_hash, good.timestamp + timedelta(seconds=1))
    verifier = LogVerifier([good, bad], KEYS)
    verifier.feed(rows)
    report = verifier.finish()
    assert report.first_bad_checkpoint == 1
    assert [p.kind for p in report.problems] == ["malformed"]


def test_a_trusted_checkpoint_the_log_no_longer_matches_is_named(event: EventFactory) -> None:
    """A kept checkpoint whose root the (rewritten) log no longer has is a root mismatch; a matching one is fine."""
    rows = _rows(event, 6)
    (kept,) = _checkpoints(rows, 4)
    rewritten = rows[:2] + _rows(lambda n: event(n, user="someone-else"), 6)[2:]
    checkpoints = _checkpoints(rewritten, 6)
    for feed, ok in ((rows, True), (rewritten, False)):
        verifier = LogVerifier(_checkpoints(feed, 6) if ok else checkpoints, KEYS, trusted=[kept])
        verifier.feed(feed)
        report = verifier.finish()
        assert report.ok is ok, report.summary()
    assert [p.kind for p in report.problems] == ["root_mismatch"]
    assert report.suspect_range == (0, 4)


def test_metadata_mismatches_are_reported_in_index_order_naming_fields_only(event: EventFactory) -> None:
    """Each entry the store names is one 'altered' problem, in index order, naming the fields (tokens in words)."""
    rows = _rows(event, 6)
    verifier = LogVerifier(_checkpoints(rows, 6), KEYS)
    verifier.feed(rows)
    verifier.report_meta_mismatches({4: ("subject_tokens",), 1: ("agency", "user"), 5: ()})
    report = verifier.finish()
    assert not report.ok
    assert report.first_bad_entry == 1
    assert [(p.kind, p.entry) for p in report.problems] == [("altered", 1), ("altered", 4)]
    assert "entry 1's stored agency, user do not match" in report.problems[0].message
    assert "entry 4's stored subject tokens do not match" in report.problems[1].message


class _FailingStore(MemoryStore):
    """A memory store whose `fail` method starts failing once `after` calls of it have succeeded."""

    def __init__(self, fail: str, after: int) -> None:
        super().__init__()
        self.fail, self.after, self.calls = fail, after, 0

    def _maybe_fail(self, name: str) -> None:
        if name == self.fail:
            self.calls += 1
            if self.calls > self.after:
                raise StoreUnavailable("the store went away")

    async def scan(self, start: int, limit: int) -> list[StoredEntry]:
        self._maybe_fail("scan")
        return await super().scan(start, limit)

    async def metadata_mismatches(self, start: int, end: int) -> dict[int, tuple[str, ...]]:
        self._maybe_fail("metadata_mismatches")
        return await super().metadata_mismatches(start, end)


@pytest.mark.parametrize("fail", ["scan", "metadata_mismatches"])
async def test_a_store_failing_during_verification_raises_instead_of_hanging(event: EventFactory, fail: str) -> None:
    """A store error in the middle of reading (or comparing) batches reaches the caller as that error."""
    store = _FailingStore(fail, after=2)
    await store.append([PendingEntry.from_event(event(i)) for i in range(20)])
    with pytest.raises(StoreUnavailable, match="went away"):
        await asyncio.wait_for(verify_store(store, KEYS, batch=3), timeout=5)


async def test_verification_up_to_a_size_ignores_later_metadata(event: EventFactory) -> None:
    """With `up_to`, damaged copies of entries beyond it are not part of the answer; within it they are."""
    store = MemoryStore()
    await store.append([PendingEntry.from_event(event(i)) for i in range(10)])
    tree = MerkleTree(row.leaf_hash for row, _ in store.rows)
    await store.add_checkpoint(SIGNER.sign(6, tree.root(6), FixedClock().now()))
    row, meta = store.rows[8]
    store.rows[8] = (row, dataclasses.replace(meta, user="nobody"))
    report = await verify_store(store, KEYS, batch=4, up_to=6)
    assert report.ok, report.summary()
    row, meta = store.rows[5]
    store.rows[5] = (row, dataclasses.replace(meta, case_reference="CASE-X"))
    report = await verify_store(store, KEYS, batch=4, up_to=6)
    assert [(p.kind, p.entry) for p in report.problems] == [("altered", 5)]
