"""The locator index port: which node enrolled which token under which key, and each node's enrolment state.

A node is named by its routing key (today the agency name; with areas, `<area>/<agency>`): the index
stores it as text, so adding an area to a node's identity needs no change of format. Tokens are opaque
16-byte values; the index never holds an identifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from gateway.errors import GatewayError

SCHEMA_SQLITE = (
    "CREATE TABLE IF NOT EXISTS locator_tokens (token BLOB NOT NULL, key_id TEXT NOT NULL, node TEXT NOT NULL, "
    "PRIMARY KEY (token, key_id, node)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS locator_nodes (node TEXT NOT NULL, key_id TEXT NOT NULL, "
    "tokens INTEGER NOT NULL, complete INTEGER NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (node, key_id))",
)
SCHEMA_POSTGRES = (
    "CREATE TABLE IF NOT EXISTS locator_tokens (token BYTEA NOT NULL, key_id TEXT NOT NULL, node TEXT NOT NULL, "
    "PRIMARY KEY (token, key_id, node))",
    "CREATE TABLE IF NOT EXISTS locator_nodes (node TEXT NOT NULL, key_id TEXT NOT NULL, "
    "tokens BIGINT NOT NULL, complete BOOLEAN NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (node, key_id))",
)


class LocatorStoreError(GatewayError):
    """The locator index cannot be read or written."""


@dataclass(frozen=True, slots=True)
class KeyEnrolment:
    """A node's tokens under one key: how many, whether the node said they cover everyone it holds, and when."""

    key_id: str
    tokens: int
    complete: bool
    updated_at: str


@dataclass(frozen=True, slots=True)
class NodeEnrolment:
    node: str
    keys: tuple[KeyEnrolment, ...] = ()

    def under(self, key_id: str) -> KeyEnrolment | None:
        return next((k for k in self.keys if k.key_id == key_id), None)


@dataclass(frozen=True, slots=True)
class Change:
    """What one enrol or withdraw did: tokens added or removed, and the node's total under the key after it."""

    changed: int
    total: int
    complete: bool


@dataclass(frozen=True, slots=True)
class Lookup:
    """Which nodes hold any of the tokens, and which nodes have complete enrolment under the key."""

    matched: frozenset[str]
    complete: frozenset[str] = field(default_factory=frozenset)


class LocatorStore(Protocol):
    """Where the locator index lives; it survives restarts. Every method is idempotent per (node, key, token)."""

    async def enrol(self, node: str, key_id: str, tokens: Sequence[bytes], *, complete: bool | None,
                    now: datetime) -> Change:
        """Add the tokens not yet enrolled; `complete` True/False sets the node's completeness, None keeps it."""
        ...

    async def withdraw(self, node: str, key_id: str, tokens: Sequence[bytes], *, everything: bool,
                       now: datetime) -> Change:
        """Remove the given tokens (or, with `everything`, all of the node's tokens under the key and its
        completeness)."""
        ...

    async def lookup(self, key_id: str, tokens: Sequence[bytes]) -> Lookup:
        """The nodes holding any of `tokens` under `key_id`, and the nodes complete under `key_id`."""
        ...

    async def state(self, node: str) -> NodeEnrolment: ...

    async def states(self) -> Mapping[str, NodeEnrolment]: ...

    async def drop_key(self, key_id: str) -> int:
        """Remove every token and enrolment under a retired key; the number of tokens removed."""
        ...

    async def close(self) -> None: ...


async def open_locator_store(url: str) -> LocatorStore:
    """A store for ``sqlite:///path`` or ``postgresql://…`` (the same URLs as the audit store)."""
    if url.startswith("sqlite:"):
        from gateway.locator.sqlite_store import SqliteLocatorStore

        return await SqliteLocatorStore.open(url)
    if url.startswith(("postgresql:", "postgres:")):
        from gateway.locator.postgres_store import PostgresLocatorStore

        return await PostgresLocatorStore.open(url)
    raise LocatorStoreError("locator store URL must start with sqlite: or postgresql:")


def iso(now: datetime) -> str:
    return now.isoformat(timespec="microseconds")
