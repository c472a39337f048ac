"""The partnership's strategic picture: link people across agencies by locator token, in memory only, and count
repeat victims, repeat perpetrators, role switchers and movers per area, suppressed.

The gateway holds the rows of one request only while it counts them; they are never stored or logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.analysis.model import CohortRow
from gateway.analysis.suppression import Shown, suppress_column

MEASURES = ("repeat_victims", "repeat_perpetrators", "role_switchers", "movers")


@dataclass(slots=True)
class Person:
    """One linked person's counts over the period."""

    victim: int = 0
    perpetrator: int = 0
    incident_areas: set[str] = field(default_factory=set)  # where their domestic-abuse incidents happened
    areas: set[str] = field(default_factory=set)  # where any of their records happened

    def groups(self) -> dict[str, set[str]]:
        """Each group the person is in, with the areas they count in for it."""
        out: dict[str, set[str]] = {}
        if self.victim >= 2:
            out["repeat_victims"] = self.incident_areas
        if self.perpetrator >= 2:
            out["repeat_perpetrators"] = self.incident_areas
        if self.victim and self.perpetrator:
            out["role_switchers"] = self.incident_areas
        if len(self.areas) >= 2:
            out["movers"] = self.areas
        return out


def link(rows: Iterable[CohortRow]) -> list[Person]:
    """People from rows of several agencies: rows sharing any token are one person (union-find)."""
    rows = list(rows)
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[bytes, int] = {}
    for i, row in enumerate(rows):
        for token in row.tokens:
            j = first.setdefault(token, i)
            parent[root(i)] = root(j)
    people: dict[int, Person] = {}
    for i, row in enumerate(rows):
        person = people.setdefault(root(i), Person())
        for cell in row.cells:
            person.victim += cell.victim
            person.perpetrator += cell.perpetrator
            if cell.area:
                person.areas.add(cell.area)
                if cell.victim or cell.perpetrator:
                    person.incident_areas.add(cell.area)
    return list(people.values())


@dataclass(frozen=True, slots=True)
class PictureCounts:
    """True counts per area and for the whole partnership (never released as they are)."""

    areas: Mapping[str, Mapping[str, int]]
    total: Mapping[str, int]


def count(people: Iterable[Person], areas: Sequence[str]) -> PictureCounts:
    """Counts per measure for each of `areas` and in total (each person once in the total)."""
    by_area = {a: dict.fromkeys(MEASURES, 0) for a in areas}
    total = dict.fromkeys(MEASURES, 0)
    for person in people:
        for measure, where in person.groups().items():
            total[measure] += 1
            for area in where:
                if area in by_area:
                    by_area[area][measure] += 1
    if list(areas) == [""]:  # a partnership without areas: its one row is the whole partnership
        by_area[""] = dict(total)
    return PictureCounts(by_area, total)


def suppress(counts: PictureCounts) -> tuple[dict[str, dict[str, Shown]], dict[str, Shown]]:
    """The counts as released, column by column (see `suppression`)."""
    names = list(counts.areas)
    rows: dict[str, dict[str, Shown]] = {a: {} for a in names}
    total: dict[str, Shown] = {}
    for measure in MEASURES:
        cells, total[measure] = suppress_column([counts.areas[a][measure] for a in names], counts.total[measure])
        for area, shown in zip(names, cells, strict=True):
            rows[area][measure] = shown
    return rows, total
