"""One parametrised `backend` fixture so every store conformance test runs on SQLite, PostgreSQL and memory.

PostgreSQL tests run against the server at 127.0.0.1:5432 (database `test`) in a fresh, uniquely named
schema that is dropped afterwards. If the server is unreachable they fail, naming the problem: CI starts it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from store_backends import (
    POSTGRES_URL,
    Backend,
    make_event,
    postgres_sql,
    postgres_url,
    sqlite_sql,
)

from gateway.audit.memory_store import MemoryStore
from gateway.domain import AuditEvent


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A fresh schema in the test database, dropped after the test; fails clearly if PostgreSQL is down."""
    schema = f"audit_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc}); the postgres-marked audit "
                    "store tests need it (CI starts it; locally start PostgreSQL or deselect -m 'not postgres')")
    try:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        yield schema
    finally:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()


def _make_backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if kind == "sqlite":
        path = tmp_path / "audit.sqlite"
        return Backend("sqlite", f"sqlite:///{path}", sqlite_sql(path), copies="audit_entry_meta",
                       migrations=("initial", "subject_token_index", "cosignatures", "entry_meta",
                                   "copies_filed_mark"))
    if kind == "postgres":
        url = postgres_url(request.getfixturevalue("postgres_schema"))
        return Backend("postgres", url, postgres_sql(url))
    return Backend("memory", "memory:", None, shared=MemoryStore())


@pytest.fixture(params=[
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("memory"),
])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each store kind in turn; every handle the test opened is closed afterwards."""
    chosen = _make_backend(request.param, request, tmp_path)
    yield chosen
    for store in chosen.opened:
        await store.close()


@pytest.fixture(params=[
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
])
async def sql_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The SQL stores only, for tests that tamper with raw SQL (the in-memory store has no SQL)."""
    chosen = _make_backend(request.param, request, tmp_path)
    yield chosen
    for store in chosen.opened:
        await store.close()


@pytest.fixture
def event() -> Callable[..., AuditEvent]:
    """The `make_event` factory."""
    return make_event
