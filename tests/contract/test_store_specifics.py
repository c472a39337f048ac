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
from gateway.audit.store import EntryFilter, PendingEntry, StoreUnavailable, StoreUrlError
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
    with sqlite3.connect(path) as conn:  # as if the process had died before filing the last seven
        conn.execute("DELETE FROM audit_entry_meta WHERE idx >= 5")
        conn.execute("DELETE FROM audit_subject_tokens WHERE idx >= 5")
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


async def test_sqlite_store_of_the_earlier_layout_keeps_its_copies_when_migrated(
        tmp_path: Path, event: EventFactory) -> None:
    """A log written when the filter columns lived in audit_entries opens with every copy moved over unchanged,
    verifies, and is searchable."""
    path = tmp_path / "old.sqlite"
    events = [event(i) for i in range(7)]
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                     "applied_at TEXT NOT NULL)")
        for migration in load_migrations("sqlite")[:3]:
            conn.executescript(migration.sql)
            conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (?, ?, ?)",  # noqa: S608
                         (migration.version, migration.name, "2026-11-01T00:00:00.000000Z"))
        for i, e in enumerate(events):
            pending = PendingEntry.from_event(e)
            data, m = entry_bytes(i, pending.event_json), pending.meta
            conn.execute("INSERT INTO audit_entries VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         (i, leaf_hash(data), data, m.occurred_at, m.kind, m.agency, m.purpose, m.role, m.user,
                          m.case_reference, m.status))
            conn.executemany("INSERT INTO audit_subject_tokens VALUES (?,?)", [(t, i) for t in m.subject_tokens])
    store = await SqliteStore.open(path)
    try:
        assert _copies(path) == _expected_copies(events)
        assert [c[1] for c in _rows(path, "PRAGMA table_info(audit_entries)")] == ["idx", "leaf_hash", "data"]
        assert await store.metadata_mismatches(0, 7) == {}
        assert await store.count(EntryFilter(case_reference="CASE-1")) == 2
    finally:
        await store.close()
