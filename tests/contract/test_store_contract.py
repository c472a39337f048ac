"""The DisclosureStore conformance suite: every store (SQLite, PostgreSQL, memory) must pass all of it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest
from store_backends import Backend

from gateway.audit.checkpoint import CheckpointSigner, PublicKeys
from gateway.audit.encoding import decode_entry, encode_event, entry_bytes
from gateway.audit.log import AuditLog, CheckpointUnavailable
from gateway.audit.merkle import MerkleTree, leaf_hash, verify_inclusion
from gateway.audit.store import CheckpointConflict, EntryFilter, PendingEntry, StoreError, StoreUnavailable
from gateway.audit.verify import verify_store
from gateway.domain import AuditEvent, AuditKind
from gateway.errors import AuditUnavailable
from gateway.testing import FixedClock

EventFactory = Callable[..., AuditEvent]


def _pending(events: list[AuditEvent]) -> list[PendingEntry]:
    return [PendingEntry.from_event(e) for e in events]


async def test_append_assigns_the_next_indices_and_hashes_the_entry(backend: Backend, event: EventFactory) -> None:
    """Appends get contiguous indices from 0 and receipts whose leaf hash is that of the stored bytes."""
    store = await backend.open()
    first = await store.append(_pending([event(0), event(1)]))
    second = await store.append(_pending([event(2)]))
    assert [r.index for r in first + second] == [0, 1, 2]
    for receipt in first + second:
        row = await store.get_entry(receipt.index)
        assert row is not None
        assert row.data == entry_bytes(receipt.index, encode_event(event(receipt.index)))
        assert row.leaf_hash == receipt.leaf_hash == leaf_hash(row.data)
    assert await store.size() == 3


async def test_empty_append_stores_nothing(backend: Backend) -> None:
    """Appending no entries returns no receipts and leaves the log alone."""
    store = await backend.open()
    assert await store.append([]) == []
    assert await store.size() == 0


async def test_concurrent_appends_never_share_or_skip_an_index(backend: Backend, event: EventFactory) -> None:
    """Sixty-four concurrent appenders get distinct, gapless indices."""
    store = await backend.open()
    batches = await asyncio.gather(*(store.append(_pending([event(i)])) for i in range(64)))
    assert sorted(r.index for b in batches for r in b) == list(range(64))
    assert len(await store.leaf_hashes(0)) == 64


async def test_entries_survive_reopening(backend: Backend, event: EventFactory) -> None:
    """A second handle on the same store sees the same entries and leaf hashes."""
    store = await backend.open()
    receipts = await store.append(_pending([event(i) for i in range(5)]))
    again = await backend.open()
    assert await again.leaf_hashes(0) == [r.leaf_hash for r in receipts]
    assert await again.leaf_hashes(3) == [r.leaf_hash for r in receipts[3:]]
    assert await again.leaf_hashes(1, 2) == [r.leaf_hash for r in receipts[1:3]], "a limit reads only that many"
    assert await again.leaf_hashes(4, 10) == [receipts[4].leaf_hash]


async def test_scan_returns_rows_in_index_order(backend: Backend, event: EventFactory) -> None:
    """scan pages through rows from a start index, in order."""
    store = await backend.open()
    await store.append(_pending([event(i) for i in range(7)]))
    assert [r.index for r in await store.scan(2, 3)] == [2, 3, 4]
    assert [r.index for r in await store.scan(5, 100)] == [5, 6]
    assert await store.scan(7, 10) == []
    assert await store.get_entry(7) is None


@pytest.mark.parametrize(("where", "expected"), [
    (EntryFilter(agency="csc"), [2, 5, 8]),
    (EntryFilter(purpose="s47_enquiry", case_reference="CASE-1"), [1, 5, 9]),
    (EntryFilter(role="social_worker", user="user-2", status="MATCH"), [2, 5, 8]),
    (EntryFilter(kind="refusal"), [9]),
    (EntryFilter(status="PERMISSION_DENIED"), [9]),
    (EntryFilter(subject_tokens=frozenset({f"nhs:k1:{3:064x}", f"ndob:k1:{4:064x}"})), [3, 4, 8]),
], ids=["agency", "purpose+case", "role+user+status", "kind", "status", "tokens"])
async def test_find_applies_filters(backend: Backend, event: EventFactory, where: EntryFilter,
                                    expected: list[int]) -> None:
    """find returns exactly the matching entries, in index order."""
    store = await backend.open()
    events = [event(i) for i in range(9)]
    events.append(event(9, kind=AuditKind.REFUSAL, status="PERMISSION_DENIED"))
    await store.append(_pending(events))
    assert [r.index for r in await store.find(where, start=0, limit=100)] == expected


async def test_find_by_time_range_with_start_and_limit(backend: Backend, event: EventFactory) -> None:
    """Time bounds are inclusive at the start and exclusive at the end; start and limit page."""
    store = await backend.open()
    events = [event(i) for i in range(10)]
    await store.append(_pending(events))
    t0 = events[0].occurred_at
    where = EntryFilter(since=t0 + timedelta(seconds=2), until=t0 + timedelta(seconds=8))
    assert [r.index for r in await store.find(where, start=0, limit=100)] == [2, 3, 4, 5, 6, 7]
    assert [r.index for r in await store.find(where, start=4, limit=2)] == [4, 5]


async def test_find_newest_first_pages_backwards_with_before(backend: Backend, event: EventFactory) -> None:
    """newest_first returns matches in reverse index order; `before` continues from the last page's oldest."""
    store = await backend.open()
    await store.append(_pending([event(i) for i in range(9)]))
    where = EntryFilter(agency="csc")
    assert [r.index for r in await store.find(where, start=0, limit=2, newest_first=True)] == [8, 5]
    assert [r.index for r in await store.find(where, start=0, limit=2, before=5, newest_first=True)] == [2]
    assert [r.index for r in await store.find(EntryFilter(), start=3, limit=10, before=6)] == [3, 4, 5]


