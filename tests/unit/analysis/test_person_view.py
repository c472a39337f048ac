"""One person's view from the agencies' cells: areas across agencies, domestic-abuse parts, and moves by year."""

from __future__ import annotations

from datetime import date

from gateway.analysis.model import Cell
from gateway.analysis.service import AgencyPart, SummaryStatus, person_view
from gateway.domain import DisclosureLevel


def cell(category: str, area: str, day: str, records: int = 1, **parts: int) -> Cell:
    when = date.fromisoformat(day)
    return Cell(category, area, when.year, records, when, when, **parts)


def part(agency: str, *cells: Cell, status: SummaryStatus = SummaryStatus.KNOWN) -> AgencyPart:
    return AgencyPart(agency, "", status, DisclosureLevel.PERTINENT, cells=cells)


def test_areas_years_and_moves_come_from_every_agency_that_released_counts() -> None:
    view = person_view("r", "v", (
        part("police", cell("police.domestic_abuse", "camden", "2023-02-01", victim=1),
             cell("police.domestic_abuse", "hackney", "2025-07-01", perpetrator=1)),
        part("csc_camden", cell("csc.case", "camden", "2023-05-01", 2)),
        part("csc_hackney", cell("csc.case", "hackney", "2024-03-01", 3)),
        # An agency whose answer was ambiguous contributes nothing, whatever it sent.
        part("housing", cell("housing.tenancy", "barnet", "2024-01-01", 9), status=SummaryStatus.AMBIGUOUS),
    ))
    assert [(a.area, a.agencies, a.records, a.first, a.last) for a in view.areas] == [
        ("camden", ("csc_camden", "police"), 3, date(2023, 2, 1), date(2023, 5, 1)),
        ("hackney", ("csc_hackney", "police"), 4, date(2024, 3, 1), date(2025, 7, 1)),
    ]
    assert (view.as_victim, view.as_perpetrator) == (1, 1)
    assert [(y.year, y.main_area, y.moved_from) for y in view.years] == [
        (2023, "camden", ""), (2024, "hackney", "camden"), (2025, "hackney", "")]
    assert view.moves == 1


def test_a_tie_between_areas_in_a_year_goes_to_the_first_area_alphabetically() -> None:
    view = person_view("r", "v", (part("police", cell("police.crime", "hackney", "2024-01-01"),
                                       cell("police.crime", "camden", "2024-06-01")),))
    assert view.years[0].main_area == "camden"
