"""The PostgreSQL referral store (production): several gateway processes share it; versions stop lost updates."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from gateway.pg_schema import connect_prepared
from gateway.workflow.referral import Notification, Referral, Transition, VersionConflict
from gateway.workflow.schema import POSTGRES
from gateway.workflow.sealing import ContentSealer
from gateway.workflow.store import (
    COLUMNS,
    HISTORY_COLUMNS,
    OUTBOX_COLUMNS,
    SELECT_COLUMNS,
    TERMINAL_STATES,
    QueueFilter,
    QueuePage,
    ReferralNotFound,
    ReferralStoreError,
    format_time,
    history_row,
    notification_from_row,
    outbox_row,
    page_sql,
    queue_where,
    referral_from_row,
    referral_row,
    transition_from_row,
)

T = TypeVar("T")
_INSERT = f"INSERT INTO referrals ({SELECT_COLUMNS}) VALUES ({', '.join('%s' for _ in COLUMNS)})"  # noqa: S608
_UPDATE = ("UPDATE referrals SET " + ", ".join(f"{c} = %s" for c in COLUMNS[1:])  # noqa: S608 (fixed text)
           + " WHERE referral_id = %s AND version = %s")
_OUTBOX = ("INSERT INTO referral_outbox (recipient, kind, referral_id, team, worker, created_at, review_id) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s)")
_HISTORY = (f"INSERT INTO referral_history ({', '.join(HISTORY_COLUMNS)}) "  # noqa: S608 (fixed text)
            f"VALUES ({', '.join('%s' for _ in HISTORY_COLUMNS)})")
_OUTBOX_LOCK = int.from_bytes(hashlib.sha256(b"mash-referrals:outbox").digest()[:8], "big", signed=True)


async def _insert_notices(conn: psycopg.AsyncConnection[Any], notices: Sequence[tuple[Any, ...]]) -> None:
    if not notices:
        return
    # Sequence numbers must become visible in order, or a receiver reading "after N" could skip one
    # that commits late; serialising outbox writers makes commit order equal sequence order.
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_OUTBOX_LOCK,))
    async with conn.cursor() as cur:
        await cur.executemany(_OUTBOX.encode(), notices)


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresReferralStore:
    """A `ReferralStore` in PostgreSQL. One connection per process; calls on it are serialised.

    An update is ``UPDATE … WHERE version = <read version>``: when two processes race, PostgreSQL makes
    the second wait for the first's row lock, re-checks the version, and changes nothing, so the loser
    gets VersionConflict instead of overwriting the winner.
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any], sealer: ContentSealer) -> None:
        self._conn = conn
        self._sealer = sealer
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, sealer: ContentSealer) -> PostgresReferralStore:
        conn = await connect_prepared(url, lock_name="mash-referrals", what="referral store",
                                      schema=POSTGRES, error=ReferralStoreError)
        return cls(conn, sealer)

    async def _run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        async with self._lock:
            try:
                return await work(self._conn)
            except psycopg.Error as exc:
                raise ReferralStoreError(f"referral store failed ({type(exc).__name__})") from exc

    async def create(self, referral: Referral, history: Sequence[Transition],
                     notifications: Sequence[Notification] = ()) -> None:
        row, hist = referral_row(referral, self._sealer), [history_row(t) for t in history]
        notices = [outbox_row(n) for n in notifications]

        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            try:
                async with conn.transaction():
                    await conn.execute(_INSERT.encode(), row)
                    async with conn.cursor() as cur:
                        await cur.executemany(_HISTORY.encode(), hist)
                    await _insert_notices(conn, notices)
            except psycopg.errors.UniqueViolation:
                raise ReferralStoreError("a referral with that id already exists") from None

        await self._run(work)

    async def get(self, referral_id: str) -> Referral:
        async def work(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            cur = await conn.execute(
                f"SELECT {SELECT_COLUMNS} FROM referrals WHERE referral_id = %s".encode(),  # noqa: S608
                (referral_id,))
            return await cur.fetchall()

        rows = await self._run(work)
        if not rows:
            raise ReferralNotFound("no such referral")
        return referral_from_row(rows[0], self._sealer)

    async def update(self, referral: Referral, transition: Transition,
                     notifications: Sequence[Notification] = ()) -> None:
        row, hist = referral_row(referral, self._sealer), history_row(transition)
        notices = [outbox_row(n) for n in notifications]

        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.transaction():
                cur = await conn.execute(_UPDATE.encode(), (*row[1:], referral.referral_id, referral.version - 1))
                if cur.rowcount == 1:
                    await conn.execute(_HISTORY.encode(), hist)
                    await _insert_notices(conn, notices)
                    return
                found = await conn.execute("SELECT 1 FROM referrals WHERE referral_id = %s",
                                           (referral.referral_id,))
                exists = await found.fetchone()
            if exists is None:
                raise ReferralNotFound("no such referral")
            raise VersionConflict("the referral changed since it was read")

        await self._run(work)

    async def history(self, referral_id: str) -> list[Transition]:
        async def work(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            cur = await conn.execute(
                f"SELECT {', '.join(HISTORY_COLUMNS)} FROM referral_history "  # noqa: S608 (fixed text)
                "WHERE referral_id = %s ORDER BY version".encode(), (referral_id,))
            return await cur.fetchall()

        return [transition_from_row(r) for r in await self._run(work)]

    async def queue(self, where: QueueFilter, *, limit: int, offset: int = 0) -> QueuePage:
        clause, params = queue_where(where)

        async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[list[Any], int]:
            # REPEATABLE READ: the page and the total come from one snapshot.
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur = await conn.execute(_pg(page_sql(clause)).encode(), (*params, limit, offset))
                rows = await cur.fetchall()
                cur = await conn.execute(
                    _pg(f"SELECT count(*) FROM referrals WHERE {clause}").encode(), params)  # noqa: S608
                count = await cur.fetchone()
            return rows, int(count[0]) if count else 0

        rows, total = await self._run(work)
        return QueuePage(tuple(referral_from_row(r, self._sealer) for r in rows), total)

    async def purge(self, closed_before: datetime, *, dry_run: bool = False) -> list[str]:
        marks = ", ".join("%s" for _ in TERMINAL_STATES)

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[str]:
            if dry_run:
                cur = await conn.execute(
                    f"SELECT referral_id FROM referrals WHERE state IN ({marks}) AND closed_at < %s "  # noqa: S608
                    "ORDER BY referral_id".encode(), (*TERMINAL_STATES, format_time(closed_before)))
                return [r[0] for r in await cur.fetchall()]
            async with conn.transaction():
                cur = await conn.execute(
                    f"DELETE FROM referrals WHERE state IN ({marks}) AND closed_at < %s "  # noqa: S608
                    "RETURNING referral_id".encode(), (*TERMINAL_STATES, format_time(closed_before)))
                ids = sorted(r[0] for r in await cur.fetchall())
                await conn.execute("DELETE FROM referral_history WHERE referral_id = ANY(%s)", (ids,))
            return ids

        return await self._run(work)

    async def post(self, notifications: Sequence[Notification]) -> None:
        notices = [outbox_row(n) for n in notifications]

        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.transaction():
                await _insert_notices(conn, notices)

        if notices:
            await self._run(work)

    async def notifications(self, recipient: str, *, after: int, limit: int) -> list[Notification]:
        async def work(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            cur = await conn.execute(
                f"SELECT {', '.join(OUTBOX_COLUMNS)} FROM referral_outbox "  # noqa: S608 (fixed text)
                "WHERE recipient = %s AND seq > %s ORDER BY seq LIMIT %s".encode(), (recipient, after, limit))
            return await cur.fetchall()

        return [notification_from_row(r) for r in await self._run(work)]

    async def acknowledge(self, recipient: str, seq: int) -> int:
        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            cur = await conn.execute(
                "INSERT INTO referral_outbox_acks (recipient, acked_seq) VALUES (%s, %s) ON CONFLICT (recipient) "
                "DO UPDATE SET acked_seq = greatest(referral_outbox_acks.acked_seq, excluded.acked_seq) "
                "RETURNING acked_seq", (recipient, seq))
            row = await cur.fetchone()
            return int(row[0]) if row else seq

        return await self._run(work)

    async def acknowledged(self, recipient: str) -> int:
        async def work(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            cur = await conn.execute("SELECT acked_seq FROM referral_outbox_acks WHERE recipient = %s", (recipient,))
            return await cur.fetchall()

        rows = await self._run(work)
        return int(rows[0][0]) if rows else 0

    async def close(self) -> None:
        await self._conn.close()