async def test_count_counts_every_match_not_a_page(backend: Backend, event: EventFactory) -> None:
    """count gives the number of matching entries, with the same filters as find, including tokens."""
    store = await backend.open()
    await store.append(_pending([event(i) for i in range(10)]))
    assert await store.count(EntryFilter()) == 10
    assert await store.count(EntryFilter(agency="csc")) == 3
    assert await store.count(EntryFilter(agency="csc", status="NO_SUCH")) == 0
    tokens = frozenset({f"nhs:k1:{3:064x}", f"ndob:k1:{4:064x}"})
    assert await store.count(EntryFilter(subject_tokens=tokens)) == 3


async def test_checkpoints_are_kept_in_order_and_latest_is_last(backend: Backend, event: EventFactory) -> None:
    """Checkpoints come back oldest first with every field intact."""
    store = await backend.open()
    await store.append(_pending([event(0), event(1)]))
    signer = CheckpointSigner.generate("cp1")
    clock = FixedClock()
    a = signer.sign(1, b"\x01" * 32, clock.now())
    b = signer.sign(2, b"\x02" * 32, clock.now() + timedelta(microseconds=1))
    assert await store.latest_checkpoint() is None
    await store.add_checkpoint(a)
    await store.add_checkpoint(b)
    assert await store.checkpoints() == [a, b]
    assert await store.latest_checkpoint() == b


async def test_cosignatures_are_kept_once_each_by_tree_size(backend: Backend, event: EventFactory) -> None:
    """Witness cosignature lines come back by tree size with their root; storing one twice keeps one copy."""
    store = await backend.open()
    await store.append(_pending([event(0), event(1)]))
    await store.add_cosignature(2, b"\x02" * 32, "\u2014 w2 BBBB\n")
    await store.add_cosignature(1, b"\x01" * 32, "\u2014 w1 AAAA\n")
    await store.add_cosignature(2, b"\x02" * 32, "\u2014 w2 BBBB\n")
    assert await store.cosignatures() == [(1, b"\x01" * 32, "\u2014 w1 AAAA\n"), (2, b"\x02" * 32, "\u2014 w2 BBBB\n")]


async def test_checkpoint_not_later_than_the_latest_is_refused(backend: Backend, event: EventFactory) -> None:
    """A checkpoint with an equal or earlier time, a smaller size, or a size beyond the log is refused."""
    store = await backend.open()
    await store.append(_pending([event(0), event(1)]))
    signer = CheckpointSigner.generate("cp1")
    now = FixedClock().now()
    await store.add_checkpoint(signer.sign(2, b"\x01" * 32, now))
    for bad in (signer.sign(2, b"\x01" * 32, now), signer.sign(1, b"\x01" * 32, now + timedelta(seconds=1)),
                signer.sign(3, b"\x01" * 32, now + timedelta(seconds=1))):
        with pytest.raises(CheckpointConflict):
            await store.add_checkpoint(bad)
    assert len(await store.checkpoints()) == 1


