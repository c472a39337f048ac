"""Choosing and opening a `DisclosureStore` backend from an audit store URL."""

from __future__ import annotations

from gateway.audit.store import DisclosureStore, StoreUrlError


async def open_store(url: str) -> DisclosureStore:
    """Open (creating and migrating if needed) the store at `sqlite:///path`, `postgresql://…` or `memory:`."""
    # Imported on demand: a gateway on SQLite never loads the PostgreSQL driver, and the reverse.
    if url.startswith("sqlite://"):
        from gateway.audit.sqlite_store import SqliteStore, path_from_url

        return await SqliteStore.open(path_from_url(url))
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.audit.postgres_store import PostgresStore

        return await PostgresStore.open(url)
    if url == "memory:":
        from gateway.audit.memory_store import MemoryStore

        return MemoryStore()
    raise StoreUrlError("audit store URL must start with sqlite:///, postgresql:// or be memory:")
