"""Areas (boroughs) in planning and in the audit: an agency of another area than the requester's is planned
like a non-party (nothing is sent to it) unless the agreement is cross-area; entries name both areas."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_helpers import make_service

from gateway.domain import AgencyContact, AuditKind, DisclosureLevel, SubjectIdentifiers
from gateway.errors import RequestRefused
from gateway.keyring import Keyring
from gateway.policy import PolicyHolder, PolicySnapshot, load_snapshot
from gateway.service.planning import plan_request
from gateway.service.ports import LookupCommand, LookupResult
from gateway.service.query import Caller, QueryCommand
from gateway.testing import FixedClock
from tests.two_boroughs import CAMDEN_AGREEMENT, HUB_CAMDEN, PAN_AGREEMENT, add_two_boroughs, replace_once

CAMDEN_MANAGER = Caller(HUB_CAMDEN, "hub_camden", "manager.camden", "mash_manager")
CHILD = SubjectIdentifiers(nhs_number="9990000018")


def enquiry(agreement: str, request_id: str = "req-area-1") -> QueryCommand:
    return QueryCommand(request_id, CHILD, "s47_enquiry", "children_act_1989_s47", agreement, "CAM-1")


def nobody(agency: str, command: LookupCommand) -> LookupResult:
    return LookupResult(agency, (), AgencyContact(agency))


@pytest.fixture(scope="module")
def boroughs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_two_boroughs(Path(__file__).resolve().parents[3] / "policies",
                            tmp_path_factory.mktemp("areas") / "policies")


@pytest.fixture(scope="module")
def spanning(tmp_path_factory: pytest.TempPathFactory) -> PolicySnapshot:
    """Camden's agreement wrongly listing Hackney's children's social care: `policy check` refuses to activate
    it, and should it ever be served, the gateway still never asks Hackney under it."""
    directory = add_two_boroughs(Path(__file__).resolve().parents[3] / "policies",
                                 tmp_path_factory.mktemp("spanning") / "policies")
    replace_once(directory / "agreements.yaml", "asc, hub, hub_camden]", "asc, hub, hub_camden, csc_hackney]")
    replace_once(directory / "agreements.yaml", "categories: [police, health, csc, education, housing, probation, asc]",
                 "categories: [police, health, csc, education, housing, probation, asc, csc_hackney]")
    return load_snapshot(directory)


def test_another_areas_party_is_planned_as_not_asked(spanning: PolicySnapshot) -> None:
    """Hackney's service is a party, and the lines grant it, yet Camden's hub gets nothing planned from it."""
    assert spanning.decide("mash_manager", "s47_enquiry", "csc_hackney", "csc_hackney.cp_plan").level \
        is DisclosureLevel.FULL
    plans = plan_request(spanning, role="mash_manager", purpose="s47_enquiry", agreement=CAMDEN_AGREEMENT,
                         categories=(), requester="hub_camden")
    by_agency = {p.agency: p for p in plans}
    hackney = by_agency["csc_hackney"]
    assert (hackney.level, hackney.content, hackney.existence, hackney.review) == (DisclosureLevel.NONE, {}, (), {})
    assert hackney.refusal == (f"agreement {CAMDEN_AGREEMENT} is not a cross-area agreement: "
                               "hub_camden (camden) may not ask csc_hackney (hackney) under it")
    assert by_agency["csc"].level is DisclosureLevel.FULL  # its own area
    assert by_agency["police"].level is DisclosureLevel.FULL  # partnership-wide
    assert by_agency["csc"].refusal == by_agency["police"].refusal == ""


@pytest.mark.parametrize("requester", ["hub", "police", "hub_lambeth", ""])
def test_a_requester_without_an_area_is_not_limited_by_area(spanning: PolicySnapshot, requester: str) -> None:
    """A partnership-wide requester, or one not in agencies.yaml (today's behaviour), asks every party."""
    plans = plan_request(spanning, role="mash_manager", purpose="s47_enquiry", agreement=CAMDEN_AGREEMENT,
                         categories=(), requester=requester)
    hackney = next(p for p in plans if p.agency == "csc_hackney")
    assert hackney.level is DisclosureLevel.FULL
    assert hackney.refusal == ""


def test_the_cross_area_agreement_reaches_the_other_borough(boroughs: Path) -> None:
    policy = load_snapshot(boroughs)
    plans = {p.agency: p for p in plan_request(policy, role="mash_manager", purpose="s47_enquiry",
                                               agreement=PAN_AGREEMENT, categories=(), requester="hub_camden")}
    assert plans["csc_hackney"].level is DisclosureLevel.FULL
    assert plans["csc_hackney"].refusal == ""


async def test_camden_asks_hackney_only_under_the_cross_area_agreement_and_the_audit_names_both_areas(
    boroughs: Path, keys: dict[str, Keyring]
) -> None:
    holder = PolicyHolder.from_directory(boroughs, clock=FixedClock())
    service, transport, sink = make_service(holder, keys, nobody)

    await service.query(CAMDEN_MANAGER, enquiry(CAMDEN_AGREEMENT), timeout=5)
    assert "csc_hackney" not in {a for a, _, _ in transport.calls}
    assert {"csc", "police"} <= {a for a, _, _ in transport.calls}

    transport.calls.clear()
    await service.query(CAMDEN_MANAGER, enquiry(PAN_AGREEMENT, "req-area-2"), timeout=5)
    assert {a for a, _, _ in transport.calls} == {"csc", "csc_hackney", "police"}

    answered = [e for e in sink.events if e.kind is AuditKind.DISCLOSURE and e.request_id == "req-area-2"]
    areas = {e.agency: (e.details["requester_area"], e.details["area"]) for e in answered}
    assert areas["csc_hackney"] == ("camden", "hackney")
    assert areas["csc"] == ("camden", "camden")
    assert areas["police"] == ("camden", "")


async def test_a_refusal_names_the_requesting_area(boroughs: Path, keys: dict[str, Keyring]) -> None:
    """Hackney's agreement, cited by Camden's hub, is refused at admission; the refusal says which area asked."""
    holder = PolicyHolder.from_directory(boroughs, clock=FixedClock())
    service, transport, sink = make_service(holder, keys, nobody)
    with pytest.raises(RequestRefused, match="not a party"):
        await service.query(CAMDEN_MANAGER, enquiry("mash-isa-2026-hackney"), timeout=5)
    assert transport.calls == []
    [refusal] = [e for e in sink.events if e.kind is AuditKind.REFUSAL]
    assert refusal.details["requester_area"] == "camden"
    assert "area" not in refusal.details


async def test_without_areas_the_audit_entries_carry_no_area_fields(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """A partnership without areas.yaml logs exactly as before: no area details at all."""
    service, _, sink = make_service(holder, keys, nobody)
    caller = Caller("spiffe://mash.local/agency/hub/system/mash-console", "hub", "manager.1", "mash_manager")
    await service.query(caller, enquiry(CAMDEN_AGREEMENT), timeout=5)
    assert sink.events
    assert all("area" not in e.details and "requester_area" not in e.details for e in sink.events)