async def test_closed_store_refuses_appends_as_unavailable(backend: Backend, event: EventFactory) -> None:
    """After close, an append raises StoreUnavailable, which is an AuditUnavailable."""
    store = await backend.open()
    await store.close()
    with pytest.raises(StoreUnavailable) as info:
        await store.append(_pending([event(0)]))
    assert isinstance(info.value, AuditUnavailable)


async def test_migrations_are_recorded(sql_backend: Backend) -> None:
    """Opening a SQL store applies the numbered migrations and records them in the schema table."""
    await sql_backend.open()
    await sql_backend.open()  # a second open finds nothing left to apply
    assert sql_backend.sql is not None
    rows = sql_backend.sql("SELECT version, name FROM audit_schema_migrations ORDER BY version", ())
    assert rows == list(enumerate(sql_backend.migrations, start=1))


async def test_two_writers_produce_one_log_that_verifies(backend: Backend, event: EventFactory) -> None:
    """Two logs on separate handles of one store append concurrently; the result is gapless and verifies."""
    store_a, store_b = await backend.open(), await backend.open()
    signer = CheckpointSigner.generate("cp1")
    log_a = await AuditLog.open(store_a, signer, FixedClock(), checkpoint_interval=None)
    log_b = await AuditLog.open(store_b, signer, FixedClock(), checkpoint_interval=None)

    async def writer(log: AuditLog, offset: int) -> None:
        for i in range(25):
            await log.append([event(offset + i)])

    await asyncio.gather(*(writer(log, k * 100) for k, log in enumerate([log_a, log_b, log_a, log_b])))
    cp_a = await log_a.checkpoint()
    cp_b = await log_b.checkpoint()
    assert cp_a.tree_size == cp_b.tree_size == 100
    assert cp_a.root_hash == cp_b.root_hash
    report = await verify_store(store_a, PublicKeys({"cp1": signer.public_key}))
    assert report.ok, report.summary()
    assert report.entries == 100


async def test_log_reopened_on_the_store_proves_old_receipts(backend: Backend, event: EventFactory) -> None:
    """A receipt from one log handle verifies against a checkpoint made by a freshly opened one."""
    store = await backend.open()
    log = await AuditLog.open(store, None, FixedClock(), checkpoint_interval=None)
    receipt = (await log.append([event(i) for i in range(6)]))[4]
    signer = CheckpointSigner.generate("cp1")
    reopened = await AuditLog.open(await backend.open(), signer, FixedClock(), checkpoint_interval=None)
    cp = await reopened.checkpoint()
    proof = await reopened.inclusion_proof(receipt.index, cp.tree_size)
    verify_inclusion(receipt.index, cp.tree_size, receipt.leaf_hash, proof, cp.root_hash)


async def test_stored_entries_decode_to_the_appended_events(backend: Backend, event: EventFactory) -> None:
    """What comes back out of the store decodes to exactly what went in."""
    store = await backend.open()
    events = [event(i, details={"k": "v"}) for i in range(3)]
    await store.append(_pending(events))
    assert [decode_entry(r.data).event for r in await store.scan(0, 10)] == events


# -- tampering: verification must fail and say where --------------------------------------------------------


async def _filled(backend: Backend, event: EventFactory) -> tuple[PublicKeys, AuditLog]:
    store = await backend.open()
    signer = CheckpointSigner.generate("cp1")
    clock = FixedClock()
    log = await AuditLog.open(store, signer, clock, checkpoint_interval=None)
    await log.append([event(i) for i in range(6)])
    await log.checkpoint()
    clock.advance(60)
    await log.append([event(i) for i in range(6, 10)])
    await log.checkpoint()
    await backend.file_copies()
    keys = PublicKeys({"cp1": signer.public_key})
    assert (await verify_store(store, keys)).ok
    return keys, log


def _shift(sql: Callable[..., list[tuple[object, ...]]], from_index: int, by: int) -> None:
    # Two steps through negative indices so the primary key is never violated mid-update.
    sql("UPDATE audit_entries SET idx = -idx - 1 WHERE idx >= ?", (from_index,))
    sql("UPDATE audit_entries SET idx = -idx - 1 + ? WHERE idx < 0", (by,))


