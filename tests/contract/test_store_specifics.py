"""Behaviour particular to one store: URLs, durability settings, failures mid-run, several processes."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import structlog
from store_backends import POSTGRES_URL, postgres_url

from gateway.audit import sqlite_store
from gateway.audit.backends import open_store
from gateway.audit.checkpoint import CheckpointSigner, PublicKeys
from gateway.audit.encoding import entry_bytes
from gateway.audit.log import AuditLog, CheckpointUnavailable
from gateway.audit.merkle import leaf_hash
from gateway.audit.migrations import MIGRATIONS_TABLE, load_migrations
from gateway.audit.postgres_store import PostgresStore
from gateway.audit.sqlite_store import SqliteStore, path_from_url
from gateway.audit.store import META_FIELDS, EntryFilter, PendingEntry, StoreUnavailable, StoreUrlError
from gateway.audit.verify import verify_store
from gateway.domain import AuditEvent
from gateway.errors import AuditUnavailable
from gateway.testing import FixedClock

EventFactory = Callable[..., AuditEvent]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite:relative", "sqlite://host/x", "sqlite:///", ""])
async def test_unsupported_or_malformed_urls_are_refused(url: str) -> None:
    """open_store names the accepted URL forms when given anything else."""
    with pytest.raises(StoreUrlError):
        await open_store(url)


def test_sqlite_url_paths() -> None:
    """sqlite:///a/b is relative and sqlite:////a/b is absolute."""
    assert path_from_url("sqlite:///state/audit.sqlite") == Path("state/audit.sqlite")
    assert path_from_url("sqlite:////var/lib/mash/audit.sqlite") == Path("/var/lib/mash/audit.sqlite")


