"""The `DisclosureStore` port: where audit entries and checkpoints are durably kept, and its errors.

A store assigns each appended entry the next index, wraps it with `encoding.entry_bytes`, hashes it with
`merkle.leaf_hash` and commits the batch atomically before returning receipts. Stores never decode or
interpret entries beyond the filter columns handed to them in `EntryMeta`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from gateway.audit.checkpoint import SignedCheckpoint
from gateway.audit.encoding import EncodingError, encode_event, format_timestamp
from gateway.domain import AuditEvent, AuditReceipt
from gateway.errors import AuditUnavailable, GatewayError


class StoreError(GatewayError):
    """The audit store failed or holds something it should not."""


class StoreUnavailable(StoreError, AuditUnavailable):
    """The audit store cannot be reached or did not commit; for appends this means nothing was stored."""


class CheckpointConflict(StoreError):
    """A checkpoint was refused because it is not later (in time and size) than the latest stored one."""


class StoreUrlError(StoreError):
    """A store URL is malformed or names an unsupported kind of store."""


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """Copies of an entry's filterable fields, kept in indexed columns beside the entry bytes."""

    occurred_at: str  # encoding.format_timestamp form, so text order is time order
    kind: str
    agency: str
    purpose: str
    role: str
    user: str
    case_reference: str
    status: str
    subject_tokens: tuple[str, ...]

    @classmethod
    def from_event(cls, event: AuditEvent) -> EntryMeta:
        """The filter columns of `event`; raises EncodingError if one holds a NUL (no SQL text column can)."""
        meta = cls(
            occurred_at=format_timestamp(event.occurred_at),
            kind=event.kind.value,
            agency=event.agency,
            purpose=event.purpose,
            role=event.role,
            user=event.user,
            case_reference=event.case_reference,
            status=event.status,
            subject_tokens=tuple(dict.fromkeys(event.subject_tokens)),
        )
        # Checked here, before any store sees it, so one bad entry cannot fail a group commit for others.
        for name, value in (("agency", meta.agency), ("purpose", meta.purpose), ("role", meta.role),
                            ("user", meta.user), ("case_reference", meta.case_reference),
                            ("status", meta.status), *(("subject_tokens", t) for t in meta.subject_tokens)):
            if "\x00" in value:
                raise EncodingError(f"audit event {name} must not contain NUL characters")
        return meta


# Filter columns of a range of entries, for `entry_meta`; {p} is the driver's placeholder.
META_SQL = ("SELECT idx, occurred_at, kind, agency, purpose, role, user_id, case_reference, status "
            "FROM audit_entries WHERE idx >= {p} AND idx < {p} ORDER BY idx")


def entry_meta_from_rows(rows: list[tuple[Any, ...]], tokens: list[tuple[Any, Any]]) -> dict[int, EntryMeta]:
    """EntryMeta per index from filter-column rows and (idx, token) rows, for the SQL stores' `entry_meta`."""
    by_index: dict[int, list[str]] = {}
    for idx, token in tokens:
        by_index.setdefault(idx, []).append(token)
    # Values are taken as the driver returns them: a tampered non-text value then simply fails to compare equal.
    return {idx: EntryMeta(at, kind, agency, purpose, role, user, case, status, tuple(by_index.get(idx, ())))
            for idx, at, kind, agency, purpose, role, user, case, status in rows}


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """An entry on its way into the store: the canonical event JSON and its filter columns."""

    event_json: bytes
    meta: EntryMeta

    @classmethod
    def from_event(cls, event: AuditEvent) -> PendingEntry:
        return cls(encode_event(event), EntryMeta.from_event(event))


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as a store holds it: its row index, stored leaf hash and the canonical entry bytes."""

    index: int
    leaf_hash: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Which entries to list; every given criterion must hold (empty means "any")."""

    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    kind: str = ""
    agency: str = ""
    purpose: str = ""
    role: str = ""
    user: str = ""
    case_reference: str = ""
    status: str = ""
    subject_tokens: frozenset[str] = frozenset()  # entries carrying any of these tokens

    def matches(self, meta: EntryMeta) -> bool:
        """The same test the SQL stores run, for stores that filter in memory."""
        if self.since is not None and meta.occurred_at < format_timestamp(self.since):
            return False
        if self.until is not None and meta.occurred_at >= format_timestamp(self.until):
            return False
        for want, have in ((self.kind, meta.kind), (self.agency, meta.agency), (self.purpose, meta.purpose),
                           (self.role, meta.role), (self.user, meta.user),
                           (self.case_reference, meta.case_reference), (self.status, meta.status)):
            if want and want != have:
                return False
        return not self.subject_tokens or not self.subject_tokens.isdisjoint(meta.subject_tokens)

    def columns(self) -> list[tuple[str, str]]:
        """(column, value) pairs for the equality criteria, in a fixed order."""
        pairs = [("kind", self.kind), ("agency", self.agency), ("purpose", self.purpose),
                 ("role", self.role), ("user_id", self.user), ("case_reference", self.case_reference),
                 ("status", self.status)]
        return [(col, val) for col, val in pairs if val]


class DisclosureStore(Protocol):
    """Durable, append-only storage of audit entries and signed checkpoints."""

    async def append(self, entries: Sequence[PendingEntry]) -> list[AuditReceipt]:
        """Durably commit `entries` in order at the next indices; all or nothing.

        Raises StoreUnavailable (an AuditUnavailable) if they were not committed.
        """
        ...

    async def size(self) -> int:
        """How many entries the log holds."""
        ...

    async def leaf_hashes(self, start: int) -> list[bytes]:
        """Stored leaf hashes of entries `start`, `start + 1`, … to the end, without gaps."""
        ...

    async def get_entry(self, index: int) -> StoredEntry | None:
        ...

    async def scan(self, start: int, limit: int) -> list[StoredEntry]:
        """Up to `limit` rows with index >= `start`, in index order, exactly as stored (gaps included)."""
        ...

    async def find(self, where: EntryFilter, *, start: int, limit: int) -> list[StoredEntry]:
        """Up to `limit` entries matching `where` with index >= `start`, in index order."""
        ...

    async def entry_meta(self, start: int, end: int) -> dict[int, EntryMeta]:
        """The stored filter columns and subject tokens of the entries with `start <= index < end`, as stored.

        Verification compares them with the entry bytes, since `find` (and so listing and subject access)
        trusts them.
        """
        ...

    async def add_checkpoint(self, checkpoint: SignedCheckpoint) -> None:
        """Store a checkpoint; raises CheckpointConflict unless it is later in time and not smaller."""
        ...

    async def latest_checkpoint(self) -> SignedCheckpoint | None:
        ...

    async def checkpoints(self) -> list[SignedCheckpoint]:
        """Every stored checkpoint, oldest first."""
        ...

    async def close(self) -> None:
        ...


async def open_store(url: str) -> DisclosureStore:
    """Open (creating and migrating if needed) the store at `sqlite:///path`, `postgresql://…` or `memory:`."""
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
