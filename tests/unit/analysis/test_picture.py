"""The strategic picture's linkage and counts: people joined across agencies by shared locator tokens, each
counted once in the total and in every area where their incidents (or, for movers, records) happened."""

from __future__ import annotations

from gateway.analysis.model import Cell, CohortRow
from gateway.analysis.picture import count, link, suppress


def row(*tokens: bytes, cells: tuple[Cell, ...]) -> CohortRow:
    return CohortRow(tokens, cells)


def incident(area: str, *, victim: int = 0, perpetrator: int = 0, year: int = 2025) -> Cell:
    return Cell("police.domestic_abuse", area, year, victim + perpetrator, victim=victim, perpetrator=perpetrator)


def record(category: str, area: str, records: int = 1) -> Cell:
    return Cell(category, area, 2025, records)


def test_rows_sharing_any_token_are_one_person_even_through_a_third_row() -> None:
    """Police knows A by NHS number and name+dob, CSC by name+dob only, education by NHS number only:
    all three rows are one person, who was a victim twice and has records in two boroughs."""
    people = link([
        row(b"nhs-A".ljust(16), b"ndob-A".ljust(16), cells=(incident("camden", victim=2),)),
        row(b"ndob-A".ljust(16), cells=(record("csc.case", "hackney"),)),
        row(b"nhs-A".ljust(16), cells=(record("education.attendance", "camden"),)),
        row(b"nhs-B".ljust(16), cells=(incident("camden", perpetrator=1),)),
    ])
    assert len(people) == 2
    a = next(p for p in people if p.victim)
    assert (a.victim, a.perpetrator, a.areas, a.incident_areas) == (2, 0, {"camden", "hackney"}, {"camden"})


def test_groups_need_two_incidents_or_both_parts_or_two_areas() -> None:
    people = link([
        row(b"1" * 16, cells=(incident("camden", victim=1),)),  # one incident: in no group
        row(b"2" * 16, cells=(incident("camden", victim=1), incident("hackney", perpetrator=2))),
        row(b"3" * 16, cells=(record("csc.case", "camden"), record("housing.tenancy", "barnet"))),
    ])
    counts = count(people, ("barnet", "camden", "hackney"))
    assert counts.total == {"repeat_victims": 0, "repeat_perpetrators": 1, "role_switchers": 1, "movers": 2}
    # Person 2's incidents happened in camden and hackney: they count in both, once in the total.
    assert counts.areas["camden"] == {"repeat_victims": 0, "repeat_perpetrators": 1, "role_switchers": 1,
                                      "movers": 2}
    assert counts.areas["hackney"]["role_switchers"] == 1
    assert counts.areas["barnet"] == {"repeat_victims": 0, "repeat_perpetrators": 0, "role_switchers": 0,
                                      "movers": 1}


def test_a_partnership_without_areas_has_one_row_equal_to_its_total() -> None:
    people = link([row(bytes([i]) * 16, cells=(incident("", victim=3),)) for i in range(6)])
    counts = count(people, ("",))
    assert counts.areas[""] == counts.total
    assert counts.total["repeat_victims"] == 6
    assert counts.total["movers"] == 0  # records with no area are no move


def test_released_counts_are_suppressed_column_by_column() -> None:
    people = link([row(bytes([i]) * 16, cells=(incident("camden" if i < 8 else "hackney", victim=2),))
                   for i in range(10)])
    rows, total = suppress(count(people, ("barnet", "camden", "hackney")))
    victims = {a: rows[a]["repeat_victims"].text for a in rows}
    # barnet 0 and hackney 2 are both "<5", so camden's 8 may show beside the total of 10.
    assert victims == {"barnet": "<5", "camden": "8", "hackney": "<5"}
    assert total["repeat_victims"].text == "10"