async def test_sqlite_store_uses_wal_and_full_sync(tmp_path: Path) -> None:
    """The SQLite file is in WAL mode, and the store's connections fsync every commit (synchronous=FULL)."""
    store = await SqliteStore.open(tmp_path / "a.sqlite")
    try:
        mode = await store._read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        sync = await store._read(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    finally:
        await store.close()
    assert mode == "wal"
    assert sync == 2  # FULL


async def test_sqlite_store_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    """A path that cannot hold a database gives StoreUnavailable, not a raw sqlite3 error."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailable):
        await open_store(f"sqlite:///{tmp_path / 'file' / 'audit.sqlite'}")


async def test_unreachable_postgres_is_unavailable() -> None:
    """A PostgreSQL server that does not answer gives StoreUnavailable (an AuditUnavailable)."""
    with pytest.raises(AuditUnavailable):
        await open_store("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2")


def _terminate(application_name: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                      (application_name,))


@pytest.mark.postgres
async def test_postgres_connections_lost_while_idle_are_replaced_transparently(
        postgres_schema: str, event: EventFactory) -> None:
    """After the server dropped every connection (e.g. a restart), appends, checkpoints and reads all work."""
    store = await open_store(postgres_url(postgres_schema))
    try:
        signer = CheckpointSigner.generate("cp1")
        log = await AuditLog.open(store, signer, FixedClock(), checkpoint_interval=None)
        await asyncio.gather(*(store.size() for _ in range(4)))  # several pooled connections
        await log.append([event(0)])
        _terminate(postgres_schema)
        receipts = await log.append([event(1)])
        assert receipts[0].index == 1
        _terminate(postgres_schema)
        assert (await log.checkpoint()).tree_size == 2
        _terminate(postgres_schema)
        assert await store.size() == 2
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_checkpoint_while_the_server_is_down_is_checkpoint_unavailable(
        postgres_schema: str, event: EventFactory) -> None:
    """A checkpoint that cannot reach the store raises CheckpointUnavailable, not a disclosure-path error."""
    store = await PostgresStore.open(postgres_url(postgres_schema), wait_timeout=2.0)
    try:
        log = await AuditLog.open(store, CheckpointSigner.generate("cp1"), FixedClock(), checkpoint_interval=None)
        await log.append([event(0)])
        store._pool.conninfo = "postgresql://postgres@127.0.0.1:1/test?connect_timeout=2"  # the server "goes away"
        _terminate(postgres_schema)
        with pytest.raises(CheckpointUnavailable):
            await log.checkpoint()
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_open_with_no_schema_on_the_search_path_closes_its_connection(postgres_schema: str) -> None:
    """A refused open leaves no connection behind, even while the caller still holds the error."""
    name = f"{postgres_schema}_leak"
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{postgres_schema}_missing&application_name={name}"
    with pytest.raises(StoreUnavailable, match="search_path") as info:
        await open_store(url)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        (count,) = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                 (name,)).fetchone() or (0,)
    assert info.value is not None
    assert count == 0


def _connections(application_name: str) -> int:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        (count,) = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                 (application_name,)).fetchone() or (0,)
    return int(count)


@pytest.mark.postgres
async def test_postgres_store_uses_at_most_its_pool_size_of_connections_and_closes_them(
        postgres_schema: str, event: EventFactory) -> None:
    """Concurrent reads and appends share one pool of `pool_size` connections; closing the store ends them all."""
    store = await PostgresStore.open(postgres_url(postgres_schema), pool_size=2)
    try:
        await asyncio.gather(*(store.size() for _ in range(20)),
                             *(store.append([PendingEntry.from_event(event(i))]) for i in range(20)))
        assert 1 <= _connections(postgres_schema) <= 2
        assert await store.size() == 20
    finally:
        await store.close()
    assert _connections(postgres_schema) == 0


_WRITER = textwrap.dedent("""
    import asyncio, sys
    from datetime import UTC, datetime
    from gateway.audit.log import AuditLog, CheckpointUnavailable
    from gateway.audit.backends import open_store
    from gateway.domain import AuditEvent, AuditKind, SystemClock

    async def main(url: str, name: str) -> None:
        store = await open_store(url)
        log = await AuditLog.open(store, None, SystemClock(), checkpoint_interval=None)
        async def one(i: int) -> None:
            await log.append([AuditEvent(kind=AuditKind.DISCLOSURE, occurred_at=datetime.now(UTC),
                                         request_id=f"{name}-{i}")])
        for start in range(0, 200, 20):
            await asyncio.gather(*(one(i) for i in range(start, start + 20)))
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


@pytest.mark.postgres
async def test_two_gateway_processes_append_to_one_postgres_log_that_verifies(postgres_schema: str) -> None:
    """Two separate processes appending concurrently produce one gapless log whose checkpoint verifies."""
    url = postgres_url(postgres_schema)
    store = await open_store(url)  # migrate once up front so both writers start appending at once
    try:
        procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", _WRITER, url, name, cwd=ROOT,
                                                      stderr=subprocess.PIPE)
                 for name in ("gw-a", "gw-b")]
        for proc in procs:
            _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
            assert proc.returncode == 0, err.decode()
        signer = CheckpointSigner.generate("cp1")
        log = await AuditLog.open(store, signer, FixedClock(), checkpoint_interval=None)
        checkpoint = await log.checkpoint()
        assert checkpoint.tree_size == 400
        report = await verify_store(store, PublicKeys({"cp1": signer.public_key}))
        assert report.ok, report.summary()
        writers = {row.data.split(b'"request_id":"')[1][:4] for row in await store.scan(0, 400)}
        assert writers == {b"gw-a", b"gw-b"}
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_entry_the_database_refuses_fails_only_its_own_append(
        postgres_schema: str, event: EventFactory) -> None:
    """A group commit that the database refuses because of one entry is retried without it."""
    store = await open_store(postgres_url(postgres_schema))
    try:
        good = PendingEntry.from_event(event(0))
        bad = PendingEntry(good.event_json, dataclasses.replace(good.meta, user="u\x00"))  # bypasses the check
        results = await asyncio.gather(store.append([good]), store.append([bad]), store.append([good]),
                                       return_exceptions=True)
        assert isinstance(results[1], StoreUnavailable)
        assert [type(r) for r in (results[0], results[2])] == [list, list]
        assert await store.size() == 2
    finally:
        await store.close()


async def test_concurrent_first_opens_of_a_new_sqlite_file_all_succeed(tmp_path: Path) -> None:
    """Several gateways opening (and so migrating) one new SQLite file at the same moment all succeed."""
    for trial in range(5):
        url = f"sqlite:///{tmp_path / f'new{trial}.sqlite'}"
        stores = await asyncio.gather(*(open_store(url) for _ in range(4)), return_exceptions=True)
        for store in stores:
            if not isinstance(store, BaseException):
                await store.close()
        assert [s for s in stores if isinstance(s, BaseException)] == []


