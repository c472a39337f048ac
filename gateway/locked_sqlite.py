"""One SQLite connection shared by worker threads: each call holds a lock, and closing waits for the call in use."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from gateway.audit.sqlite_store import path_from_url
from gateway.errors import GatewayError

T = TypeVar("T")


class LockedConnection:
    """Runs work on one connection off the event loop, one call at a time; SQLite errors become `error`."""

    def __init__(self, conn: sqlite3.Connection, error: Callable[[str], GatewayError], name: str) -> None:
        self._conn = conn
        self._error = error
        self._name = name
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                if self._closed:
                    raise self._error(f"the {self._name} is closed")
                try:
                    return work(self._conn)
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise

        try:
            return await asyncio.to_thread(locked)
        except sqlite3.Error as exc:
            raise self._error(f"{self._name} failed: {exc}") from exc

    async def close(self) -> None:
        # Under the lock: a call (a sweeper's, say) may still run in a worker thread after its task was
        # cancelled, and closing a connection another thread is using crashes the interpreter.
        def close() -> None:
            with self._lock:
                if not self._closed:
                    self._closed = True
                    self._conn.close()

        await asyncio.to_thread(close)


async def open_connection(
    url: str, schema: Sequence[str], *, synchronous: Literal["FULL", "NORMAL"],
    error: Callable[[str], GatewayError], name: str,
    migrate: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """A connection to the SQLite file `url` names (its folder made if need be), in WAL mode with the given
    `synchronous` level, with `schema` (then `migrate`) run in one immediate transaction, so two gateways
    starting together do not race to create the same tables. Failure raises `error` naming the store."""
    path = path_from_url(url)

    def connect() -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("BEGIN IMMEDIATE")
        for statement in schema:
            conn.execute(statement)
        if migrate is not None:
            migrate(conn)
        conn.execute("COMMIT")
        return conn

    try:
        return await asyncio.to_thread(connect)
    except sqlite3.Error as exc:
        raise error(f"cannot open the {name}: {exc}") from exc