async def test_altered_entry_is_named(sql_backend: Backend, event: EventFactory) -> None:
    """Changing bytes of one stored entry fails verification at that entry."""
    keys, log = await _filled(sql_backend, event)
    sql = sql_backend.sql
    assert sql is not None
    (data,) = sql("SELECT data FROM audit_entries WHERE idx = 7", ())[0]
    sql("UPDATE audit_entries SET data = ? WHERE idx = 7", (bytes(data).replace(b"user-1", b"user-2"),))
    report = await verify_store(log.store, keys)
    assert not report.ok
    assert report.first_bad_entry == 7
    assert report.problems[0].kind == "altered"


async def test_deleted_entry_is_named(sql_backend: Backend, event: EventFactory) -> None:
    """Deleting an entry, leaving a gap, fails at the missing index."""
    keys, log = await _filled(sql_backend, event)
    assert sql_backend.sql is not None
    sql_backend.sql("DELETE FROM audit_entries WHERE idx = 3", ())
    report = await verify_store(log.store, keys)
    assert not report.ok
    assert report.first_bad_entry == 3


async def test_deleted_and_renumbered_entry_is_named(sql_backend: Backend, event: EventFactory) -> None:
    """Deleting an entry and renumbering the later ones to hide the gap fails at that index."""
    keys, log = await _filled(sql_backend, event)
    sql = sql_backend.sql
    assert sql is not None
    sql("DELETE FROM audit_entries WHERE idx = 4", ())
    _shift(sql, 5, -1)
    report = await verify_store(log.store, keys)
    assert not report.ok
    assert report.first_bad_entry == 4
    assert report.first_bad_checkpoint == 0


async def test_truncated_log_is_named(sql_backend: Backend, event: EventFactory) -> None:
    """Deleting the newest entries fails: a checkpoint vouches for more entries than remain."""
    keys, log = await _filled(sql_backend, event)
    assert sql_backend.sql is not None
    sql_backend.sql("DELETE FROM audit_entries WHERE idx >= 8", ())
    report = await verify_store(log.store, keys)
    assert not report.ok
    assert report.first_bad_entry == 8
    assert report.first_bad_checkpoint == 1


async def test_reordered_entries_are_named(sql_backend: Backend, event: EventFactory) -> None:
    """Swapping two whole rows (with their leaf hashes) fails at the earlier position."""
    keys, log = await _filled(sql_backend, event)
    sql = sql_backend.sql
    assert sql is not None
    sql("UPDATE audit_entries SET idx = -1 WHERE idx = 2", ())
    sql("UPDATE audit_entries SET idx = 2 WHERE idx = 5", ())
    sql("UPDATE audit_entries SET idx = 5 WHERE idx = -1", ())
    report = await verify_store(log.store, keys)
    assert not report.ok
    assert report.first_bad_entry == 2
    assert any(p.kind == "moved" for p in report.problems)


async def test_inserted_entry_is_named(sql_backend: Backend, event: EventFactory) -> None:
    """A forged, well-formed entry slipped in (later rows renumbered) fails at the inserted position."""
    keys, log = await _filled(sql_backend, event)
    sql = sql_backend.sql
    assert sql is not None
    _shift(sql, 4, 1)
    forged = entry_bytes(4, encode_event(event(4, user="someone-else")))
    if sql_backend.copies == "audit_entries":
        sql("INSERT INTO audit_entries VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (4, leaf_hash(forged), forged, "2026-11-26T09:00:04.000000Z", "disclosure", "police", "s47_enquiry",
             "social_worker", "someone-else", "CASE-0", "MATCH"))
    else:  # the copies live in their own table, where index 4 still has a row
        sql("INSERT INTO audit_entries VALUES (?,?,?)", (4, leaf_hash(forged), forged))
    report = await verify_store(log.store, keys)
    assert not report.ok
    assert report.first_bad_entry == 4