# -- SQLite: the search copies are filed after the entries' commit --------------------------------------------


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def _copies(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    return (_rows(path, "SELECT * FROM audit_entry_meta ORDER BY idx"),
            _rows(path, "SELECT idx, token FROM audit_subject_tokens ORDER BY idx, token"))


def _expected_copies(events: list[AuditEvent]) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    metas = [PendingEntry.from_event(e).meta for e in events]
    return ([(i, m.occurred_at, m.kind, m.agency, m.purpose, m.role, m.user, m.case_reference, m.status)
             for i, m in enumerate(metas)],
            sorted((i, t) for i, m in enumerate(metas) for t in m.subject_tokens))


def _unfile(path: Path, index: int) -> None:
    """Put the file as a process leaves it that stopped after committing entries `index`… but before filing
    their copies: no copy rows for them, and the filing mark at `index`."""
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM audit_entry_meta WHERE idx >= ?", (index,))
        conn.execute("DELETE FROM audit_subject_tokens WHERE idx >= ?", (index,))
        conn.execute("UPDATE audit_copies_filed SET upto = ?", (index,))


async def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "the writer did not file the copies in time"
        await asyncio.sleep(0.02)


async def test_sqlite_append_commits_only_the_entries_and_a_search_files_their_copies_first(
        tmp_path: Path, event: EventFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """An append's transaction holds the entries alone (its fsync covers no index pages); the filter columns and
    token rows follow, and a search, count or verification files them before it reads, so none is missed."""
    monkeypatch.setattr(sqlite_store, "_FILE_WHEN_QUIET", 3600.0)  # only the search may file them here
    path = tmp_path / "a.sqlite"
    store = await SqliteStore.open(path)
    try:
        events = [event(i) for i in range(5)]
        await store.append([PendingEntry.from_event(e) for e in events])
        assert _rows(path, "SELECT count(*) FROM audit_entries") == [(5,)]
        assert _copies(path) == ([], [])
        found = await store.find(EntryFilter(agency="police"), start=0, limit=10)
        assert [e.index for e in found] == [i for i, e in enumerate(events) if e.agency == "police"]
        assert _copies(path) == _expected_copies(events)
        await store.append([PendingEntry.from_event(event(5))])
        assert await store.count(EntryFilter(subject_tokens=frozenset(event(5).subject_tokens))) >= 1
        assert _copies(path) == _expected_copies([*events, event(5)])
    finally:
        await store.close()


async def test_sqlite_writer_files_copies_once_enough_wait_or_after_a_quiet_moment(
        tmp_path: Path, event: EventFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing else queued the writer files the copies once `_FILE_AFTER` entries wait; fewer are filed
    after `_FILE_WHEN_QUIET` seconds without work."""
    monkeypatch.setattr(sqlite_store, "_FILE_WHEN_QUIET", 3600.0)
    path = tmp_path / "a.sqlite"
    store = await SqliteStore.open(path)
    try:
        events = [event(i) for i in range(sqlite_store._FILE_AFTER)]
        await store.append([PendingEntry.from_event(e) for e in events])
        await _eventually(lambda: _copies(path) == _expected_copies(events))
    finally:
        await store.close()
    monkeypatch.setattr(sqlite_store, "_FILE_WHEN_QUIET", 0.05)
    store = await SqliteStore.open(path)
    try:
        more = [*events, event(len(events))]
        await store.append([PendingEntry.from_event(more[-1])])
        await _eventually(lambda: _copies(path) == _expected_copies(more))
    finally:
        await store.close()


async def test_sqlite_copies_lost_with_the_process_are_rebuilt_from_the_entries(
        tmp_path: Path, event: EventFactory) -> None:
    """Entries committed by a process that stopped before filing their copies get them, equal to the originals,
    when the store is next opened; the log then verifies and searches find them."""
    path = tmp_path / "a.sqlite"
    signer = CheckpointSigner.generate("cp1")
    store = await SqliteStore.open(path)
    events = [event(i, details={"note": "é \u2028 \x07"}) for i in range(12)]
    log = await AuditLog.open(store, signer, FixedClock(), checkpoint_interval=None)
    await log.append(events)
    await log.checkpoint()
    await store.close()
    assert _copies(path) == _expected_copies(events)  # closing files them
    _unfile(path, 5)  # as if the process had died before filing the last seven
    store = await SqliteStore.open(path)
    try:
        assert _copies(path) == _expected_copies(events)
        assert (await verify_store(store, PublicKeys({"cp1": signer.public_key}))).ok
        assert len(await store.find(EntryFilter(user="user-1"), start=0, limit=100)) == 4
    finally:
        await store.close()


async def test_sqlite_copies_filed_by_another_handle_are_not_filed_twice(
        tmp_path: Path, event: EventFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second process (here a second handle) filing copies of entries the first still keeps does not make the
    first fail or file them again."""
    monkeypatch.setattr(sqlite_store, "_FILE_WHEN_QUIET", 3600.0)
    path = tmp_path / "a.sqlite"
    first, second = await SqliteStore.open(path), await SqliteStore.open(path)
    try:
        events = [event(i) for i in range(6)]
        await first.append([PendingEntry.from_event(e) for e in events[:4]])
        await second.update_copies()  # read back from the bytes
        await first.append([PendingEntry.from_event(e) for e in events[4:]])
        await first.update_copies()  # files 4 and 5, skips what the second filed
        assert _copies(path) == _expected_copies(events)
        assert await first.metadata_mismatches(0, 6) == {}
    finally:
        await first.close()
        await second.close()


def _at_migration(path: Path, version: int) -> sqlite3.Connection:
    """A new file with the SQLite migrations up to `version` applied and recorded, as an older gateway left it
    (use as a context manager: it commits on leaving)."""
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "applied_at TEXT NOT NULL)")
    for migration in load_migrations("sqlite")[:version]:
        conn.executescript(migration.sql)
        conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (?, ?, ?)",  # noqa: S608
                     (migration.version, migration.name, "2026-11-01T00:00:00.000000Z"))
    return conn


async def test_sqlite_store_of_the_earlier_layout_keeps_its_copies_when_migrated(
        tmp_path: Path, event: EventFactory) -> None:
    """A log written when the filter columns lived in audit_entries opens with every copy moved over unchanged,
    verifies, and is searchable."""
    path = tmp_path / "old.sqlite"
    events = [event(i) for i in range(7)]
    with _at_migration(path, 3) as conn:
        for i, e in enumerate(events):
            pending = PendingEntry.from_event(e)
            data, m = entry_bytes(i, pending.event_json), pending.meta
            conn.execute("INSERT INTO audit_entries VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         (i, leaf_hash(data), data, m.occurred_at, m.kind, m.agency, m.purpose, m.role, m.user,
                          m.case_reference, m.status))
            conn.executemany("INSERT INTO audit_subject_tokens VALUES (?,?)", [(t, i) for t in m.subject_tokens])
        # A copy the old layout already held wrong (changed after its entry was written) must stay wrong, so
        # that verification still sees it: the migration moves the copies, it does not rebuild them.
        conn.execute("UPDATE audit_entries SET user_id = 'tampered' WHERE idx = 2")
    store = await SqliteStore.open(path)
    try:
        rows, tokens = _copies(path)
        expected_rows, expected_tokens = _expected_copies(events)
        assert rows[2][6] == "tampered"
        assert (rows[:2] + rows[3:], tokens) == (expected_rows[:2] + expected_rows[3:], expected_tokens)
        assert [c[1] for c in _rows(path, "PRAGMA table_info(audit_entries)")] == ["idx", "leaf_hash", "data"]
        assert await store.metadata_mismatches(0, 7) == {2: ("user",)}
        assert await store.count(EntryFilter(case_reference="CASE-1")) == 2
    finally:
        await store.close()


