"""Referral screening without a network: how children's social care's answer becomes a route."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from service_helpers import make_service

from agency_stubs import make_record
from gateway.domain import AgencyContact, AuditKind, SubjectIdentifiers
from gateway.errors import RequestRefused
from gateway.keyring import Keyring
from gateway.policy import PolicyHolder
from gateway.service.ports import LookupCommand, LookupResult, PersonMatch
from gateway.service.query import Caller, QueryCommand, ScreenResult
from gateway.testing import FixedClock

MANAGER = Caller("spiffe://mash.local/agency/hub/system/mash-console", "hub", "m.1", "mash_manager")
BY_NAME = SubjectIdentifiers(given_name="Kai", family_name="Mercer", date_of_birth="2017-05-14")
SCREENING = QueryCommand("req-s", BY_NAME, "safeguarding_screening", "dpa_2018_sch1_para18", "mash-isa-2026",
                         "MASH-1")


def open_case(record_id: str, team: str):  # type: ignore[no-untyped-def]
    values = {"case_status": "open", "legal_status": "child_in_need", "allocated_team": team,
              "allocated_worker": "S. Okafor", "opened": "2026-01-05"}
    return make_record("csc.case", record_id, datetime(2026, 1, 5, tzinfo=UTC), "Open case.", values)


async def test_two_children_with_open_cases_matching_by_name_are_withheld_with_the_contact(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """Two name-and-date-of-birth matches with open cases: WITHHELD with the contact, never CLOSED or OPEN."""
    desk = AgencyContact("csc", team="Front door")

    def answer(agency: str, command: LookupCommand) -> LookupResult:
        return LookupResult(agency, (
            PersonMatch("C1", "name_and_date_of_birth", (open_case("C-1", "Team 1"),), False),
            PersonMatch("C2", "name_and_date_of_birth", (open_case("C-2", "Team 2"),), False),
        ), desk)

    service, _, sink = make_service(holder, keys, answer)
    outcome = await service.screen(MANAGER, SCREENING, timeout=5)
    assert outcome.result is ScreenResult.WITHHELD
    assert outcome.contact == desk
    assert (outcome.case_status, outcome.allocated_team, outcome.allocated_worker) == ("", "", "")
    assert "several people" in outcome.detail
    (event,) = sink.events
    assert (event.kind, event.level, event.manifest) == (AuditKind.DISCLOSURE, "EXISTS", ())


async def test_one_match_with_an_open_case_is_still_open(holder: PolicyHolder, keys: dict[str, Keyring]) -> None:
    """The ambiguity rule does not touch a single match: one open case is OPEN with its team."""
    def answer(agency: str, command: LookupCommand) -> LookupResult:
        return LookupResult(agency, (PersonMatch("C1", "name_and_date_of_birth", (open_case("C-1", "Team 1"),),
                                                 False),), AgencyContact("csc"))

    service, transport, _ = make_service(holder, keys, answer)
    outcome = await service.screen(MANAGER, SCREENING, timeout=5)
    assert (outcome.result, outcome.allocated_team) == (ScreenResult.OPEN, "Team 1")
    (call,) = transport.calls
    assert (call[0], call[1].categories) == ("csc", ("csc.case",))


async def test_screening_under_an_agreement_without_case_records_names_the_agreement_field(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """ScreenReferral has no categories field: a refusal for the case category points at `agreement`."""
    def answer(agency: str, command: LookupCommand) -> LookupResult:
        raise AssertionError("nobody may be asked")

    service, _, sink = make_service(holder, keys, answer)
    housing = QueryCommand("req-h", BY_NAME, "housing_management", "uk_gdpr_6_1_e", "housing-partnership-2026",
                           "MASH-1")
    with pytest.raises(RequestRefused) as caught:
        await service.screen(MANAGER, housing, timeout=5)
    assert (caught.value.code, caught.value.field) == ("AGREEMENT_CATEGORY", "agreement")
    assert [(e.kind, e.status) for e in sink.events] == [(AuditKind.REFUSAL, "PERMISSION_DENIED")]


async def test_screening_without_an_open_case_category_is_refused_and_asks_no_agency(
    policy_dir: Path, tmp_path: Path, keys: dict[str, Keyring]
) -> None:
    """A policy that marks no category for the children's open-case check gets a clear refusal, not a guess."""
    copy = tmp_path / "policies"
    shutil.copytree(policy_dir, copy)
    categories = copy / "vocabulary" / "record_categories.yaml"
    text = categories.read_text()
    assert "    open_cases: child\n" in text
    categories.write_text(text.replace("    open_cases: child\n", ""))
    (copy / "workflow.yaml").unlink()  # whose children's MASH would need the check (a policy check error)
    shutil.rmtree(copy / "tests" / "workflow")
    holder = PolicyHolder.from_directory(copy, clock=FixedClock())
    service, transport, sink = make_service(holder, keys, lambda agency, command: LookupResult(agency, ()))
    with pytest.raises(RequestRefused) as refused:
        await service.screen(MANAGER, SCREENING, timeout=5)
    assert refused.value.code == "SCREENING_NOT_CONFIGURED"
    assert transport.calls == []
    assert [e.kind for e in sink.events] == [AuditKind.REFUSAL]
