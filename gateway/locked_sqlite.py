"""One SQLite connection shared by worker threads: each call holds a lock, and closing waits for the call in use;
and group commits over it, so writes that arrive while a commit is under way share the next transaction."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Generic, Literal, TypeVar

from gateway.audit.sqlite_store import path_from_url
from gateway.errors import GatewayError

T = TypeVar("T")
W = TypeVar("W")
R = TypeVar("R")


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

    @property
    def error(self) -> Callable[[str], GatewayError]:
        """The store's error type, as given."""
        return self._error

    @property
    def name(self) -> str:
        return self._name

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


class GroupCommit(Generic[W, R]):
    """Writes that arrive while a commit is under way wait for it, then go together: `commit(conn, items)` runs
    them in one transaction (one fsync) and returns, per item, its result or the exception it alone fails with.

    `submit` returns (or raises) only once its transaction is committed; a commit that fails fails every item
    in it, and none of them is stored. A caller that gives up does not take the commit, or the others' items,
    with it.
    """

    def __init__(self, db: LockedConnection,
                 commit: Callable[[sqlite3.Connection, list[W]], Sequence[R | Exception]]) -> None:
        self._db = db
        self._commit = commit
        self._waiting: list[tuple[W, asyncio.Future[R]]] = []
        self._committer: asyncio.Task[None] | None = None
        self.commits = 0  # transactions committed so far (for tests and benchmarks)

    async def submit(self, item: W) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_waiting())
        return await asyncio.shield(future)

    async def _commit_waiting(self) -> None:
        group: list[tuple[W, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    results = await self._db.run(partial(self._commit_items, [item for item, _ in group]))
                except Exception as exc:  # the transaction was rolled back: no item in it is stored
                    for _, future in group:
                        _settle(future, self._db.error(f"{exc}"), cause=exc)
                    continue
                self.commits += 1
                for (_, future), result in zip(group, results, strict=True):
                    _settle(future, result)
        finally:
            self._committer = None
            for _, future in (*group, *self._waiting):  # cancelled mid-commit: nobody is told it is stored
                _settle(future, self._db.error(f"the {self._db.name} stopped before the commit"))
            self._waiting = []

    def _commit_items(self, items: list[W], conn: sqlite3.Connection) -> Sequence[R | Exception]:
        return self._commit(conn, items)

    async def close(self) -> None:
        """Wait for the items already waiting to be committed (or fail)."""
        if self._committer is not None:
            await asyncio.shield(self._committer)


def _settle(future: asyncio.Future[R], result: R | Exception, *, cause: BaseException | None = None) -> None:
    if future.done():
        return
    if isinstance(result, Exception):
        if cause is not None:
            result.__cause__ = cause
        future.set_exception(result)
    else:
        future.set_result(result)