def _forge(path: Path, index: int, data: object) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE audit_entries SET data = ? WHERE idx = ?", (data, index))


async def _closed_with(path: Path, events: list[AuditEvent]) -> None:
    store = await SqliteStore.open(path)
    await store.append([PendingEntry.from_event(e) for e in events])
    await store.close()


@pytest.mark.parametrize("forged", [
    entry_bytes(1, b'{"agency":"\\ud800","user":"x"}'),  # a lone surrogate: JSON allows it, SQL text does not
    1.5,  # not bytes at all
    10**15,  # a number that must not be taken for a length
    b"\xff\xfe",
    "text",  # replaced below by text that is not UTF-8
])
async def test_sqlite_copies_read_back_from_damaged_bytes_do_not_stop_the_store(
        tmp_path: Path, event: EventFactory, forged: object) -> None:
    """Rebuilding the copies of a damaged entry (a tamperer's, never the gateway's) files empty ones where the
    bytes cannot give them: the store still opens, searches and appends, and the entry is reported."""
    path = tmp_path / "a.sqlite"
    await _closed_with(path, [event(i) for i in range(3)])
    if forged == "text":
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE audit_entries SET data = CAST(x'ff7b' AS TEXT) WHERE idx = 1")
    else:
        _forge(path, 1, forged)
    _unfile(path, 1)  # as if they had never been filed
    store = await SqliteStore.open(path)
    try:
        assert _rows(path, "SELECT agency FROM audit_entry_meta WHERE idx = 1") == [("",)]
        assert await store.count(EntryFilter()) == 3
        await store.append([PendingEntry.from_event(event(3))])
        assert await store.count(EntryFilter(user=event(3).user)) >= 1
        mismatches = await store.metadata_mismatches(0, 4)
        if isinstance(forged, bytes) and forged.startswith(b"{"):  # JSON with an event: its copies differ
            assert set(mismatches) == {1}
            assert mismatches[1][:2] == ("occurred_at", "kind")
            assert "agency" in mismatches[1]
        else:  # no entry at all: left to the rest of verification, which names it
            assert mismatches == {}
            assert (await store.get_entry(1)) is not None
    finally:
        await store.close()


