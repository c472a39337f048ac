"""The SQLite review store: WAL, one connection, calls run off the event loop; other processes may share the file.

Creates are group-committed: those that arrive while a commit is under way wait for it and then go
together, in one transaction (one fsync), each under its own savepoint, so a create whose id exists fails
alone. A create returns only once its transaction is committed; a commit that fails fails every create
in it, and none of their reviews is stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from gateway.locked_sqlite import GroupCommit, LockedConnection, open_connection
from gateway.review.model import Review, ReviewStoreError
from gateway.review.store import COLUMNS, ORDER, PENDING, SCHEMA, SELECT, from_row, settle, to_row
from gateway.workflow.store import format_time

T = TypeVar("T")
_INSERT = f"INSERT INTO reviews ({SELECT}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608 (fixed text)


_Rows = list[tuple[str, str, str, str, str, str]]


def _insert_group(conn: sqlite3.Connection, group: list[_Rows]) -> list[ReviewStoreError | None]:
    """Insert each create's rows under its own savepoint, then commit once; per create, None if inserted."""
    inserted: list[ReviewStoreError | None] = []
    conn.execute("BEGIN IMMEDIATE")
    for rows in group:
        conn.execute("SAVEPOINT one_create")
        try:
            conn.executemany(_INSERT, rows)
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK TO one_create")
            inserted.append(ReviewStoreError("a review with that id already exists"))
        else:
            inserted.append(None)
        conn.execute("RELEASE one_create")
    conn.execute("COMMIT")
    return inserted


class SqliteReviewStore:
    """A `ReviewStore` in one SQLite file."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._db = LockedConnection(conn, ReviewStoreError, "review store")
        self._creates: GroupCommit[_Rows, None] = GroupCommit(self._db, _insert_group)

    @property
    def commits(self) -> int:
        """Group commits of creates so far (for tests and benchmarks)."""
        return self._creates.commits

    @classmethod
    async def open(cls, url: str) -> SqliteReviewStore:
        conn = await open_connection(url, SCHEMA, synchronous="FULL", error=ReviewStoreError, name="review store")
        return cls(conn)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(work)

    async def create(self, reviews: Sequence[Review]) -> None:
        await self._creates.submit([to_row(r) for r in reviews])

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
        await self._creates.close()  # the creates already waiting are committed (or failed) first
        await self._db.close()