async def test_consistently_rewritten_entry_is_caught_by_the_checkpoint(sql_backend: Backend,
                                                                        event: EventFactory) -> None:
    """Rewriting an entry together with its leaf hash is caught by the checkpoint root and located to a range."""
    keys, log = await _filled(sql_backend, event)
    sql = sql_backend.sql
    assert sql is not None
    forged = entry_bytes(7, encode_event(event(7, user="someone-else")))
    # Consistent down to the filter column, so only the checkpoint can tell.
    sql("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE idx = 7", (forged, leaf_hash(forged)))
    sql(f"UPDATE {sql_backend.copies} SET user_id = ? WHERE idx = 7", ("someone-else",))  # noqa: S608
    report = await verify_store(log.store, keys)
    assert not report.ok
    assert report.first_bad_checkpoint == 1
    assert report.suspect_range == (6, 10)


async def test_altered_checkpoint_is_named(sql_backend: Backend, event: EventFactory) -> None:
    """Changing a stored checkpoint's size or root breaks its signature; the checkpoint is named."""
    keys, log = await _filled(sql_backend, event)
    sql = sql_backend.sql
    assert sql is not None
    (seq,) = sql("SELECT min(seq) FROM audit_checkpoints", ())[0]
    sql("UPDATE audit_checkpoints SET root_hash = ? WHERE seq = ?", (b"\x00" * 32, seq))
    report = await verify_store(log.store, keys)
    assert not report.ok
    assert report.first_bad_checkpoint == 0
    assert report.first_bad_entry is None
    assert any(p.kind == "bad_signature" for p in report.problems)


async def test_verification_uses_every_key_after_rotation(backend: Backend, event: EventFactory) -> None:
    """Checkpoints signed before and after a key rotation all verify with both public keys."""
    store = await backend.open()
    old, new = CheckpointSigner.generate("cp1"), CheckpointSigner.generate("cp2")
    log = await AuditLog.open(store, old, FixedClock(), checkpoint_interval=None)
    await log.append([event(0)])
    await log.checkpoint()
    keys = PublicKeys({"cp1": old.public_key, "cp2": new.public_key})
    rotated = await AuditLog.open(store, new, FixedClock(), checkpoint_interval=None, keys=keys)
    await rotated.append([event(1)])
    await rotated.checkpoint()
    report = await verify_store(store, keys)
    assert report.ok, report.summary()
    assert report.key_ids == ("cp1", "cp2")
    only_new = await verify_store(store, PublicKeys({"cp2": new.public_key}))
    assert only_new.first_bad_checkpoint == 0


def test_checkpoint_dataclass_is_frozen() -> None:
    """Signed checkpoints cannot be changed in place after signing."""
    cp = CheckpointSigner.generate("cp1").sign(0, MerkleTree().root(), FixedClock().now())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cp.tree_size = 5  # type: ignore[misc]


async def test_an_entry_with_nul_in_a_filter_column_fails_alone(backend: Backend, event: EventFactory) -> None:
    """Appends racing with one whose filter column holds a NUL all succeed; only that one is unavailable."""
    log = await AuditLog.open(await backend.open(), None, FixedClock(), checkpoint_interval=None)
    results = await asyncio.gather(log.append([event(1)]), log.append([event(2, case_reference="CASE\x00X")]),
                                   log.append([event(3)]), return_exceptions=True)
    assert isinstance(results[1], AuditUnavailable)
    assert [type(r) for r in (results[0], results[2])] == [list, list]
    assert await log.store.size() == 2


async def test_a_stored_leaf_hash_of_the_wrong_length_is_a_store_error(sql_backend: Backend,
                                                                       event: EventFactory) -> None:
    """Reading leaf hashes refuses a stored hash that is not 32 bytes with StoreError (not ValueError)."""
    store = await sql_backend.open()
    await store.append(_pending([event(0), event(1)]))
    assert sql_backend.sql is not None
    sql_backend.sql("UPDATE audit_entries SET leaf_hash = ? WHERE idx = 1", (b"\x00",))
    with pytest.raises(StoreError, match="entry 1"):
        await store.leaf_hashes(0)


# -- a log that does not match its own checkpoints is neither opened nor signed -------------------------------