async def test_sqlite_copy_rows_past_the_end_of_the_log_neither_count_nor_stop_filing(
        tmp_path: Path, event: EventFactory) -> None:
    """A planted copy row at an index the log has not reached is not counted or listed, later entries are still
    filed and found, and once the log reaches that index the entry's own copy replaces it."""
    path = tmp_path / "a.sqlite"
    events = [event(i, agency="police") for i in range(3)]
    await _closed_with(path, events)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO audit_entry_meta VALUES (5, '2020-01-01T00:00:00.000000Z', 'disclosure', "
                     "'police', 'p', 'r', 'u', 'c', 's')")
    store = await SqliteStore.open(path)
    try:
        assert await store.count(EntryFilter(agency="police")) == 3
        more = [event(i, agency="police") for i in range(3, 7)]
        await store.append([PendingEntry.from_event(e) for e in more])
        assert await store.count(EntryFilter(agency="police")) == 7
        newest = await store.find(EntryFilter(agency="police"), start=0, limit=3, newest_first=True)
        assert [e.index for e in newest] == [6, 5, 4]
        assert _copies(path) == _expected_copies([*events, *more])
        assert await store.metadata_mismatches(0, 7) == {}
    finally:
        await store.close()


async def test_sqlite_entry_without_a_copy_row_is_reported_in_every_field(tmp_path: Path, event: EventFactory) -> None:
    """A copy row deleted from the middle of the log is reported, even for an entry whose event lacks the
    fields (a missing row must not compare equal to a missing field)."""
    path = tmp_path / "a.sqlite"
    await _closed_with(path, [event(i) for i in range(4)])
    _forge(path, 1, entry_bytes(1, b"{}"))
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM audit_entry_meta WHERE idx IN (1, 2)")
    store = await SqliteStore.open(path)
    try:
        mismatches = await store.metadata_mismatches(0, 4)
        assert set(mismatches) == {1, 2}
        assert mismatches[1][:len(META_FIELDS)] == META_FIELDS
        assert mismatches[2][:len(META_FIELDS)] == META_FIELDS
    finally:
        await store.close()


