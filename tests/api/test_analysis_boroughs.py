"""AnalysisService over a generated three-borough partnership (real gateway and nodes over mTLS, every node
enrolled): one person's boroughs and moves, and the partnership picture per borough, checked against the
records the nodes serve. People are linked across agencies only by their locator tokens."""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import structlog

from agency_stubs.dataset import PersonEntry
from agency_stubs.locator_enrolment import enrol_running_node
from agency_stubs.london import BOROUGH_KINDS, LondonWorld, build_london
from agency_stubs.london_policy import PAN_LONDON_ANALYSIS_AGREEMENT, generate_partnership
from gateway.analysis.picture import MEASURES
from gateway.analysis.suppression import suppress_column
from gateway.api.tls import channel_credentials, client_credentials
from gateway.demo.partnership import Partnership
from gateway.generated.mash.gateway.v1 import analysis_service_pb2 as analysis_pb
from gateway.generated.mash.gateway.v1 import analysis_service_pb2_grpc as analysis_grpc
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.linkage import normalise_name
from gateway.partnership import load_plan

PROTECTED = {"sexual_health", "refuge"}  # the analyst's deny: never counted
PERIOD = (date(2020, 1, 1), date(2026, 11, 1))


@pytest.fixture(scope="module")
def london() -> LondonWorld:
    return build_london(boroughs=3, people_per_borough=300)


@contextlib.asynccontextmanager
async def boroughs(tmp_path: Path, world: LondonWorld) -> AsyncIterator[tuple[Partnership, Any]]:
    policy_dir = tmp_path / "policy"
    generate_partnership(policy_dir, len(world.areas))
    holders = list(load_plan(policy_dir).record_holders)
    async with Partnership(tmp_path / "state", policy_dir, world=world) as partnership:
        for agency in holders:
            channel = partnership.channel(channel_credentials(partnership.pki.ca_cert, *partnership.pki.node(agency)))
            await enrol_running_node(partnership.nodes[agency], channel)
        channel = partnership.channel(client_credentials(partnership.pki, "hub", "analysis-console"))
        yield partnership, analysis_grpc.AnalysisServiceStub(channel)


METADATA = (("x-mash-user", "analyst.london"), ("x-mash-role", "mash_analyst"))


@dataclass
class Truth:
    """One person as the served datasets hold them (linked here by identifiers, which the gateway never sees)."""

    victim: int = 0
    perpetrator: int = 0
    incident_areas: set[str] = field(default_factory=set)
    areas: set[str] = field(default_factory=set)
    records_by_area: Counter[str] = field(default_factory=Counter)
    records_by_year: Counter[tuple[int, str]] = field(default_factory=Counter)
    nhs_number: str = ""

    def groups(self) -> dict[str, set[str]]:
        out = {}
        if self.victim >= 2:
            out["repeat_victims"] = self.incident_areas
        if self.perpetrator >= 2:
            out["repeat_perpetrators"] = self.incident_areas
        if self.victim and self.perpetrator:
            out["role_switchers"] = self.incident_areas
        if len(self.areas) >= 2:
            out["movers"] = self.areas
        return out


def served(partnership: Partnership) -> Iterator[tuple[str, str, PersonEntry]]:
    for agency, node in partnership.nodes.items():
        for entry in node.servicer.dataset.persons.values():
            yield agency, node.servicer.dataset.area, entry


def truth(partnership: Partnership, world: LondonWorld, start: date, end: date) -> dict[str, Truth]:
    """Per person (by NHS number, found from name and date of birth where an agency holds none)."""
    by_name = {(normalise_name(p.given_name), normalise_name(p.family_name), p.date_of_birth): p.nhs_number
               for p in world.people}
    by_name |= {(normalise_name(m.given_name), normalise_name(m.family_name), date.fromisoformat(m.date_of_birth)):
                m.nhs_number for m in world.cast}
    people: dict[str, Truth] = {}
    for _, area, entry in served(partnership):
        key = entry.nhs_number or by_name[(normalise_name(entry.given_name), normalise_name(entry.family_name),
                                           entry.date_of_birth)]
        person = people.setdefault(key, Truth(nhs_number=key))
        for record in entry.records:
            if record.category.split(".")[1] in PROTECTED or not start <= record.occurred_at.date() <= end:
                continue
            where = entry.areas.get(record.record_id, area)
            part = entry.roles.get(record.record_id, "")
            person.records_by_year[record.occurred_at.year, where] += 1
            person.records_by_area[where] += 1  # "" for an agency that says nothing of where (seeded asc)
            if where:
                person.areas.add(where)
            if part and where:
                person.incident_areas.add(where)
                person.victim += part == "victim"
                person.perpetrator += part == "perpetrator"
    return people


