"""Analysis messages to and from protobuf, for the node (AgencyService.Summarise*) and the gateway."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from gateway.analysis.model import Cell, CohortRow, PersonCounts
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb

MAX_CELLS = 10_000  # per person: more than 60 years of every category; a longer answer is refused unread
MAX_TOKENS = 8  # per cohort row: a person has at most an NHS-number and a name-and-date-of-birth token


def cell_to_proto(cell: Cell) -> agency_pb.SummaryCell:
    return agency_pb.SummaryCell(
        category=cell.category, area=cell.area, year=cell.year, records=cell.records,
        first_date=cell.first.isoformat() if cell.first else "", last_date=cell.last.isoformat() if cell.last else "",
        roles=agency_pb.RoleCounts(victim=cell.victim, perpetrator=cell.perpetrator),
    )


def _date(text: str, what: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{what} is not a YYYY-MM-DD date") from exc


def cells_from_proto(cells: Iterable[agency_pb.SummaryCell], categories: frozenset[str], *,
                     dated: bool) -> tuple[Cell, ...]:
    """Cells as the gateway reads them: only asked categories, sane counts and (when `dated`) both dates."""
    out = []
    for i, c in enumerate(cells):
        if i >= MAX_CELLS:
            raise ValueError(f"more than {MAX_CELLS} cells for one person")
        if c.category not in categories:
            raise ValueError("a cell of a category that was not asked for")
        if c.records == 0 or c.roles.victim + c.roles.perpetrator > c.records or not 1 <= c.year <= 9999:
            raise ValueError("a cell with impossible counts or year")
        first, last = _date(c.first_date, "first_date"), _date(c.last_date, "last_date")
        if dated and (first is None or last is None or first > last or first.year != c.year or last.year != c.year):
            raise ValueError("a cell whose dates are missing or outside its year")
        out.append(Cell(c.category, c.area, c.year, c.records, first if dated else None, last if dated else None,
                        c.roles.victim, c.roles.perpetrator))
    return tuple(out)


def person_to_proto(person: PersonCounts, method: agency_pb.MatchMethod.ValueType) -> agency_pb.PersonSummary:
    return agency_pb.PersonSummary(method=method, cells=[cell_to_proto(c) for c in person.cells],
                                   known_in_existence_categories=person.known_in_existence_categories)


def person_from_proto(person: agency_pb.PersonSummary, categories: frozenset[str]) -> PersonCounts:
    return PersonCounts(agency_pb.MatchMethod.Name(person.method), cells_from_proto(person.cells, categories,
                                                                                   dated=True),
                        person.known_in_existence_categories)


def row_to_proto(row: CohortRow) -> agency_pb.CohortRow:
    return agency_pb.CohortRow(tokens=list(row.tokens), cells=[cell_to_proto(c) for c in row.cells])


def row_from_proto(row: agency_pb.CohortRow, categories: frozenset[str], token_bytes: int) -> CohortRow:
    if len(row.tokens) > MAX_TOKENS or any(len(t) != token_bytes for t in row.tokens):
        raise ValueError("a cohort row with malformed tokens")
    return CohortRow(tuple(row.tokens), cells_from_proto(row.cells, categories, dated=False))
