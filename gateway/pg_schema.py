"""Opening a PostgreSQL store's connection with its tables in place, for the stores that keep one connection."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import psycopg


async def connect_prepared(
    url: str, *, lock_name: str, what: str, schema: Sequence[str], error: type[Exception]
) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection to `url` on which `schema`'s statements have run.

    Gateways starting together must not race to create the same tables: the statements run in one transaction
    under an advisory lock derived from `lock_name` (e.g. "mash-reviews"). A failure raises `error` naming the
    step that failed and `what` was being opened (e.g. "review store"), never the URL.
    """
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise error(f"cannot connect to the PostgreSQL {what}") from exc
    lock = int.from_bytes(hashlib.sha256(f"{lock_name}:schema".encode()).digest()[:8], "big", signed=True)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            for statement in schema:
                await conn.execute(statement.encode())
    except psycopg.Error as exc:
        await conn.close()
        raise error(f"cannot prepare the PostgreSQL {what}") from exc
    return conn