async def test_the_picture_counts_each_borough_and_links_people_across_agencies_by_token_only(
        tmp_path: Path, london: LondonWorld) -> None:
    async with boroughs(tmp_path, london) as (partnership, stub):
        with structlog.testing.capture_logs() as captured:
            response = await stub.GetPartnershipPicture(analysis_pb.GetPartnershipPictureRequest(
                purpose="strategic_safeguarding_analysis", legal_basis="dpa_2018_sch1_para4",
                agreement=PAN_LONDON_ANALYSIS_AGREEMENT, case_reference="LONDON-BOARD-2026",
                period_start=PERIOD[0].isoformat(), period_end=PERIOD[1].isoformat()), metadata=METADATA, timeout=30)
        assert not [e for e in captured if e.get("event") in {"lookup", "summarise"}]  # counts only, no records
        assert not response.agencies_left_out, response.agencies_left_out
        people = truth(partnership, london, *PERIOD).values()
        areas = list(london.areas)
        by_area = {a: dict.fromkeys(MEASURES, 0) for a in areas}
        total = dict.fromkeys(MEASURES, 0)
        for person in people:
            for measure, where in person.groups().items():
                total[measure] += 1
                for a in where:
                    by_area[a][measure] += 1
        assert total["movers"] >= 5, "the generated world should have people moving between boroughs"
        assert total["repeat_victims"] >= 1
        assert total["role_switchers"] >= 1
        assert [r.area for r in response.areas] == areas
        for measure in MEASURES:
            cells, shown_total = suppress_column([by_area[a][measure] for a in areas], total[measure])
            assert [getattr(r, measure).shown for r in response.areas] == [c.text for c in cells], measure
            assert getattr(response.total, measure).shown == shown_total.text, measure


async def test_one_person_s_boroughs_and_moves_match_their_records(tmp_path: Path, london: LondonWorld) -> None:
    """A person known in several boroughs: the answer's areas and per-area record counts are those of the
    records the nodes hold, from every agency in the partnership that knows them."""
    async with boroughs(tmp_path, london) as (partnership, stub):
        people = truth(partnership, london, date(1900, 1, 1), date(2100, 1, 1))
        identifiers = {p.nhs_number: common_pb.SubjectIdentifiers(
            nhs_number=p.nhs_number, given_name=p.given_name, family_name=p.family_name,
            date_of_birth=p.date_of_birth.isoformat()) for p in london.people}
        mover = max((p for p in people.values()
                     if len(p.areas) >= 2 and p.victim + p.perpetrator and p.nhs_number in identifiers),
                    key=lambda p: (len(p.areas), p.nhs_number))
        response = await stub.DescribePerson(analysis_pb.DescribePersonRequest(
            subject=identifiers[mover.nhs_number], purpose="safeguarding_analysis",
            legal_basis="dpa_2018_sch1_para18", agreement=PAN_LONDON_ANALYSIS_AGREEMENT, case_reference="MASH-L-1"),
            metadata=METADATA, timeout=30)
        assert {a.area: a.records for a in response.areas} == dict(mover.records_by_area)
        assert (response.domestic_abuse.as_victim, response.domestic_abuse.as_perpetrator) == (
            mover.victim, mover.perpetrator)
        years = sorted({y for y, _ in mover.records_by_year})
        assert [(y.year, {a.area: a.records for a in y.areas}) for y in response.years] == [
            (y, {a: n for (yy, a), n in mover.records_by_year.items() if yy == y}) for y in years]
        mains = [min((a for (yy, a) in mover.records_by_year if yy == y),
                     key=lambda a, y=y: (-mover.records_by_year[y, a], a)) for y in years]
        assert [y.main_area for y in response.years] == mains
        assert response.moves == sum(1 for before, after in itertools.pairwise(mains) if before != after)
        for answer in response.agencies:  # a borough agency says which borough it serves; London-wide ones none
            kind, _, area = answer.agency.partition("_")
            expected = area if kind in BOROUGH_KINDS else ""
            assert answer.area == expected, answer.agency
