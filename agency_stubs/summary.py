"""Counts and dates of what one agency holds, for analysis: per person matched (Summarise) and per person over a
period keyed by locator tokens (SummariseCohort). Nothing here returns a record, a field or an identifier."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import date

from agency_stubs.dataset import AgencyDataset, PersonEntry
from gateway.analysis.model import Cell, CohortRow, PersonCounts, count_cells
from gateway.domain import SubjectIdentifiers

TokensOf = Callable[[PersonEntry], tuple[str, tuple[bytes, ...]]]
"""A person's locator tokens as the node enrolled them: (key id, tokens); ("", ()) when it has not enrolled."""


def record_area(dataset: AgencyDataset, entry: PersonEntry, record_id: str) -> str:
    """Where a record's event happened: the entry says so for a partnership-wide agency, else the agency's area."""
    return entry.areas.get(record_id, dataset.area)


def person_cells(dataset: AgencyDataset, entry: PersonEntry, categories: Collection[str], *,
                 start: date | None = None, end: date | None = None, dated: bool = True) -> tuple[Cell, ...]:
    """The person's records in `categories` (and within [start, end] when given), as cells."""
    events = []
    for record in entry.records:
        when = record.occurred_at.date()
        if record.category not in categories or (start and when < start) or (end and when > end):
            continue
        events.append((record.category, record_area(dataset, entry, record.record_id), when,
                       entry.roles.get(record.record_id, "")))
    return count_cells(events, dated=dated)


def summarise(dataset: AgencyDataset, subject: SubjectIdentifiers, categories: Collection[str],
              existence_categories: Collection[str] = ()) -> list[PersonCounts]:
    """The people `subject` matches (as a lookup matches them), each as counts and dates of `categories` and
    whether they have records in `existence_categories`; ValueError for categories the agency does not hold."""
    matches = dataset.lookup(subject, categories, existence_categories)
    return [PersonCounts(m.method, person_cells(dataset, dataset.persons[m.person_ref], categories),
                         m.known_in_existence_categories) for m in matches]


def summarise_cohort(dataset: AgencyDataset, categories: Collection[str], start: date, end: date,
                     tokens_of: TokensOf | None) -> tuple[str, list[CohortRow]]:
    """(key id, rows): one row per person with records of `categories` in [start, end], keyed by their
    enrolled locator tokens; no rows (and no key id) when the node has not enrolled."""
    unknown = dataset.unknown_categories(categories)
    if unknown:
        raise ValueError(f"{dataset.agency} holds no record category {', '.join(sorted(set(unknown)))}")
    key_id, rows = "", list[CohortRow]()
    if tokens_of is None:
        return key_id, rows
    for entry in dataset.persons.values():
        cells = person_cells(dataset, entry, categories, start=start, end=end, dated=False)
        if not cells:
            continue
        kid, tokens = tokens_of(entry)
        if not tokens:
            continue
        key_id = kid
        rows.append(CohortRow(tokens, cells))
    return key_id, rows
