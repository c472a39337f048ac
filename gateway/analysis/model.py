"""What nodes answer for analysis, as counts and dates per (category, area, year): never a record or a field."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

VICTIM = "victim"
PERPETRATOR = "perpetrator"


@dataclass(frozen=True, slots=True)
class Cell:
    """A person's records of one category that happened in one area in one year (dates empty in cohorts)."""

    category: str
    area: str
    year: int
    records: int
    first: date | None = None
    last: date | None = None
    victim: int = 0  # domestic-abuse incidents among them in which the person was the victim
    perpetrator: int = 0


@dataclass(frozen=True, slots=True)
class PersonCounts:
    """One person a node matched for Summarise: cells of the content categories, and existence only for the rest."""

    method: str
    cells: tuple[Cell, ...]
    known_in_existence_categories: bool


@dataclass(frozen=True, slots=True)
class CohortRow:
    """One person's cells over a period, keyed by the locator tokens the node enrolled for them."""

    tokens: tuple[bytes, ...]
    cells: tuple[Cell, ...]


def count_cells(events: Iterable[tuple[str, str, date, str]], *, dated: bool = True) -> tuple[Cell, ...]:
    """Cells from (category, area, date, part) events, part being "victim", "perpetrator" or ""; sorted."""
    cells: dict[tuple[str, str, int], list[tuple[date, str]]] = {}
    for category, area, when, part in events:
        cells.setdefault((category, area, when.year), []).append((when, part))
    return tuple(
        Cell(category, area, year, len(items),
             first=min(d for d, _ in items) if dated else None, last=max(d for d, _ in items) if dated else None,
             victim=sum(p == VICTIM for _, p in items), perpetrator=sum(p == PERPETRATOR for _, p in items))
        for (category, area, year), items in sorted(cells.items())
    )
