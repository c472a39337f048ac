"""The SQLite locator index: WAL, one connection, calls off the event loop; lookups use the primary key."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime

from gateway.locator.store import (
    SCHEMA_SQLITE,
    Change,
    KeyEnrolment,
    LocatorStoreError,
    Lookup,
    NodeEnrolment,
    iso,
)
from gateway.locked_sqlite import LockedConnection, open_connection

_CHUNK = 500  # host parameters per statement stay well under SQLite's limit


def _set_node(conn: sqlite3.Connection, node: str, key_id: str, delta: int, complete: bool | None,
              now: datetime) -> Change:
    row = conn.execute("SELECT tokens, complete FROM locator_nodes WHERE node = ? AND key_id = ?",
                       (node, key_id)).fetchone()
    total = (row[0] if row else 0) + delta
    done = bool(row[1]) if row and complete is None else bool(complete)
    conn.execute(
        "INSERT INTO locator_nodes (node, key_id, tokens, complete, updated_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (node, key_id) DO UPDATE SET tokens = excluded.tokens, complete = excluded.complete, "
        "updated_at = excluded.updated_at", (node, key_id, total, int(done), iso(now)))
    return Change(abs(delta), total, done)


class SqliteLocatorStore:
    """A `LocatorStore` in one SQLite file."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._db = LockedConnection(conn, LocatorStoreError, "locator index")

    @classmethod
    async def open(cls, url: str) -> SqliteLocatorStore:
        conn = await open_connection(url, SCHEMA_SQLITE, synchronous="NORMAL", error=LocatorStoreError,
                                     name="locator index")
        return cls(conn)

    async def enrol(self, node: str, key_id: str, tokens: Sequence[bytes], *, complete: bool | None,
                    now: datetime) -> Change:
        rows = [(bytes(t), key_id, node) for t in dict.fromkeys(tokens)]

        def work(conn: sqlite3.Connection) -> Change:
            conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO locator_tokens (token, key_id, node) VALUES (?, ?, ?)", rows)
            change = _set_node(conn, node, key_id, conn.total_changes - before, complete, now)
            conn.execute("COMMIT")
            return change

        return await self._db.run(work)

    async def withdraw(self, node: str, key_id: str, tokens: Sequence[bytes], *, everything: bool,
                       now: datetime) -> Change:
        rows = [(bytes(t), key_id, node) for t in dict.fromkeys(tokens)]

        def work(conn: sqlite3.Connection) -> Change:
            conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            if everything:
                conn.execute("DELETE FROM locator_tokens WHERE node = ? AND key_id = ?", (node, key_id))
                removed = conn.total_changes - before
                conn.execute("DELETE FROM locator_nodes WHERE node = ? AND key_id = ?", (node, key_id))
                conn.execute("COMMIT")
                return Change(removed, 0, False)
            conn.executemany("DELETE FROM locator_tokens WHERE token = ? AND key_id = ? AND node = ?", rows)
            change = _set_node(conn, node, key_id, -(conn.total_changes - before), None, now)
            conn.execute("COMMIT")
            return change

        return await self._db.run(work)

    async def lookup(self, key_id: str, tokens: Sequence[bytes]) -> Lookup:
        wanted = [bytes(t) for t in dict.fromkeys(tokens)]

        def work(conn: sqlite3.Connection) -> Lookup:
            matched: set[str] = set()
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i:i + _CHUNK]
                marks = ", ".join("?" for _ in chunk)
                matched.update(r[0] for r in conn.execute(
                    f"SELECT node FROM locator_tokens WHERE key_id = ? AND token IN ({marks})",  # noqa: S608
                    (key_id, *chunk)))
            complete = {r[0] for r in conn.execute(
                "SELECT node FROM locator_nodes WHERE key_id = ? AND complete = 1", (key_id,))}
            return Lookup(frozenset(matched), frozenset(complete))

        return await self._db.run(work)

    async def state(self, node: str) -> NodeEnrolment:
        rows = await self._db.run(lambda c: c.execute(
            "SELECT key_id, tokens, complete, updated_at FROM locator_nodes WHERE node = ? ORDER BY key_id",
            (node,)).fetchall())
        return NodeEnrolment(node, tuple(KeyEnrolment(r[0], r[1], bool(r[2]), r[3]) for r in rows))

    async def states(self) -> Mapping[str, NodeEnrolment]:
        rows = await self._db.run(lambda c: c.execute(
            "SELECT node, key_id, tokens, complete, updated_at FROM locator_nodes ORDER BY node, key_id").fetchall())
        out: dict[str, list[KeyEnrolment]] = {}
        for r in rows:
            out.setdefault(r[0], []).append(KeyEnrolment(r[1], r[2], bool(r[3]), r[4]))
        return {node: NodeEnrolment(node, tuple(keys)) for node, keys in out.items()}

    async def drop_key(self, key_id: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            removed = conn.execute("DELETE FROM locator_tokens WHERE key_id = ?", (key_id,)).rowcount
            conn.execute("DELETE FROM locator_nodes WHERE key_id = ?", (key_id,))
            conn.execute("COMMIT")
            return int(removed)

        return await self._db.run(work)

    async def close(self) -> None:
        await self._db.close()
