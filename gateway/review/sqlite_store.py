"""The SQLite review store: WAL, one connection, calls run off the event loop; other processes may share the file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from gateway.audit.sqlite_store import path_from_url
from gateway.locked_sqlite import LockedConnection
from gateway.review.model import Review, ReviewStoreError
from gateway.review.store import COLUMNS, ORDER, PENDING, SCHEMA, SELECT, from_row, settle, to_row
from gateway.workflow.store import format_time

T = TypeVar("T")
_INSERT = f"INSERT INTO reviews ({SELECT}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608 (fixed text)


class SqliteReviewStore:
    """A `ReviewStore` in one SQLite file."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._db = LockedConnection(conn, ReviewStoreError, "review store")

    @classmethod
    async def open(cls, url: str) -> SqliteReviewStore:
        path = path_from_url(url)

        def connect() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            for statement in SCHEMA:
                conn.execute(statement)
            return conn

        try:
            return cls(await asyncio.to_thread(connect))
        except sqlite3.Error as exc:
            raise ReviewStoreError(f"cannot open the review store: {exc}") from exc

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(work)

    async def create(self, reviews: Sequence[Review]) -> None:
        rows = [to_row(r) for r in reviews]

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
            except sqlite3.IntegrityError:
                raise ReviewStoreError("a review with that id already exists") from None
            conn.execute("COMMIT")

        await self._run(work)

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
        await self._db.close()
