"""Query text and row conversions shared by the SQLite and PostgreSQL `DisclosureStore`s."""

from __future__ import annotations

from typing import Any

from gateway.audit.checkpoint import SignedCheckpoint
from gateway.audit.encoding import EncodingError, format_timestamp, parse_timestamp
from gateway.audit.merkle import HASH_SIZE
from gateway.audit.store import META_FIELDS, TOKENS, EntryFilter, EntryMeta, StoreError, meta_mismatches

META_COLUMNS: tuple[tuple[str, str], ...] = tuple(zip(META_FIELDS, (
    "occurred_at", "kind", "agency", "purpose", "role", "user_id", "case_reference", "status"), strict=True))
"""(field of `store.META_FIELDS`, SQL column of `audit_entries` holding its copy), in the same order."""

MISMATCH_NAMES = (*META_FIELDS, TOKENS)
"""What each boolean column after the index of a store's mismatch query reports, in order."""

# Filter columns of a range of entries; {p} is the driver's placeholder.
META_SQL = ("SELECT e.idx, e.data, e.occurred_at, e.kind, e.agency, e.purpose, e.role, e.user_id, "
            "e.case_reference, e.status FROM audit_entries e WHERE e.idx >= {p} AND e.idx < {p} ORDER BY e.idx")
META_TOKENS_SQL = "SELECT idx, token FROM audit_subject_tokens WHERE idx >= {p} AND idx < {p}"


def filter_clauses(where: EntryFilter, start: int, mark: str,
                   before: int | None = None) -> tuple[list[str], list[Any]]:
    """WHERE clauses and parameters for everything in `where` but subject tokens, with `mark` as placeholder."""
    clauses = [f"idx >= {mark}"]
    params: list[Any] = [start]
    if before is not None:
        clauses.append(f"idx < {mark}")
        params.append(before)
    if where.since is not None:
        clauses.append(f"occurred_at >= {mark}")
        params.append(format_timestamp(where.since))
    if where.until is not None:
        clauses.append(f"occurred_at < {mark}")
        params.append(format_timestamp(where.until))
    for column, value in (("kind", where.kind), ("agency", where.agency), ("purpose", where.purpose),
                          ("role", where.role), ("user_id", where.user),
                          ("case_reference", where.case_reference), ("status", where.status)):
        if value:
            clauses.append(f"{column} = {mark}")  # column names come from this fixed list, never from input
            params.append(value)
    return clauses, params


def mismatches_from_rows(rows: list[tuple[Any, ...]], tokens: list[tuple[Any, Any]]) -> dict[int, tuple[str, ...]]:
    """`metadata_mismatches` computed in Python from `META_SQL` and `META_TOKENS_SQL` rows (idx, data, columns…)
    and (idx, token) rows, for a SQL store whose database cannot compare some entry itself."""
    by_index: dict[int, list[str]] = {}
    for idx, token in tokens:
        by_index.setdefault(int(idx), []).append(token)
    out: dict[int, tuple[str, ...]] = {}
    for idx, data, at, kind, agency, purpose, role, user, case, status in rows:
        # Values are taken as the driver returns them: a tampered non-text value then fails to compare equal.
        meta = EntryMeta(at, kind, agency, purpose, role, user, case, status, tuple(by_index.get(int(idx), ())))
        differing = meta_mismatches(as_bytes(data), meta)
        if differing:
            out[int(idx)] = differing
    return out


def as_bytes(value: Any) -> bytes:
    """A BLOB/BYTEA value as bytes; a tampered row may hold TEXT where bytes were written (e.g. after replace())."""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def row_to_checkpoint(row: tuple[Any, ...]) -> SignedCheckpoint:
    """A (tree_size, root_hash, ts, key_id, signature) row; a malformed one is a StoreError."""
    try:
        return SignedCheckpoint(int(row[0]), as_bytes(row[1]), parse_timestamp(row[2]), str(row[3]),
                                as_bytes(row[4]))
    except (EncodingError, ValueError, TypeError) as exc:
        raise StoreError(f"a stored checkpoint is malformed: {exc}") from exc


def leaf_hashes_from_rows(rows: list[tuple[Any, Any]], start: int) -> list[bytes]:
    """Stored leaf hashes of consecutive (idx, leaf_hash) rows from `start`; a gap or a hash of the wrong size
    is a StoreError."""
    hashes = []
    for offset, (idx, value) in enumerate(rows):
        if idx != start + offset:
            raise StoreError(f"audit log has a gap at index {start + offset}")
        digest = as_bytes(value)
        if len(digest) != HASH_SIZE:
            raise StoreError(f"the stored leaf hash of entry {idx} is not {HASH_SIZE} bytes")
        hashes.append(digest)
    return hashes
