"""The SQLite review store: WAL, one connection, calls run off the event loop; other processes may share the file.

Creates are group-committed: those that arrive while a commit is under way wait for it and then go
together, in one transaction (one fsync), each under its own savepoint, so a create whose id exists fails
alone. A create returns only once its transaction is committed; a commit that fails fails every create
in it, and none of their reviews is stored.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import TypeVar

from gateway.locked_sqlite import LockedConnection, open_connection
from gateway.review.model import Review, ReviewStoreError
from gateway.review.store import COLUMNS, ORDER, PENDING, SCHEMA, SELECT, from_row, settle, to_row
from gateway.workflow.store import format_time

T = TypeVar("T")
_INSERT = f"INSERT INTO reviews ({SELECT}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608 (fixed text)


_Rows = list[tuple[str, str, str, str, str, str]]


class _Create:
    """A create waiting for the next group commit."""

    __slots__ = ("future", "rows")

    def __init__(self, rows: _Rows, future: asyncio.Future[None]) -> None:
        self.rows = rows
        self.future = future


def _insert_group(conn: sqlite3.Connection, *, group: Sequence[_Rows]) -> list[bool]:
    """Insert each create's rows under its own savepoint, then commit once; which creates were inserted."""
    inserted = []
    conn.execute("BEGIN IMMEDIATE")
    for rows in group:
        conn.execute("SAVEPOINT one_create")
        try:
            conn.executemany(_INSERT, rows)
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK TO one_create")
            inserted.append(False)
        else:
            inserted.append(True)
        conn.execute("RELEASE one_create")
    conn.execute("COMMIT")
    return inserted


class SqliteReviewStore:
    """A `ReviewStore` in one SQLite file."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._db = LockedConnection(conn, ReviewStoreError, "review store")
        self._waiting: list[_Create] = []
        self._committer: asyncio.Task[None] | None = None
        self.commits = 0  # group commits of creates so far (for tests and benchmarks)

    @classmethod
    async def open(cls, url: str) -> SqliteReviewStore:
        conn = await open_connection(url, SCHEMA, synchronous="FULL", error=ReviewStoreError, name="review store")
        return cls(conn)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(work)

    async def create(self, reviews: Sequence[Review]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Create([to_row(r) for r in reviews], future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_waiting())
        # Shielded: a caller that gives up does not take the commit (and the others' creates) with it.
        await asyncio.shield(future)

    async def _commit_waiting(self) -> None:
        """Commit the waiting creates, a group at a time, until none waits."""
        group: list[_Create] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    inserted = await self._run(partial(_insert_group, group=[w.rows for w in group]))
                except Exception as exc:  # the transaction was rolled back: no create in it is stored
                    for waiting in group:
                        _settle(waiting.future, ReviewStoreError(f"{exc}"), cause=exc)
                    continue
                self.commits += 1
                for waiting, ok in zip(group, inserted, strict=True):
                    _settle(waiting.future, None if ok else ReviewStoreError("a review with that id already exists"))
        finally:
            self._committer = None
            for waiting in (*group, *self._waiting):  # cancelled mid-commit: nobody is told it is stored
                _settle(waiting.future, ReviewStoreError("the review store stopped before the commit"))
            self._waiting = []

    async def get(self, review_id: str) -> Review | None:
        rows = await self._run(lambda c: c.execute(
            f"SELECT {SELECT} FROM reviews WHERE review_id = ?", (review_id,)).fetchall())  # noqa: S608
        return from_row(rows[0]) if rows else None

    async def pending(self, agency: str, *, limit: int) -> list[Review]:
        rows = await self._run(lambda c: c.execute(
            f"SELECT {SELECT} FROM reviews WHERE state = ? AND agency = ? {ORDER} LIMIT ?",  # noqa: S608
            (PENDING, agency, limit)).fetchall())
        return [from_row(r) for r in rows]

    async def due(self, now: datetime, *, limit: int) -> list[Review]:
        rows = await self._run(lambda c: c.execute(
            f"SELECT {SELECT} FROM reviews WHERE state = ? AND deadline <= ? {ORDER} LIMIT ?",  # noqa: S608
            (PENDING, format_time(now), limit)).fetchall())
        return [from_row(r) for r in rows]

    async def decide(self, decided: Review) -> Review:
        row = to_row(decided)

        def work(conn: sqlite3.Connection) -> tuple[int, tuple[str, ...] | None]:
            conn.execute("BEGIN IMMEDIATE")
            changed = conn.execute("UPDATE reviews SET state = ?, doc = ? WHERE review_id = ? AND state = ?",
                                   (row[2], row[5], decided.review_id, PENDING)).rowcount
            winner = None if changed else conn.execute(
                f"SELECT {SELECT} FROM reviews WHERE review_id = ?", (decided.review_id,)).fetchone()  # noqa: S608
            conn.execute("COMMIT")
            return changed, winner

        changed, winner = await self._run(work)
        return settle(decided, changed, winner)

    async def close(self) -> None:
        if self._committer is not None:  # the creates already waiting are committed (or failed) first
            await asyncio.shield(self._committer)
        await self._db.close()


def _settle(future: asyncio.Future[None], error: Exception | None, *, cause: BaseException | None = None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        error.__cause__ = cause
        future.set_exception(error)
