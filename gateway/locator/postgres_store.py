"""The PostgreSQL locator index: several gateway processes share it; lookups use the primary key."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg

from gateway.locator.store import (
    SCHEMA_POSTGRES,
    Change,
    KeyEnrolment,
    LocatorStoreError,
    Lookup,
    NodeEnrolment,
    iso,
)
from gateway.pg_schema import connect_prepared


async def _set_node(cur: psycopg.AsyncCursor[Any], node: str, key_id: str, delta: int, complete: bool | None,
                    now: datetime) -> Change:
    await cur.execute("SELECT tokens, complete FROM locator_nodes WHERE node = %s AND key_id = %s FOR UPDATE",
                      (node, key_id))
    row = await cur.fetchone()
    total = (int(row[0]) if row else 0) + delta
    done = bool(row[1]) if row and complete is None else bool(complete)
    await cur.execute(
        "INSERT INTO locator_nodes (node, key_id, tokens, complete, updated_at) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (node, key_id) DO UPDATE SET tokens = EXCLUDED.tokens, complete = EXCLUDED.complete, "
        "updated_at = EXCLUDED.updated_at", (node, key_id, total, done, iso(now)))
    return Change(abs(delta), total, done)


class PostgresLocatorStore:
    """A `LocatorStore` in PostgreSQL; one connection per process, calls on it serialised; a node's changes
    are serialised by a row lock on its enrolment row."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> PostgresLocatorStore:
        conn = await connect_prepared(url, lock_name="mash-locator", what="locator index",
                                      schema=SCHEMA_POSTGRES, error=LocatorStoreError)
        return cls(conn)

    async def _node_lock(self, cur: psycopg.AsyncCursor[Any], node: str, key_id: str, now: datetime) -> None:
        # Make sure the enrolment row exists, so concurrent changes of one node queue on its row lock.
        await cur.execute(
            "INSERT INTO locator_nodes (node, key_id, tokens, complete, updated_at) VALUES (%s, %s, 0, FALSE, %s) "
            "ON CONFLICT (node, key_id) DO NOTHING", (node, key_id, iso(now)))
        await cur.execute("SELECT 1 FROM locator_nodes WHERE node = %s AND key_id = %s FOR UPDATE", (node, key_id))

    async def enrol(self, node: str, key_id: str, tokens: Sequence[bytes], *, complete: bool | None,
                    now: datetime) -> Change:
        unique = [bytes(t) for t in dict.fromkeys(tokens)]
        async with self._lock:
            try:
                async with self._conn.transaction(), self._conn.cursor() as cur:
                    await self._node_lock(cur, node, key_id, now)
                    await cur.execute(
                        "INSERT INTO locator_tokens (token, key_id, node) SELECT t, %s, %s FROM unnest(%s::bytea[]) t "
                        "ON CONFLICT DO NOTHING", (key_id, node, unique))
                    return await _set_node(cur, node, key_id, max(cur.rowcount, 0), complete, now)
            except psycopg.Error as exc:
                raise LocatorStoreError("locator index failed") from exc

    async def withdraw(self, node: str, key_id: str, tokens: Sequence[bytes], *, everything: bool,
                       now: datetime) -> Change:
        unique = [bytes(t) for t in dict.fromkeys(tokens)]
        async with self._lock:
            try:
                async with self._conn.transaction(), self._conn.cursor() as cur:
                    await self._node_lock(cur, node, key_id, now)
                    if everything:
                        await cur.execute("DELETE FROM locator_tokens WHERE node = %s AND key_id = %s", (node, key_id))
                        removed = max(cur.rowcount, 0)
                        await cur.execute("DELETE FROM locator_nodes WHERE node = %s AND key_id = %s", (node, key_id))
                        return Change(removed, 0, False)
                    await cur.execute(
                        "DELETE FROM locator_tokens WHERE node = %s AND key_id = %s AND token = ANY(%s::bytea[])",
                        (node, key_id, unique))
                    return await _set_node(cur, node, key_id, -max(cur.rowcount, 0), None, now)
            except psycopg.Error as exc:
                raise LocatorStoreError("locator index failed") from exc

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with self._lock:
            try:
                cur = await self._conn.execute(sql.encode(), params)
                return await cur.fetchall()
            except psycopg.Error as exc:
                raise LocatorStoreError("locator index failed") from exc

    async def lookup(self, key_id: str, tokens: Sequence[bytes]) -> Lookup:
        wanted = [bytes(t) for t in dict.fromkeys(tokens)]
        # One round trip: the matching nodes (flag TRUE) and the complete nodes (flag FALSE).
        rows = await self._fetch(
            "SELECT node, TRUE FROM locator_tokens WHERE key_id = %s AND token = ANY(%s::bytea[]) "
            "UNION ALL SELECT node, FALSE FROM locator_nodes WHERE key_id = %s AND complete",
            (key_id, wanted, key_id))
        return Lookup(frozenset(r[0] for r in rows if r[1]), frozenset(r[0] for r in rows if not r[1]))

    async def state(self, node: str) -> NodeEnrolment:
        rows = await self._fetch(
            "SELECT key_id, tokens, complete, updated_at FROM locator_nodes WHERE node = %s ORDER BY key_id", (node,))
        return NodeEnrolment(node, tuple(KeyEnrolment(r[0], int(r[1]), bool(r[2]), r[3]) for r in rows))

    async def states(self) -> Mapping[str, NodeEnrolment]:
        rows = await self._fetch(
            "SELECT node, key_id, tokens, complete, updated_at FROM locator_nodes ORDER BY node, key_id", ())
        out: dict[str, list[KeyEnrolment]] = {}
        for r in rows:
            out.setdefault(r[0], []).append(KeyEnrolment(r[1], int(r[2]), bool(r[3]), r[4]))
        return {node: NodeEnrolment(node, tuple(keys)) for node, keys in out.items()}

    async def drop_key(self, key_id: str) -> int:
        async with self._lock:
            try:
                async with self._conn.transaction(), self._conn.cursor() as cur:
                    await cur.execute("DELETE FROM locator_tokens WHERE key_id = %s", (key_id,))
                    removed = max(cur.rowcount, 0)
                    await cur.execute("DELETE FROM locator_nodes WHERE key_id = %s", (key_id,))
                    return removed
            except psycopg.Error as exc:
                raise LocatorStoreError("locator index failed") from exc

    async def close(self) -> None:
        await self._conn.close()
