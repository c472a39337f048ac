"""The SQLite referral store (the default and the demo's): WAL, one connection, calls run off the event loop.

Notices posted on their own (reviewers' notices, one per query that opens a review) are group-committed: posts
that arrive while a commit is under way share the next transaction, each returning only once it is committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from gateway.locked_sqlite import GroupCommit, LockedConnection, open_connection
from gateway.workflow.referral import Notification, Referral, Transition, VersionConflict
from gateway.workflow.schema import OUTBOX_REVIEW_COLUMN, SQLITE
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
_INSERT = f"INSERT INTO referrals ({SELECT_COLUMNS}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608
_UPDATE = ("UPDATE referrals SET " + ", ".join(f"{c} = ?" for c in COLUMNS[1:])  # noqa: S608 (fixed text)
           + " WHERE referral_id = ? AND version = ?")
_OUTBOX = ("INSERT INTO referral_outbox (recipient, kind, referral_id, team, worker, created_at, review_id) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)")
_HISTORY = (f"INSERT INTO referral_history ({', '.join(HISTORY_COLUMNS)}) "  # noqa: S608 (fixed text)
            f"VALUES ({', '.join('?' for _ in HISTORY_COLUMNS)})")



def _add_outbox_review_column(conn: sqlite3.Connection) -> None:
    """An outbox made before review notices gains their column."""
    if "review_id" not in {row[1] for row in conn.execute("PRAGMA table_info(referral_outbox)")}:
        conn.execute(OUTBOX_REVIEW_COLUMN)

class SqliteReferralStore:
    """A `ReferralStore` in one SQLite file; other processes may share the file (writes take the write lock)."""

    def __init__(self, conn: sqlite3.Connection, sealer: ContentSealer) -> None:
        self._sealer = sealer
        self._db = LockedConnection(conn, ReferralStoreError, "referral store")
        self._posts: GroupCommit[list[tuple[Any, ...]], None] = GroupCommit(self._db, _post_group)

    @property
    def post_commits(self) -> int:
        """Transactions that committed posted notices so far (for tests and benchmarks)."""
        return self._posts.commits

    @classmethod
    async def open(cls, url: str, sealer: ContentSealer) -> SqliteReferralStore:
        conn = await open_connection(url, SQLITE, synchronous="FULL", error=ReferralStoreError,
                                     name="referral store", migrate=_add_outbox_review_column)
        return cls(conn, sealer)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(work)

    async def create(self, referral: Referral, history: Sequence[Transition],
                     notifications: Sequence[Notification] = ()) -> None:
        row, hist = referral_row(referral, self._sealer), [history_row(t) for t in history]
        notices = [outbox_row(n) for n in notifications]

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(_INSERT, row)
            except sqlite3.IntegrityError:
                raise ReferralStoreError("a referral with that id already exists") from None
            conn.executemany(_HISTORY, hist)
            conn.executemany(_OUTBOX, notices)
            conn.execute("COMMIT")

        await self._run(work)

    async def get(self, referral_id: str) -> Referral:
        rows = await self._run(lambda conn: conn.execute(
            f"SELECT {SELECT_COLUMNS} FROM referrals WHERE referral_id = ?", (referral_id,)).fetchall())  # noqa: S608
        if not rows:
            raise ReferralNotFound("no such referral")
        return referral_from_row(rows[0], self._sealer)

    async def update(self, referral: Referral, transition: Transition,
                     notifications: Sequence[Notification] = ()) -> None:
        row, hist = referral_row(referral, self._sealer), history_row(transition)
        notices = [outbox_row(n) for n in notifications]

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            changed = conn.execute(_UPDATE, (*row[1:], referral.referral_id, referral.version - 1)).rowcount
            if changed != 1:
                exists = conn.execute("SELECT 1 FROM referrals WHERE referral_id = ?",
                                      (referral.referral_id,)).fetchone()
                conn.execute("ROLLBACK")
                if exists is None:
                    raise ReferralNotFound("no such referral")
                raise VersionConflict("the referral changed since it was read")
            conn.execute(_HISTORY, hist)
            conn.executemany(_OUTBOX, notices)
            conn.execute("COMMIT")

        await self._run(work)

    async def history(self, referral_id: str) -> list[Transition]:
        rows = await self._run(lambda conn: conn.execute(
            f"SELECT {', '.join(HISTORY_COLUMNS)} FROM referral_history "  # noqa: S608 (fixed text)
            "WHERE referral_id = ? ORDER BY version", (referral_id,)).fetchall())
        return [transition_from_row(r) for r in rows]

    async def queue(self, where: QueueFilter, *, limit: int, offset: int = 0) -> QueuePage:
        clause, params = queue_where(where)

        def work(conn: sqlite3.Connection) -> tuple[list[Any], int]:
            conn.execute("BEGIN")  # one snapshot for the page and the total
            rows = conn.execute(page_sql(clause), (*params, limit, offset)).fetchall()
            (total,) = conn.execute(f"SELECT count(*) FROM referrals WHERE {clause}", params).fetchone()  # noqa: S608
            conn.execute("COMMIT")
            return rows, int(total)

        rows, total = await self._run(work)
        return QueuePage(tuple(referral_from_row(r, self._sealer) for r in rows), total)

    async def purge(self, closed_before: datetime, *, dry_run: bool = False) -> list[str]:
        marks = ", ".join("?" for _ in TERMINAL_STATES)
        params = (*TERMINAL_STATES, format_time(closed_before))

        def work(conn: sqlite3.Connection) -> list[str]:
            conn.execute("BEGIN IMMEDIATE")
            ids = [r[0] for r in conn.execute(
                f"SELECT referral_id FROM referrals WHERE state IN ({marks}) AND closed_at < ? "  # noqa: S608
                "ORDER BY referral_id", params)]
            if dry_run:
                conn.execute("ROLLBACK")
                return ids
            for referral_id in ids:
                conn.execute("DELETE FROM referral_history WHERE referral_id = ?", (referral_id,))
                conn.execute("DELETE FROM referrals WHERE referral_id = ?", (referral_id,))
            conn.execute("COMMIT")
            return ids

        return await self._run(work)

    async def post(self, notifications: Sequence[Notification]) -> None:
        if notifications:
            await self._posts.submit([outbox_row(n) for n in notifications])

    async def notifications(self, recipient: str, *, after: int, limit: int) -> list[Notification]:
        rows = await self._run(lambda conn: conn.execute(
            f"SELECT {', '.join(OUTBOX_COLUMNS)} FROM referral_outbox "  # noqa: S608 (fixed text)
            "WHERE recipient = ? AND seq > ? ORDER BY seq LIMIT ?", (recipient, after, limit)).fetchall())
        return [notification_from_row(r) for r in rows]

    async def acknowledge(self, recipient: str, seq: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO referral_outbox_acks (recipient, acked_seq) VALUES (?, ?) "
                         "ON CONFLICT (recipient) DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq)",
                         (recipient, seq))
            (acked,) = conn.execute("SELECT acked_seq FROM referral_outbox_acks WHERE recipient = ?",
                                    (recipient,)).fetchone()
            conn.execute("COMMIT")
            return int(acked)

        return await self._run(work)

    async def acknowledged(self, recipient: str) -> int:
        rows = await self._run(lambda conn: conn.execute(
            "SELECT acked_seq FROM referral_outbox_acks WHERE recipient = ?", (recipient,)).fetchall())
        return int(rows[0][0]) if rows else 0

    async def close(self) -> None:
        await self._posts.close()  # the posts already waiting are committed (or failed) first
        await self._db.close()


def _post_group(conn: sqlite3.Connection, group: list[list[tuple[Any, ...]]]) -> list[None]:
    """Every waiting post's notices, in the order posted, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(_OUTBOX, [row for rows in group for row in rows])
    conn.execute("COMMIT")
    return [None] * len(group)
