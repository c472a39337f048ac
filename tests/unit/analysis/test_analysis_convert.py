"""What the gateway accepts from a node's summaries: only asked categories, counts that add up, dates inside
their year, and tokens of the locator's size. Anything else makes the whole answer unreadable."""

from __future__ import annotations

import pytest

from gateway.analysis.convert import cells_from_proto, row_from_proto
from gateway.analysis.model import Cell
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb

ASKED = frozenset({"police.domestic_abuse"})


def cell(**fields: object) -> agency_pb.SummaryCell:
    base: dict[str, object] = {"category": "police.domestic_abuse", "area": "camden", "year": 2025, "records": 2,
                               "first_date": "2025-01-02", "last_date": "2025-03-04",
                               "roles": agency_pb.RoleCounts(victim=1, perpetrator=1)}
    return agency_pb.SummaryCell(**{**base, **fields})  # type: ignore[arg-type]


def test_a_well_formed_cell_is_read_as_sent() -> None:
    (read,) = cells_from_proto([cell()], ASKED, dated=True)
    assert (read.category, read.area, read.year, read.records, read.victim, read.perpetrator) == (
        "police.domestic_abuse", "camden", 2025, 2, 1, 1)
    assert (read.first.isoformat(), read.last.isoformat()) == ("2025-01-02", "2025-03-04")  # type: ignore[union-attr]


@pytest.mark.parametrize(("bad", "why"), [
    (cell(category="health.sexual_health"), "not asked"),
    (cell(records=0), "impossible"),
    (cell(records=1), "impossible"),  # two parts in one record
    (cell(year=0), "impossible"),
    (cell(first_date="2024-12-31"), "outside its year"),
    (cell(last_date=""), "missing"),
    (cell(first_date="2025-03-05"), "outside its year"),  # first after last
    (cell(first_date="03/01/2025"), "YYYY-MM-DD"),
])
def test_a_cell_that_cannot_be_true_is_refused(bad: agency_pb.SummaryCell, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        cells_from_proto([bad], ASKED, dated=True)


def test_cohort_cells_carry_no_dates_even_if_a_node_sends_them() -> None:
    row = row_from_proto(agency_pb.CohortRow(tokens=[b"t" * 16], cells=[cell()]), ASKED, 16)
    assert row.cells == (Cell("police.domestic_abuse", "camden", 2025, 2, None, None, 1, 1),)


@pytest.mark.parametrize("tokens", [[b"short"], [b"t" * 16] * 9])
def test_a_cohort_row_with_malformed_tokens_is_refused(tokens: list[bytes]) -> None:
    with pytest.raises(ValueError, match="malformed tokens"):
        row_from_proto(agency_pb.CohortRow(tokens=tokens, cells=[cell()]), ASKED, 16)
