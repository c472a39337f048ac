"""A 32-borough London partnership on one machine: a generated policy, 132 agency nodes (each its own endpoint
and certificate, sharing this process), the real gateway over mTLS with the locator on, every node enrolled.

Lookups are counted at every node (each node logs every lookup it answers): a question reaches only the
nodes whose people match its subject. A borough's MASH asking under its own borough agreement reaches no
other borough's agencies; under the pan-London agreement it does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import grpc
import pytest
import pytest_asyncio
import structlog

from agency_stubs import make_record
from agency_stubs.dataset import AgencyDataset, PersonEntry
from agency_stubs.locator_enrolment import LocatorEnrolment, person_inputs, settle
from agency_stubs.london import BOROUGH_KINDS, LondonWorld, as_agency, build_london
from agency_stubs.london_policy import PAN_LONDON_AGREEMENT, GeneratedPartnership, generate_partnership
from gateway.audit import decode_entry
from gateway.demo.partnership import HubClient, Partnership
from gateway.domain import AuditEvent
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb

BOROUGHS = 32
PEOPLE_PER_BOROUGH = 100
MATCH = hub_pb.ANSWER_STATUS_MATCH
S47: dict[str, Any] = {"purpose": "s47_enquiry", "legal_basis": "children_act_1989_s47"}

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class London:
    partnership: Partnership
    world: LondonWorld
    generated: GeneratedPartnership
    enrolments: dict[str, LocatorEnrolment]

    def hub(self, area: str) -> HubClient:
        return self.partnership.client(f"hub_{area}", "mash-console", user=f"manager.{area}", role="mash_manager")

    def holders(self, entry: PersonEntry) -> set[str]:
        """Every node holding someone with `entry`'s NHS number or name and birth date (what enrolment indexes)."""
        wanted = set(person_inputs(entry))
        return {agency for agency, node in self.partnership.nodes.items()
                if any(wanted & set(person_inputs(e)) for e in node.servicer.dataset.persons.values())}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def london(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[London]:
    tmp = tmp_path_factory.mktemp("london")
    generated = generate_partnership(tmp / "policies", BOROUGHS, pki=tmp / "state" / "pki")
    world = build_london(boroughs=BOROUGHS, people_per_borough=PEOPLE_PER_BOROUGH)
    async with Partnership(tmp / "state", generated.policy_dir, world=world) as partnership:
        # csc, education, housing and yos per borough; police, health, probation, asc London-wide
        assert len(partnership.nodes) == 4 * BOROUGHS + 4
        enrolments = await partnership.enrol_in_locator()
        yield London(partnership, world, generated, enrolments)


def asked(captured: Iterable[MutableMapping[str, Any]]) -> set[str]:
    """The agencies whose node answered (or rejected) a lookup."""
    return {str(e["agency"]) for e in captured if e.get("event") in {"lookup", "lookup_rejected"}}


def child_known_in_two_boroughs(world: LondonWorld) -> tuple[PersonEntry, list[str]]:
    """A child whom two boroughs' agencies hold (social care in both if there is one such), as the MASH would
    identify them, and those two agencies."""
    known = [(p, list(agencies)) for p, agencies in world.known_in_several_boroughs() if len(agencies) == 2]
    assert known, "the generated world has no child known in two boroughs"
    person, agencies = next(((p, a) for p, a in known if all(x.startswith("csc_") for x in a)), known[0])
    return PersonEntry("", person.given_name, person.family_name, person.date_of_birth, person.nhs_number), agencies


def area(agency: str) -> str:
    return next(agency[len(kind) + 1:] for kind in (*BOROUGH_KINDS, "hub") if agency.startswith(f"{kind}_"))


def subject_of(entry: PersonEntry, *, nhs: bool = True) -> dict[str, str]:
    return {"nhs_number": entry.nhs_number if nhs else "", "given_name": entry.given_name,
            "family_name": entry.family_name, "date_of_birth": entry.date_of_birth.isoformat()}


async def test_a_child_known_in_two_boroughs_is_asked_of_their_nodes_only(london: London) -> None:
    """Under the pan-London agreement, the question about a child known in two boroughs reaches
    exactly the nodes that hold them (counted at all 132 nodes); both boroughs answer with records."""
    child, boroughs = child_known_in_two_boroughs(london.world)
    holders = london.holders(child)
    assert set(boroughs) <= holders
    assert len(holders) < 10, holders
    with structlog.testing.capture_logs() as captured:
        response = await london.hub(area(boroughs[0])).query(
            subject=subject_of(child), agreement=PAN_LONDON_AGREEMENT, case_reference="MASH-LDN-0001", **S47)
    assert asked(captured) == holders
    matched = {a.agency for a in response.answers if a.status == MATCH}
    assert set(boroughs) <= matched
    assert all(a.records for a in response.answers if a.agency in boroughs)
    for answer in response.answers:
        if answer.agency in boroughs:
            entry = await audit_event(london, answer.receipt.entry_index)
            assert (entry.details["requester_area"], entry.details["area"]) == (area(boroughs[0]), area(answer.agency))


async def test_a_borough_agreement_does_not_reach_another_boroughs_agencies(london: London) -> None:
    """Asked under its own borough agreement, a borough's MASH reaches its own agencies and the London-wide
    ones that hold the child, never the other borough's: that node hears nothing and nothing is released."""
    child, (home, other) = child_known_in_two_boroughs(london.world)
    mash = area(home)
    with structlog.testing.capture_logs() as captured:
        response = await london.hub(mash).query(
            subject=subject_of(child), agreement=london.generated.agreement(mash), case_reference="MASH-LDN-0002",
            **S47)
    reached = asked(captured)
    assert home in reached
    assert other not in reached
    assert all(a.endswith(f"_{mash}") or a in ("police", "health", "probation", "asc") for a in reached), reached
    answer = next(a for a in response.answers if a.agency == other)
    assert (answer.status, answer.level) == (hub_pb.ANSWER_STATUS_WITHHELD, common_pb.DISCLOSURE_LEVEL_NONE)
    assert not answer.records
    entry = await audit_event(london, answer.receipt.entry_index)
    assert entry.details["requester_area"] == mash
    assert entry.details["area"] == area(other)


async def audit_event(london: London, index: int) -> AuditEvent:
    assert london.partnership.gateway is not None
    rows = await london.partnership.gateway.deps.audit.store.scan(index, 1)
    return decode_entry(rows[0].data).event


async def _plant(london: London, agency: str, entries: list[PersonEntry]) -> None:
    """Add people to a borough agency's node and wait until its enrolment has caught up."""
    node = london.partnership.nodes[agency]
    held = node.servicer.dataset
    kind = agency.split("_", 1)[0]
    planted = as_agency(AgencyDataset(kind, entries), agency, held.area)
    node.replace_dataset(AgencyDataset(agency, [*held.persons.values(), *planted.persons.values()],
                                       mash_contact=held.mash_contact, catalogue=held.catalogue, area=held.area))
    await settle(london.enrolments[agency])


def _referral(ref: str, given: str, family: str, born: date) -> PersonEntry:
    record = make_record("csc.referral", f"{ref}-R", datetime(2026, 6, 1, tzinfo=UTC), "Referral received.",
                         {"referral_date": "2026-06-01", "referrer": "A neighbour", "concern": "Left home alone.",
                          "outcome": "Accepted for assessment"})
    return PersonEntry(ref, given, family, born, records=(record,))


def _tenancy(ref: str, given: str, family: str, born: date) -> PersonEntry:
    record = make_record("housing.arrears", f"{ref}-R", datetime(2026, 2, 1, tzinfo=UTC), "In rent arrears.",
                         {"arrears_band": "under 500", "since": "2026-02-01"})
    return PersonEntry(ref, given, family, born, records=(record,))


async def test_name_and_birth_date_tolerate_case_accents_spaces_and_hyphens(london: London) -> None:
    """Two boroughs record one person differently ("Zoë Ann-Marie O'Neil-Brown", "ZOE ANN MARIE ONEIL BROWN");
    asked without an NHS number, in yet another spelling and date format, the locator routes the question to
    both nodes and no other, and both answer with their records."""
    born = date(2015, 4, 12)
    await _plant(london, "csc_camden", [_referral("CSC-LDN-ZOE", "Zoë Ann-Marie", "O'Neil-Brown", born)])
    await _plant(london, "housing_croydon", [_tenancy("HSG-LDN-ZOE", "ZOE ANN MARIE", "ONEIL BROWN", born)])
    variant = {"given_name": "  zoe  ann - marie ", "family_name": "O’NEIL brown", "date_of_birth": "12/04/2015"}
    with structlog.testing.capture_logs() as captured:
        response = await london.hub("camden").query(subject=variant, agreement=PAN_LONDON_AGREEMENT,
                                                    case_reference="MASH-LDN-0003", **S47)
    assert asked(captured) == {"csc_camden", "housing_croydon"}
    matched = {a.agency: a for a in response.answers if a.status == MATCH}
    assert set(matched) == {"csc_camden", "housing_croydon"}
    assert all(a.records for a in matched.values())


async def test_an_ambiguous_name_and_birth_date_stays_ambiguous(london: London) -> None:
    """Two people in one borough share a normalised name and birth date and have no NHS number: the node is
    asked, answers "known" at EXISTS and releases neither's records."""
    born = date(2016, 1, 30)
    await _plant(london, "csc_hackney", [_referral("CSC-LDN-TWIN-1", "Ruby-Mae", "Kowalski", born),
                                         _referral("CSC-LDN-TWIN-2", "RUBY MAE", "KOWALSKI", born)])
    with structlog.testing.capture_logs() as captured:
        response = await london.hub("hackney").query(
            subject={"given_name": "Ruby Mae", "family_name": "Kowalski", "date_of_birth": "2016-01-30"},
            agreement=PAN_LONDON_AGREEMENT, case_reference="MASH-LDN-0004", **S47)
    assert asked(captured) == {"csc_hackney"}
    csc = next(a for a in response.answers if a.agency == "csc_hackney")
    assert (csc.status, csc.level) == (MATCH, common_pb.DISCLOSURE_LEVEL_EXISTS)
    assert not csc.records
    assert "2 people match these identifiers" in csc.detail


async def test_the_pan_london_agreement_refuses_purposes_it_does_not_name(london: London) -> None:
    """Early help is not a cross-borough purpose: under the pan-London agreement it is refused outright, with
    the reason, and no node hears of the question."""
    child, _ = child_known_in_two_boroughs(london.world)
    with structlog.testing.capture_logs() as captured, pytest.raises(grpc.aio.AioRpcError) as refused:
        await london.hub("camden").query(subject=subject_of(child), purpose="early_help",
                                         legal_basis="children_act_2004_s10", agreement=PAN_LONDON_AGREEMENT,
                                         case_reference="MASH-LDN-0005")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"agreement '{PAN_LONDON_AGREEMENT}' does not cover purpose 'early_help'" in (refused.value.details() or "")
    assert asked(captured) == set()


async def test_a_young_persons_youth_offending_service_answers_with_its_records_and_contact(london: London) -> None:
    """A young person known to one borough's youth offending service: the question reaches that node (and the
    others that hold them), which answers with its court order or assessment and its borough's MASH contact."""
    yos, entry = next((a, e) for a in london.world.borough_agencies("yos")
                      for e in london.world.dataset(a).persons.values() if e.nhs_number)
    with structlog.testing.capture_logs() as captured:
        response = await london.hub(area(yos)).query(
            subject=subject_of(entry), agreement=PAN_LONDON_AGREEMENT, case_reference="MASH-LDN-0006", **S47)
    assert asked(captured) == london.holders(entry)
    answer = next(a for a in response.answers if a.agency == yos)
    assert answer.status == MATCH
    assert answer.records, answer.detail
    assert {r.category for r in answer.records} <= {f"{yos}.court_order", f"{yos}.assessment"}
    assert (answer.contact.agency, answer.contact.phone) == (yos, "020 7946 0108")
