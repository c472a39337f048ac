"""A node's summaries: counts and dates per category, area and year of a matched person (Summarise), and
per-person rows over a period keyed by enrolled tokens (SummariseCohort); never a record or an identifier."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import MappingProxyType

import pytest

from agency_stubs.dataset import AgencyDataset, PersonEntry
from agency_stubs.records import CATEGORIES, make_record
from agency_stubs.summary import summarise, summarise_cohort
from gateway.analysis.model import Cell
from gateway.domain import Record, SubjectIdentifiers

NHS_A, NHS_B = "9434765919", "9990006180"


def rec(category: str, record_id: str, day: str) -> Record:
    values = dict.fromkeys(CATEGORIES[category].field_names, "x")
    return make_record(category, record_id, datetime.fromisoformat(day).replace(tzinfo=UTC), "summary", values)


def police() -> AgencyDataset:
    """Police (partnership-wide): A was a victim in camden in 2024 and 2025, then a perpetrator in hackney;
    B was A's perpetrator. The incidents are shared records with a part each."""
    da = [rec("police.domestic_abuse", f"DA-{i}", day) for i, day in enumerate(("2024-03-01", "2025-01-10",
                                                                                  "2025-09-30"))]
    crime = rec("police.crime", "CR-1", "2025-05-05")
    areas = MappingProxyType({"DA-0": "camden", "DA-1": "camden", "DA-2": "hackney", "CR-1": "hackney"})
    a = PersonEntry("P-A", "Ann", "Able", date(1990, 1, 1), NHS_A, records=(*da, crime),
                    roles=MappingProxyType({"DA-0": "victim", "DA-1": "victim", "DA-2": "perpetrator"}), areas=areas)
    b = PersonEntry("P-B", "Bob", "Bane", date(1988, 2, 2), NHS_B, records=tuple(da[:2]),
                    roles=MappingProxyType({"DA-0": "perpetrator", "DA-1": "perpetrator"}), areas=areas)
    return AgencyDataset("police", [a, b])


def test_a_person_is_summarised_per_category_area_and_year_with_their_part() -> None:
    (person,) = summarise(police(), SubjectIdentifiers(nhs_number=NHS_A), ["police.domestic_abuse", "police.crime"])
    assert person.method == "nhs_number"
    assert person.cells == (
        Cell("police.crime", "hackney", 2025, 1, date(2025, 5, 5), date(2025, 5, 5)),
        Cell("police.domestic_abuse", "camden", 2024, 1, date(2024, 3, 1), date(2024, 3, 1), victim=1),
        Cell("police.domestic_abuse", "camden", 2025, 1, date(2025, 1, 10), date(2025, 1, 10), victim=1),
        Cell("police.domestic_abuse", "hackney", 2025, 1, date(2025, 9, 30), date(2025, 9, 30), perpetrator=1),
    )


def test_only_content_categories_are_counted_and_existence_is_a_flag() -> None:
    (person,) = summarise(police(), SubjectIdentifiers(nhs_number=NHS_A), ["police.crime"], ["police.domestic_abuse"])
    assert [c.category for c in person.cells] == ["police.crime"]
    assert person.known_in_existence_categories is True


def test_a_per_borough_agency_puts_every_record_in_its_own_area() -> None:
    case = rec("csc.case", "C-1", "2023-06-01")
    csc = AgencyDataset("csc", [PersonEntry("C-A", "Ann", "Able", date(1990, 1, 1), NHS_A, records=(case,))],
                        area="barnet")
    (person,) = summarise(csc, SubjectIdentifiers(nhs_number=NHS_A), ["csc.case"])
    assert [(c.area, c.year, c.records) for c in person.cells] == [("barnet", 2023, 1)]


def test_nobody_matched_gives_no_summary_and_an_unknown_category_is_refused() -> None:
    assert summarise(police(), SubjectIdentifiers(nhs_number="9990009998"), ["police.crime"]) == []
    with pytest.raises(ValueError, match="holds no record category"):
        summarise(police(), SubjectIdentifiers(nhs_number=NHS_A), ["csc.case"])


def test_a_cohort_row_per_person_in_the_period_keyed_by_their_tokens_without_dates() -> None:
    tokens = {"P-A": (b"a" * 16,), "P-B": (b"b" * 16,)}
    key_id, rows = summarise_cohort(police(), ["police.domestic_abuse"], date(2025, 1, 1), date(2025, 12, 31),
                                    lambda entry: ("k1", tokens[entry.person_ref]))
    assert key_id == "k1"
    by_token = {r.tokens: r.cells for r in rows}
    assert by_token[(b"a" * 16,)] == (
        Cell("police.domestic_abuse", "camden", 2025, 1, victim=1),
        Cell("police.domestic_abuse", "hackney", 2025, 1, perpetrator=1),
    )
    assert by_token[(b"b" * 16,)] == (Cell("police.domestic_abuse", "camden", 2025, 1, perpetrator=1),)


def test_a_node_that_has_not_enrolled_returns_no_rows() -> None:
    assert summarise_cohort(police(), ["police.crime"], date(2020, 1, 1), date(2030, 1, 1), None) == ("", [])
    assert summarise_cohort(police(), ["police.crime"], date(2020, 1, 1), date(2030, 1, 1),
                            lambda entry: ("", ())) == ("", [])
