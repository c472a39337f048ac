"""The fixed cast appears across agencies with the story the demo tells."""

from __future__ import annotations

from agency_stubs import World
from agency_stubs.cast import (
    CAST,
    DEAN_ASHBY,
    JODIE_MERCER,
    KAI_MERCER,
    KAI_REFERRER,
    NOAH_FENWICK,
    REFUGE_ADDRESS,
    RUBY_MERCER,
    CastMember,
)
from agency_stubs.catalogue import SIMULATED_AGENCIES
from gateway.domain import Record

ALL = {a: () for a in SIMULATED_AGENCIES}


def _records(world: World, member: CastMember, agency: str, category: str) -> list[dict[str, str]]:
    entry = world.dataset(agency).persons[member.person_refs[agency]]
    return [_values(r) for r in entry.records if r.category == category]


def _values(record: Record) -> dict[str, str]:
    return {f.name: f.value for f in record.fields}


def test_cast_members_are_held_exactly_by_their_agencies(world: World) -> None:
    """Each cast member is matched by NHS number at the agencies listed for them and nowhere else."""
    for member in CAST:
        for agency in SIMULATED_AGENCIES:
            ds = world.dataset(agency)
            matches = ds.lookup(member.subject(), [s.category for s in ds.catalogue])
            if agency in member.agencies:
                assert [m.person_ref for m in matches] == [member.person_refs[agency]], (member, agency)
            else:
                assert matches == [], (member, agency)
    assert KAI_MERCER.agencies == {"police", "health", "csc", "education"}
    assert "csc" not in NOAH_FENWICK.agencies


def test_kai_is_open_to_childrens_social_care_as_a_child_in_need(world: World) -> None:
    """Kai's csc.case is open, child in need, allocated to Assessment Team 2 and Sam Okafor."""
    (case,) = _records(world, KAI_MERCER, "csc", "csc.case")
    assert case["case_status"] == "open"
    assert case["legal_status"] == "child_in_need"
    assert case["allocated_team"] == "Assessment Team 2"
    assert case["allocated_worker"] == "Sam Okafor"
    (referral,) = _records(world, KAI_MERCER, "csc", "csc.referral")
    assert KAI_REFERRER in referral["referrer"]
    assert "neighbour" in referral["referrer"]


def test_kai_has_injuries_school_and_absence(world: World) -> None:
    """Kai has two A&E attendances with injuries, is on roll at Hollybank Primary and is persistently absent."""
    attendances = _records(world, KAI_MERCER, "health", "health.attendance")
    assert len(attendances) == 2
    assert all(a["injury_type"] not in ("", "none") for a in attendances)
    (enrolment,) = _records(world, KAI_MERCER, "education", "education.enrolment")
    assert "Hollybank Primary" in enrolment["school"]
    assert enrolment["date_of_birth"] == KAI_MERCER.date_of_birth == "2017-05-14"
    assert enrolment["home_address"] == KAI_MERCER.address_line
    assert enrolment["postcode"] == KAI_MERCER.postcode
    (attendance,) = _records(world, KAI_MERCER, "education", "education.attendance")
    assert attendance["attendance_pct"] == "82%"
    assert attendance["persistent_absence"] == "yes"


def test_domestic_abuse_incidents_link_dean_jodie_and_kai(world: World) -> None:
    """Both DASH-high incidents name Dean as perpetrator, have a child present, and are held on all three."""
    ids = {}
    for member in (KAI_MERCER, JODIE_MERCER, DEAN_ASHBY):
        entry = world.dataset("police").persons[member.person_refs["police"]]
        incidents = [r for r in entry.records if r.category == "police.domestic_abuse"]
        ids[member.given_name] = {r.record_id for r in incidents}
        for r in incidents:
            values = _values(r)
            assert values["dash_risk"] == "high"
            assert values["child_present"] == "yes"
            assert "Dean Ashby" in values["perpetrator"]
    assert len(ids["Kai"]) == 2
    assert ids["Kai"] == ids["Jodie"] == ids["Dean"]


def test_dean_has_intelligence_with_p_c_and_invalid_codes(world: World) -> None:
    """Dean's intelligence: one P, one C with conditions, one whose handling code is not valid 3x5x2."""
    intel = _records(world, DEAN_ASHBY, "police", "police.intelligence")
    codes = sorted(i["handling_code"] for i in intel)
    assert codes.count("P") == 1
    assert codes.count("C") == 1
    assert len([c for c in codes if c not in ("P", "C")]) == 1
    (c_item,) = [i for i in intel if i["handling_code"] == "C"]
    assert c_item["conditions"]


def test_dean_is_supervised_at_high_risk_on_licence(world: World) -> None:
    """Dean has probation supervision, RoSH high and licence conditions."""
    assert _records(world, DEAN_ASHBY, "probation", "probation.supervision")
    (risk,) = _records(world, DEAN_ASHBY, "probation", "probation.risk")
    assert risk["rosh_level"] == "high"
    (licence,) = _records(world, DEAN_ASHBY, "probation", "probation.licence")
    assert licence["conditions"]


def test_jodie_has_protected_and_sensitive_health_and_housing_records(world: World) -> None:
    """Jodie has a mental health involvement, a sexual-health attendance and a past refuge placement."""
    assert _records(world, JODIE_MERCER, "health", "health.mental_health")
    assert _records(world, JODIE_MERCER, "health", "health.sexual_health")
    (refuge,) = _records(world, JODIE_MERCER, "housing", "housing.refuge")
    assert refuge["refuge_address"] == REFUGE_ADDRESS
    assert refuge["placement_date"] < "2026-01-01"


def test_ruby_was_not_brought_three_times(world: World) -> None:
    """Ruby (born 2022) has health visiting with a was-not-brought count of 3."""
    assert RUBY_MERCER.date_of_birth.startswith("2022-")
    (hv,) = _records(world, RUBY_MERCER, "health", "health.maternity")
    assert hv["was_not_brought_count"] == "3"


def test_cast_narratives_are_distinctive(world: World) -> None:
    """Phrases the demo searches for occur in the cast's records and nowhere in the generated population."""
    phrases = ("hiding behind the sofa", "grip-pattern bruising", "hiding in the wardrobe", "lock-knife")
    for phrase in phrases:
        holders = {
            r.record_id for ds in world.datasets.values() for r in ds.records()
            if any(phrase in f.value.lower() for f in r.fields)
        }
        assert holders, phrase
        assert all("-C0" in rid for rid in holders), phrase
