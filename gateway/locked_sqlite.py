"""One SQLite connection shared by worker threads: each call holds a lock, and closing waits for the call in use."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

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
