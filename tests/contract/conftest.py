"""One parametrised `backend` fixture so every store conformance test runs on SQLite, PostgreSQL and memory.

PostgreSQL tests run against the server at 127.0.0.1:5432 (database `test`) in a fresh, uniquely named
schema that is dropped afterwards. If the server is unreachable they fail, naming the problem: CI starts it.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.audit.memory_store import MemoryStore
from gateway.audit.store import DisclosureStore, open_store
from gateway.domain import AuditEvent, AuditKind

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Backend:
    """A store under test: how to open (another handle on) it and, for SQL stores, run raw SQL on it."""

    name: str
    url: str
    sql: Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]] | None
    opened: list[DisclosureStore] = field(default_factory=list)
    shared: MemoryStore | None = None

    async def open(self) -> DisclosureStore:
        store: DisclosureStore = self.shared if self.shared is not None else await open_store(self.url)
        self.opened.append(store)
        return store


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


def postgres_url(schema: str) -> str:
    """A connection URL whose search_path is `schema`, and whose sessions are named after it."""
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}&application_name={schema}"


def _sqlite_sql(path: Path) -> Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    def run(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(path) as conn:
            return conn.execute(sql, params).fetchall()
    return run


def _postgres_sql(url: str) -> Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    def run(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s").encode(), params)
            return cur.fetchall() if cur.description else []
    return run


def _make_backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if kind == "sqlite":
        path = tmp_path / "audit.sqlite"
        return Backend("sqlite", f"sqlite:///{path}", _sqlite_sql(path))
    if kind == "postgres":
        url = postgres_url(request.getfixturevalue("postgres_schema"))
        return Backend("postgres", url, _postgres_sql(url))
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


def make_event(n: int, **overrides: Any) -> AuditEvent:
    """A disclosure event numbered `n`; keyword arguments replace any field."""
    base: dict[str, Any] = {
        "kind": AuditKind.DISCLOSURE,
        "occurred_at": datetime(2026, 11, 26, 9, 0, tzinfo=UTC) + timedelta(seconds=n),
        "request_id": f"req-{n}", "user": f"user-{n % 3}", "role": "social_worker",
        "purpose": "s47_enquiry", "legal_basis": "children_act_1989_s47", "agreement": "mash-isa-2026",
        "case_reference": f"CASE-{n % 4}", "subject_tokens": (f"nhs:k1:{n % 5:064x}", f"ndob:k1:{n:064x}"),
        "sealed_identifiers": "k1:AAAA", "agency": ("police", "health", "csc")[n % 3], "status": "MATCH",
        "level": "PERTINENT", "categories": ("police.domestic_abuse",), "policy_version": "pv-1",
    }
    base.update(overrides)
    return AuditEvent(**base)


@pytest.fixture
def event() -> Callable[..., AuditEvent]:
    """The `make_event` factory."""
    return make_event
