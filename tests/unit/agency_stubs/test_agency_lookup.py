"""Local matching at an agency node: NHS number exactly, else normalised name and date of birth."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from agency_stubs import (
    MATCH_BY_NAME_AND_DATE_OF_BIRTH,
    MATCH_BY_NHS_NUMBER,
    AgencyDataset,
    PersonEntry,
    World,
    make_record,
)
from agency_stubs.cast import JODIE_MERCER, KAI_MERCER, NOAH_FENWICK
from agency_stubs.records import at
from gateway.domain import Record, SubjectIdentifiers

CSC_ALL = ("csc.case", "csc.cp_plan", "csc.referral", "csc.assessment")


def _canary_case(record_id: str = "CSC-CANARY-1") -> Record:
    return make_record("csc.case", record_id, at(date(2026, 10, 1)), "Canary case.", {
        "case_status": "open", "legal_status": "child_protection", "allocated_team": "CANARY-TEAM-7f3a",
        "allocated_worker": "CANARY-WORKER-7f3a", "opened": "2026-10-01",
    })


def test_lookup_by_nhs_number_finds_the_person(world: World) -> None:
    """An NHS number alone matches exactly, by the NHS method."""
    (match,) = world.dataset("csc").lookup(SubjectIdentifiers(nhs_number="999 000 1235"), CSC_ALL)
    assert match.person_ref == KAI_MERCER.person_refs["csc"]
    assert match.method == MATCH_BY_NHS_NUMBER


def test_lookup_by_messy_name_and_date_of_birth_finds_the_person(world: World) -> None:
    """Names and dates written differently still match by name and date of birth."""
    subject = SubjectIdentifiers(given_name="  kai ", family_name="MERCER.", date_of_birth="14/05/2017")
    (match,) = world.dataset("csc").lookup(subject, CSC_ALL)
    assert match.person_ref == KAI_MERCER.person_refs["csc"]
    assert match.method == MATCH_BY_NAME_AND_DATE_OF_BIRTH


def test_a_given_but_different_nhs_number_is_no_match_even_if_names_match(world: World) -> None:
    """A valid NHS number that is not Kai's prevents a match on Kai's name and date of birth."""
    subject = replace(KAI_MERCER.subject(), nhs_number="9434765919")
    assert world.dataset("csc").lookup(subject, CSC_ALL) == []


def test_an_invalid_nhs_number_matches_no_one(world: World) -> None:
    """A malformed NHS number never falls back to name matching."""
    subject = replace(KAI_MERCER.subject(), nhs_number="9990001234")
    assert world.dataset("csc").lookup(subject, CSC_ALL) == []


def test_name_without_date_of_birth_matches_no_one(world: World) -> None:
    """Name alone (or date of birth alone) is not enough to match."""
    assert world.dataset("csc").lookup(SubjectIdentifiers(given_name="Kai", family_name="Mercer"), CSC_ALL) == []
    assert world.dataset("csc").lookup(SubjectIdentifiers(date_of_birth="2017-05-14"), CSC_ALL) == []


def test_lookup_returns_only_requested_categories(world: World) -> None:
    """Only records in the content categories come back; existence categories only set the flag."""
    (match,) = world.dataset("csc").lookup(KAI_MERCER.subject(), ["csc.case"], ["csc.referral"])
    assert {r.category for r in match.records} == {"csc.case"}
    assert match.known_in_existence_categories
    (flag_only,) = world.dataset("csc").lookup(KAI_MERCER.subject(), [], ["csc.referral"])
    assert flag_only.records == ()
    assert flag_only.known_in_existence_categories


def test_person_with_nothing_in_the_asked_categories_is_not_returned(world: World) -> None:
    """A known person without records in the asked categories is not revealed as known."""
    assert world.dataset("csc").lookup(KAI_MERCER.subject(), ["csc.cp_plan"], ["csc.cp_plan"]) == []


def test_unknown_categories_are_rejected(world: World) -> None:
    """Asking a node for a category it does not hold raises ValueError naming it."""
    with pytest.raises(ValueError, match=r"police\.intelligence"):
        world.dataset("csc").lookup(KAI_MERCER.subject(), ["csc.case", "police.intelligence"])


def test_name_and_date_of_birth_match_where_the_agency_holds_no_nhs_number() -> None:
    """Where the agency recorded no NHS number, a subject's NHS number does not stop a name match."""
    entry = PersonEntry("HSG-1", "Jodie", "Mercer", date(1993, 8, 2), nhs_number="", records=(
        make_record("housing.arrears", "HSG-RA-1", at(date(2026, 1, 1)), "Arrears.",
                    {"arrears_band": "under 500", "since": "2026-01-01"}),
    ))
    ds = AgencyDataset("housing", [entry])
    (match,) = ds.lookup(JODIE_MERCER.subject(), ["housing.arrears"])
    assert match.method == MATCH_BY_NAME_AND_DATE_OF_BIRTH


def test_generated_people_are_found_by_either_route(world: World) -> None:
    """Every person an agency holds with an NHS number is found by it, and every person by name and date."""
    ds = world.dataset("education")
    cats = [s.category for s in ds.catalogue]
    for entry in list(ds.persons.values())[:200]:
        by_name = ds.lookup(SubjectIdentifiers(given_name=entry.given_name, family_name=entry.family_name,
                                               date_of_birth=entry.date_of_birth.isoformat()), cats)
        assert entry.person_ref in {m.person_ref for m in by_name}
        if entry.nhs_number:
            (by_nhs,) = ds.lookup(SubjectIdentifiers(nhs_number=entry.nhs_number), cats)
            assert by_nhs.person_ref == entry.person_ref


def test_planted_records_appear_in_a_copy_only(world: World) -> None:
    """with_extra_records adds records to a copy for a person_ref, leaving the original dataset unchanged."""
    csc = world.dataset("csc")
    planted = csc.with_extra_records(KAI_MERCER.person_refs["csc"], [_canary_case()])
    (match,) = planted.lookup(KAI_MERCER.subject(), ["csc.case"])
    assert "CSC-CANARY-1" in {r.record_id for r in match.records}
    (original,) = csc.lookup(KAI_MERCER.subject(), ["csc.case"])
    assert "CSC-CANARY-1" not in {r.record_id for r in original.records}


def test_planting_for_a_cast_member_unknown_to_the_agency_adds_them(world: World) -> None:
    """A cast member the agency did not know becomes known, with the planted records only."""
    csc = world.dataset("csc")
    assert csc.lookup(NOAH_FENWICK.subject(), CSC_ALL) == []
    planted = csc.with_extra_records(NOAH_FENWICK, [_canary_case("CSC-CANARY-2")])
    (match,) = planted.lookup(NOAH_FENWICK.subject(), CSC_ALL)
    assert [r.record_id for r in match.records] == ["CSC-CANARY-2"]


def test_planting_records_of_another_agency_or_unknown_person_fails(world: World) -> None:
    """Records must belong to the dataset's agency, and a person_ref must exist."""
    with pytest.raises(ValueError, match="belongs to 'csc'"):
        world.dataset("police").with_extra_records(KAI_MERCER, [_canary_case()])
    with pytest.raises(KeyError, match="no person"):
        world.dataset("csc").with_extra_records("CSC-NOBODY", [_canary_case()])
