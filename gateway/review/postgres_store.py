"""The PostgreSQL review store: several gateway processes share it; a decision is a conditional UPDATE."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from gateway.pg_schema import connect_prepared
from gateway.review.model import Review, ReviewStoreError
from gateway.review.store import COLUMNS, ORDER, PENDING, SCHEMA, SELECT, from_row, settle, to_row
from gateway.workflow.store import format_time

_INSERT = f"INSERT INTO reviews ({SELECT}) VALUES ({', '.join('%s' for _ in COLUMNS)})"  # noqa: S608 (fixed text)


class PostgresReviewStore:
    """A `ReviewStore` in PostgreSQL; one connection per process, calls on it serialised.

    ``UPDATE … WHERE state = 'PENDING_REVIEW'``: of two processes deciding at once, PostgreSQL makes the
    second wait for the first's row lock, re-checks the state and changes nothing.
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> PostgresReviewStore:
        conn = await connect_prepared(url, lock_name="mash-reviews", what="review store",
                                      schema=SCHEMA, error=ReviewStoreError)
        return cls(conn)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with self._lock:
            try:
                cur = await self._conn.execute(sql.encode(), params)
                return await cur.fetchall()
            except psycopg.Error as exc:
                raise ReviewStoreError("review store failed") from exc

    async def create(self, reviews: Sequence[Review]) -> None:
        rows = [to_row(r) for r in reviews]
        async with self._lock:
            try:
                async with self._conn.transaction(), self._conn.cursor() as cur:
                    await cur.executemany(_INSERT.encode(), rows)
            except psycopg.IntegrityError:
                raise ReviewStoreError("a review with that id already exists") from None
            except psycopg.Error as exc:
                raise ReviewStoreError("review store failed") from exc

    async def get(self, review_id: str) -> Review | None:
        rows = await self._fetch(f"SELECT {SELECT} FROM reviews WHERE review_id = %s", (review_id,))  # noqa: S608
        return from_row(rows[0]) if rows else None

    async def pending(self, agency: str, *, limit: int) -> list[Review]:
        rows = await self._fetch(
            f"SELECT {SELECT} FROM reviews WHERE state = %s AND agency = %s {ORDER} LIMIT %s",  # noqa: S608
            (PENDING, agency, limit))
        return [from_row(r) for r in rows]

    async def due(self, now: datetime, *, limit: int) -> list[Review]:
        rows = await self._fetch(
            f"SELECT {SELECT} FROM reviews WHERE state = %s AND deadline <= %s {ORDER} LIMIT %s",  # noqa: S608
            (PENDING, format_time(now), limit))
        return [from_row(r) for r in rows]

    async def decide(self, decided: Review) -> Review:
        row = to_row(decided)
        async with self._lock:
            try:
                async with self._conn.transaction():
                    cur = await self._conn.execute(
                        b"UPDATE reviews SET state = %s, doc = %s WHERE review_id = %s AND state = %s",
                        (row[2], row[5], decided.review_id, PENDING))
                    changed = cur.rowcount
                    winner = None
                    if not changed:
                        cur = await self._conn.execute(
                            f"SELECT {SELECT} FROM reviews WHERE review_id = %s".encode(),  # noqa: S608
                            (decided.review_id,))
                        winner = await cur.fetchone()
            except psycopg.Error as exc:
                raise ReviewStoreError("review store failed") from exc
        return settle(decided, changed, winner)

    async def close(self) -> None:
        await self._conn.close()
