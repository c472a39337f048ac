"""Behaviour particular to one store: URLs, durability settings, failures mid-run, several processes."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from store_backends import POSTGRES_URL, postgres_url

from gateway.audit.backends import open_store
from gateway.audit.checkpoint import CheckpointSigner, PublicKeys
from gateway.audit.log import AuditLog, CheckpointUnavailable
from gateway.audit.postgres_store import PostgresStore
from gateway.audit.sqlite_store import SqliteStore, path_from_url
from gateway.audit.store import PendingEntry, StoreUnavailable, StoreUrlError
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
