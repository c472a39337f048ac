"""Store backends for the conformance suite: handles on SQLite, PostgreSQL and memory, and an event factory."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from gateway.audit.backends import open_store
from gateway.audit.memory_store import MemoryStore
from gateway.audit.sqlite_store import SqliteStore
from gateway.audit.store import DisclosureStore
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
    copies: str = "audit_entries"  # the table holding the filter columns
    migrations: tuple[str, ...] = ("initial", "subject_token_index", "cosignatures")

    async def open(self) -> DisclosureStore:
        store: DisclosureStore = self.shared if self.shared is not None else await open_store(self.url)
        self.opened.append(store)
        return store

    async def file_copies(self) -> None:
        """Have every open handle file its entries' search copies now, so raw SQL finds their rows (SQLite files
        them after the entries' commit; the other stores write them with the entries)."""
        for store in self.opened:
            if isinstance(store, SqliteStore):
                await store.update_copies()


def postgres_url(schema: str) -> str:
    """A connection URL whose search_path is `schema`, and whose sessions are named after it."""
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}&application_name={schema}"


def sqlite_sql(path: Path) -> Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    def run(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(path) as conn:
            return conn.execute(sql, params).fetchall()
    return run


def postgres_sql(url: str) -> Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    def run(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s").encode(), params)
            return cur.fetchall() if cur.description else []
    return run


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