async def test_log_whose_entry_was_rewritten_with_its_leaf_hash_is_not_opened(sql_backend: Backend,
                                                                               event: EventFactory) -> None:
    """A consistent rewrite (entry bytes and leaf hash) under a checkpoint fails open, so it is never re-signed."""
    keys, log = await _filled(sql_backend, event)
    assert sql_backend.sql is not None
    (data,) = sql_backend.sql("SELECT data FROM audit_entries WHERE idx = 3", ())[0]
    forged = bytes(data).replace(b"user-0", b"user-X")
    sql_backend.sql("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE idx = 3", (forged, leaf_hash(forged)))
    signer = CheckpointSigner.generate("cp1")
    with pytest.raises(AuditUnavailable, match="checkpoint"):
        await AuditLog.open(await sql_backend.open(), signer, FixedClock(), checkpoint_interval=None, keys=keys)
    assert len(await log.store.checkpoints()) == 2


async def test_log_whose_stored_leaf_hash_was_changed_is_not_opened(sql_backend: Backend,
                                                                    event: EventFactory) -> None:
    """Only the leaf hash column changed: open recomputes leaves from the bytes and names the entry."""
    keys, _ = await _filled(sql_backend, event)
    assert sql_backend.sql is not None
    sql_backend.sql("UPDATE audit_entries SET leaf_hash = ? WHERE idx = 3", (b"\x11" * 32,))
    with pytest.raises(AuditUnavailable, match="first bad entry 3"):
        await AuditLog.open(await sql_backend.open(), None, FixedClock(), checkpoint_interval=None, keys=keys)


async def test_log_whose_latest_checkpoint_is_forged_is_not_opened_or_signed(sql_backend: Backend,
                                                                             event: EventFactory) -> None:
    """A latest checkpoint that does not verify stops open, and stops a log already open from signing."""
    keys, log = await _filled(sql_backend, event)
    assert sql_backend.sql is not None
    sql_backend.sql("UPDATE audit_checkpoints SET signature = ? WHERE tree_size = 10", (b"\x00" * 64,))
    with pytest.raises(AuditUnavailable, match="signature"):
        await AuditLog.open(await sql_backend.open(), None, FixedClock(), checkpoint_interval=None, keys=keys)
    with pytest.raises(CheckpointUnavailable, match="does not verify"):
        await log.checkpoint()


async def test_open_log_refuses_to_sign_after_its_checkpoints_were_deleted(sql_backend: Backend,
                                                                           event: EventFactory) -> None:
    """Deleting the newest stored checkpoints under a running log makes its next checkpoint refuse."""
    _, log = await _filled(sql_backend, event)
    assert sql_backend.sql is not None
    sql_backend.sql("DELETE FROM audit_checkpoints WHERE tree_size = 10", ())
    with pytest.raises(CheckpointUnavailable, match="removed"):
        await log.checkpoint()


async def test_entries_another_writer_stored_with_a_wrong_leaf_hash_are_not_taken_in(
        sql_backend: Backend, event: EventFactory) -> None:
    """Catching up recomputes leaves too: a row whose stored hash does not match its bytes stops the checkpoint."""
    _, log = await _filled(sql_backend, event)
    other = await sql_backend.open()
    await other.append(_pending([event(10)]))
    assert sql_backend.sql is not None
    sql_backend.sql("UPDATE audit_entries SET leaf_hash = ? WHERE idx = 10", (b"\x22" * 32,))
    with pytest.raises(CheckpointUnavailable, match="entry 10"):
        await log.checkpoint()


@pytest.mark.parametrize("damage", [
    ("DELETE FROM audit_subject_tokens WHERE idx = 2", 2, "subject tokens"),
    ("UPDATE audit_subject_tokens SET idx = 9 WHERE idx = 3", 3, "subject tokens"),
    ("UPDATE {copies} SET user_id = 'nobody', agency = 'none' WHERE idx = 7", 7, "agency, user"),
    ("UPDATE {copies} SET occurred_at = '2020-01-01T00:00:00.000000Z' WHERE idx = 5", 5, "occurred_at"),
])
async def test_filter_columns_or_token_rows_not_matching_the_entry_are_named(
        sql_backend: Backend, event: EventFactory, damage: tuple[str, int, str]) -> None:
    """Changed filter columns or moved/deleted subject-token rows (which listing and subject access trust) fail
    verification at that entry, naming what differs."""
    statement, index, what = damage
    keys, log = await _filled(sql_backend, event)
    assert sql_backend.sql is not None
    sql_backend.sql(statement.format(copies=sql_backend.copies), ())
    report = await verify_store(log.store, keys)
    assert not report.ok
    assert report.first_bad_entry == index
    assert report.problems[0].kind == "altered"
    assert what in report.problems[0].message
