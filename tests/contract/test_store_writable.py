"""`check_writable`, the probe that tells a recovered audit store from one that only answers reads."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from store_backends import Backend

from gateway.audit.sqlite_store import SqliteStore
from gateway.audit.store import PendingEntry, StoreUnavailable
from gateway.domain import AuditEvent

EventFactory = Callable[..., AuditEvent]


async def test_a_writable_store_passes_the_probe_and_keeps_nothing_from_it(
    backend: Backend, event: EventFactory
) -> None:
    """The probe succeeds on a healthy store, and the log afterwards holds exactly what was appended."""
    store = await backend.open()
    await store.append([PendingEntry.from_event(event(0))])
    await store.check_writable()
    assert await store.size() == 1
    assert [row.index for row in await store.scan(-5, 10)] == [0]
    (receipt,) = await store.append([PendingEntry.from_event(event(1))])
    assert receipt.index == 1


async def test_a_closed_store_fails_the_probe_as_unavailable(backend: Backend) -> None:
    """A store that cannot take entries fails the probe with StoreUnavailable, like an append."""
    store = await backend.open()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.check_writable()


async def test_a_sqlite_store_at_its_page_limit_fails_the_probe_though_reads_still_work(
    tmp_path: Path, event: EventFactory
) -> None:
    """A full SQLite file (page limit reached) fails the probe while size and scans still answer."""
    store = await SqliteStore.open(tmp_path / "audit.sqlite")
    try:
        await store.append([PendingEntry.from_event(event(0))])

        def full(conn: sqlite3.Connection) -> None:
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages}")

        await store._write(full)  # a writer-connection limit: a full disk
        with pytest.raises(StoreUnavailable):
            await store.check_writable()
        assert await store.size() == 1
    finally:
        await store.close()
