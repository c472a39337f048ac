"""Building agency records whose fields follow the catalogue exactly."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time

from agency_stubs.catalogue import CATEGORIES, CategorySpec
from gateway.domain import Field, Record


def at(day: date, hour: int = 0, minute: int = 0) -> datetime:
    """A timezone-aware UTC timestamp on `day`."""
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def make_record(
    category: str,
    record_id: str,
    occurred_at: datetime,
    summary: str,
    values: Mapping[str, str],
    *,
    catalogue: Mapping[str, CategorySpec] = CATEGORIES,
) -> Record:
    """A record of `category` with exactly the catalogue's fields, in catalogue order; KeyError otherwise.
    `catalogue` is the simulated agencies' unless another agency's is given (the youth offending service's)."""
    spec = catalogue[category]
    missing = [name for name in spec.field_names if name not in values]
    extra = [name for name in values if name not in spec.field_names]
    if missing or extra:
        raise KeyError(f"{category} record {record_id}: missing fields {missing}, unknown fields {extra}")
    return Record(
        agency=spec.agency,
        record_id=record_id,
        record_type=spec.record_type,
        category=category,
        kind=spec.kind,
        occurred_at=occurred_at,
        summary=summary,
        fields=tuple(Field(name, cat, values[name]) for name, cat in spec.fields),
    )