async def test_sqlite_writer_that_stops_unexpectedly_fails_every_later_call_instead_of_hanging(
        tmp_path: Path, event: EventFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the writer thread ever end on an error of its own, appends and searches are refused at once."""
    def broken(self: SqliteStore, conn: sqlite3.Connection, *, closing: bool = False) -> None:
        raise RuntimeError("a bug in the writer (test)")

    monkeypatch.setattr(SqliteStore, "_file_waiting", broken)
    monkeypatch.setattr(sqlite_store, "_FILE_WHEN_QUIET", 0.01)
    store = await SqliteStore.open(tmp_path / "a.sqlite")
    try:
        await store.append([PendingEntry.from_event(event(0))])  # durable; the filing after it kills the writer
        await _eventually(lambda: store._stopped)
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.count(EntryFilter()), 5)
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.append([PendingEntry.from_event(event(1))]), 5)
    finally:
        await store.close()


async def test_sqlite_filing_that_keeps_failing_backs_off_and_searches_say_so(
        tmp_path: Path, event: EventFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filing that fails is retried with growing waits (not every quarter second, each with a warning), a
    search meanwhile is StoreUnavailable rather than an incomplete answer, and filing resumes once it can."""
    def failing(conn: sqlite3.Connection, known: object = ()) -> int:
        raise sqlite3.OperationalError("disk I/O error (test)")

    path = tmp_path / "a.sqlite"
    monkeypatch.setattr(sqlite_store, "_FILE_WHEN_QUIET", 0.01)
    store = await SqliteStore.open(path)
    try:
        monkeypatch.setattr(sqlite_store, "file_copies", failing)
        with structlog.testing.capture_logs() as logs:
            await store.append([PendingEntry.from_event(event(0))])
            await asyncio.sleep(0.6)
        tries = [entry for entry in logs if entry["event"] == "audit_copies_not_filed"]
        assert 2 <= len(tries) <= 8  # every 0.01 s would be about 60
        assert [t["retry_in"] for t in tries] == sorted(t["retry_in"] for t in tries)
        with pytest.raises(StoreUnavailable, match="search copies"):
            await store.count(EntryFilter())
        monkeypatch.undo()
        assert await store.count(EntryFilter()) == 1
        assert _copies(path) == _expected_copies([event(0)])
    finally:
        await store.close()


async def test_sqlite_log_shorter_than_its_filing_mark_files_its_new_entries(
        tmp_path: Path, event: EventFactory) -> None:
    """If the newest entries are deleted (verification reports that against the checkpoints), entries appended
    afterwards at those indices are still filed and found."""
    path = tmp_path / "a.sqlite"
    await _closed_with(path, [event(i) for i in range(5)])
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM audit_entries WHERE idx >= 2")
    store = await SqliteStore.open(path)
    try:
        fresh = [event(10 + i, case_reference="CASE-NEW") for i in range(2)]
        await store.append([PendingEntry.from_event(e) for e in fresh])
        assert [e.index for e in await store.find(EntryFilter(case_reference="CASE-NEW"), start=0, limit=10)] == [2, 3]
        assert await store.metadata_mismatches(0, 4) == {}
    finally:
        await store.close()


async def test_sqlite_store_migrated_before_the_filing_mark_gets_one_that_covers_its_copies(
        tmp_path: Path, event: EventFactory) -> None:
    """A file at migration 4 (copies in their own table, no mark yet) gets a mark after its last copy row:
    its filed copies are kept, and the entries after them are filed."""
    path = tmp_path / "v4.sqlite"
    with _at_migration(path, 4) as conn:
        events = [event(i) for i in range(5)]
        for i, e in enumerate(events):
            pending = PendingEntry.from_event(e)
            data = entry_bytes(i, pending.event_json)
            conn.execute("INSERT INTO audit_entries VALUES (?,?,?)", (i, leaf_hash(data), data))
            if i < 3:  # the copies of the first three were filed
                m = pending.meta
                conn.execute("INSERT INTO audit_entry_meta VALUES (?,?,?,?,?,?,?,?,?)",
                             (i, m.occurred_at, m.kind, m.agency, m.purpose, m.role, m.user, m.case_reference,
                              m.status))
                conn.executemany("INSERT INTO audit_subject_tokens VALUES (?,?)", [(t, i) for t in m.subject_tokens])
    store = await SqliteStore.open(path)
    try:
        assert _rows(path, "SELECT upto FROM audit_copies_filed") == [(5,)]
        assert _copies(path) == _expected_copies(events)
        assert await store.metadata_mismatches(0, 5) == {}
    finally:
        await store.close()
