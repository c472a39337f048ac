"""The `DisclosureStore` port: where audit entries and checkpoints are durably kept, and its errors.

A store assigns each appended entry the next index, wraps it with `encoding.entry_bytes`, hashes it with
`merkle.leaf_hash` and commits the batch atomically before returning receipts. Stores keep copies of an
entry's filterable fields (`EntryMeta`) beside its bytes, and compare those copies with the bytes when
verification asks (`metadata_mismatches`). The backends live in their own modules and are chosen by
`gateway.audit.backends.open_store`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

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


PROBE_BYTES = 8192
"""Size of the row `check_writable` tries to write: larger than nearly every entry."""


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

    @classmethod
    def from_entry(cls, data: bytes) -> EntryMeta:
        """The filter columns read back from stored entry bytes, for a store that fills its copies after the
        entries' own commit and has lost the originals (a restart). A field the bytes lack, or hold as anything
        but text, comes back empty, so that verification, comparing the copies with the bytes, names it."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            doc = None
        event = doc.get("event") if isinstance(doc, dict) else None
        fields = event if isinstance(event, dict) else {}
        text = {name: value if isinstance(value := fields.get(name), str) and _storable(value) else ""
                for name in META_FIELDS}
        tokens = fields.get(TOKENS)
        listed = tokens if isinstance(tokens, list) and all(_storable(t) for t in tokens) else []
        return cls(**text, subject_tokens=tuple(dict.fromkeys(listed)))


def _storable(value: object) -> bool:
    """Text a SQL text column can hold: a str with no NUL that encodes as UTF-8 (JSON may carry a lone
    surrogate escape, which does not)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


META_FIELDS = ("occurred_at", "kind", "agency", "purpose", "role", "user", "case_reference", "status")
"""The copied filter fields of the entry's event JSON and of `EntryMeta`, in the order `metadata_mismatches`
names them; the subject tokens follow as ``"subject_tokens"``."""

TOKENS = "subject_tokens"

_ABSENT = object()


def meta_mismatches(data: bytes, meta: EntryMeta) -> tuple[str, ...]:
    """Which of `meta`'s fields (names as in `META_FIELDS`, then ``"subject_tokens"``) differ from the entry
    `data`; empty if they all match or if `data` is not a JSON entry with an event object at all.

    A field the event lacks differs; the subject tokens compare as sets (the store keeps each token once) and
    differ unless the event's are a list of strings. This is the reference for the SQL stores' queries.
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return ()  # not an entry at all: verification reports it as malformed or altered
    event = doc.get("event") if isinstance(doc, dict) else None
    if not isinstance(event, dict):
        return ()
    differing = [name for name in META_FIELDS if event.get(name, _ABSENT) != getattr(meta, name)]
    tokens = event.get(TOKENS, [])
    if (not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens)
            or set(tokens) != set(meta.subject_tokens)):
        differing.append(TOKENS)
    return tuple(differing)


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

    async def leaf_hashes(self, start: int, limit: int | None = None) -> list[bytes]:
        """Stored leaf hashes of entries `start`, `start + 1`, … to the end (or `limit` of them), without gaps."""
        ...

    async def get_entry(self, index: int) -> StoredEntry | None:
        ...

    async def scan(self, start: int, limit: int) -> list[StoredEntry]:
        """Up to `limit` rows with index >= `start`, in index order, exactly as stored (gaps included)."""
        ...

    async def find(self, where: EntryFilter, *, start: int, limit: int, before: int | None = None,
                   newest_first: bool = False) -> list[StoredEntry]:
        """Up to `limit` entries matching `where` with `start <= index` (and `index < before` if given), in index
        order or, with `newest_first`, in reverse index order."""
        ...

    async def count(self, where: EntryFilter, *, before: int | None = None) -> int:
        """How many entries match `where` (with `index < before`, if given)."""
        ...

    async def metadata_mismatches(self, start: int, end: int) -> dict[int, tuple[str, ...]]:
        """Entries with `start <= index < end` whose stored filter columns or subject-token rows disagree with
        their own bytes, each mapped to the names of what disagrees (as `meta_mismatches` names them).

        Verification reports these, since `find` (and so listing and subject access) trusts the copies. Entries
        that are not JSON with an event object are left out (verification reports them otherwise).
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

    async def check_writable(self) -> None:
        """Raise StoreUnavailable unless the store could commit an entry of usual size now; stores nothing.

        A read succeeding says nothing about a full disk or a locked table, so recovery is judged by this.
        """
        ...

    async def add_cosignature(self, tree_size: int, root_hash: bytes, line: str) -> None:
        """Keep a witness's cosignature line for the checkpoint of `tree_size` with `root_hash` (idempotent)."""
        ...

    async def cosignatures(self) -> list[tuple[int, bytes, str]]:
        """Every stored cosignature as (tree size, root hash, signature line), by tree size."""
        ...

    async def close(self) -> None:
        ...
