"""The generated world: deterministic, realistic in shape, and faithful to the catalogue."""

from __future__ import annotations

import time
from collections import Counter

from agency_stubs import CATEGORIES, World, build_world
from agency_stubs.cast import CAST, DEAN_ASHBY, JODIE_MERCER, KAI_MERCER
from agency_stubs.catalogue import SIMULATED_AGENCIES
from gateway.linkage import is_valid_nhs_number, normalise_postcode


def test_same_seed_gives_the_same_world() -> None:
    """Two worlds built from one seed have the same digest; another seed gives a different world."""
    assert build_world(seed=7, people=300).digest() == build_world(seed=7, people=300).digest()
    assert build_world(seed=7, people=300).digest() != build_world(seed=8, people=300).digest()


def test_default_world_builds_well_under_two_seconds() -> None:
    """Generating the default 2,000-person world takes well under 2 s of CPU time."""
    # CPU time of this process, not wall-clock time, so other work on a shared machine cannot fail it.
    started = time.process_time()
    built = build_world()
    assert time.process_time() - started < 1.5
    assert len(built.people) >= 2000


def test_every_person_has_a_valid_unique_nhs_number_unlike_the_cast(world: World) -> None:
    """Generated NHS numbers pass the check digit, are unique, and never equal a cast member's."""
    numbers = [p.nhs_number for p in world.people]
    assert all(is_valid_nhs_number(n) for n in numbers)
    assert len(set(numbers)) == len(numbers)
    assert not {m.nhs_number for m in CAST} & set(numbers)
    assert all(is_valid_nhs_number(m.nhs_number) for m in CAST)


def test_people_have_plausible_identifiers_and_households(world: World) -> None:
    """Postcodes are canonical UK postcodes, dates of birth are in the past, and households have members."""
    for p in world.people:
        assert normalise_postcode(p.postcode) == p.postcode
        assert p.date_of_birth < world.as_of
        assert p.given_name
        assert p.family_name
    assert all(h.adults for h in world.households)
    assert sum(len(h.members) for h in world.households) == len(world.people)
    assert any(len(h.adults) == 2 and h.children for h in world.households)


def test_every_record_has_exactly_its_categorys_fields(world: World) -> None:
    """Each record's type, kind, field names, field categories and order match the catalogue; summaries exist."""
    for agency, ds in world.datasets.items():
        assert ds.agency == agency
        for record in ds.records():
            spec = CATEGORIES[record.category]
            assert record.agency == agency == spec.agency
            assert record.record_type == spec.record_type
            assert record.kind is spec.kind
            assert tuple((f.name, f.category) for f in record.fields) == spec.fields, record.record_id
            assert record.summary
            assert record.occurred_at.tzinfo is not None
            assert record.occurred_at.date() <= world.as_of


def test_every_record_category_is_populated_by_generation(world: World) -> None:
    """The generated population alone (cast aside) has records in every category of the catalogue."""
    generated = Counter(
        r.category for ds in world.datasets.values() for r in ds.records() if "-C0" not in r.record_id
    )
    assert {c for c in CATEGORIES if generated[c] == 0} == set()


def test_agencies_know_realistic_shares_of_the_population(world: World) -> None:
    """Health knows nearly everyone; police, csc and probation know a minority; nobody knows everyone."""
    share = {a: len(world.dataset(a)) / len(world.people) for a in SIMULATED_AGENCIES}
    assert share["health"] > 0.9
    assert share["police"] < 0.25
    assert share["csc"] < 0.15
    assert share["probation"] < 0.05
    assert all(0 < s < 1 for s in share.values())


def test_police_intelligence_carries_3x5x2_codes_some_invalid(world: World) -> None:
    """Intelligence is mostly P or C; every C carries conditions; some items have a missing or invalid code."""
    intel = [r for r in world.dataset("police").records() if r.category == "police.intelligence"]
    codes = Counter(next(f.value for f in r.fields if f.name == "handling_code") for r in intel)
    assert codes["P"] + codes["C"] > 0.8 * len(intel)
    assert sum(n for code, n in codes.items() if code not in ("P", "C")) >= 1
    for r in intel:
        values = {f.name: f.value for f in r.fields}
        assert (values["handling_code"] == "C") == bool(values["conditions"])
        grading = values["grading"]
        assert grading[0] in "ABC"
        assert grading[1] in "12345"


def test_records_are_linked_across_a_household(world: World) -> None:
    """A domestic-abuse incident with a child present is held on the victim, perpetrator and children."""
    holders: dict[str, int] = Counter()
    for entry in world.dataset("police").persons.values():
        for r in entry.records:
            if r.category == "police.domestic_abuse":
                holders[r.record_id] += 1
    assert max(holders.values()) >= 3
    assert min(holders.values()) >= 2


def test_with_dataset_replaces_one_agency_only(world: World) -> None:
    """World.with_dataset swaps one agency's dataset and leaves the original world unchanged."""
    smaller = build_world(seed=3, people=50)
    changed = world.with_dataset(smaller.dataset("csc"))
    assert changed.dataset("csc") is smaller.dataset("csc")
    assert changed.dataset("police") is world.dataset("police")
    assert world.dataset("csc") is not smaller.dataset("csc")


_NEVER_IN_SUMMARY = frozenset({
    "person.address", "person.postcode", "person.phone", "household.member", "third_party.identity",
    "service.name", "location.protected", "record.detail", "police.handling_conditions", "health.clinical",
    "education.school",
})


def test_summaries_never_repeat_identifying_or_withheld_field_values(world: World) -> None:
    """A summary reaches operational staff, so it never contains names, places, services or narrative."""
    by_given: dict[str, set[str]] = {}
    for given, family in [(p.given_name, p.family_name) for p in world.people] + [
        (m.given_name, m.family_name) for m in CAST
    ]:
        by_given.setdefault(given.lower(), set()).add(f"{given} {family}".lower())
    for ds in world.datasets.values():
        for record in ds.records():
            summary = record.summary.lower()
            for f in record.fields:
                if f.category in _NEVER_IN_SUMMARY and len(f.value) >= 4:
                    assert f.value.lower() not in summary, (record.record_id, f.name)
            for word in set(summary.replace(".", " ").replace(";", " ").split()):
                assert not any(name in summary for name in by_given.get(word, ())), record.record_id


def test_domestic_abuse_records_give_each_adult_their_part(world: World) -> None:
    """Every domestic-abuse incident names exactly one victim and one perpetrator (two different people in
    the police dataset); children present have no part; other records give no part."""
    police = world.dataset("police")
    parts: dict[str, list[str]] = {}
    for entry in police.persons.values():
        for record_id, role in entry.roles.items():
            assert role in ("victim", "perpetrator"), (entry.person_ref, record_id, role)
            record = next((r for r in entry.records if r.record_id == record_id), None)
            assert record is not None, f"{entry.person_ref} has a part in {record_id} but does not hold it"
            assert record.category == "police.domestic_abuse", record_id
            parts.setdefault(record_id, []).append(role)
    incidents = {r.record_id for r in police.records() if r.category == "police.domestic_abuse"}
    assert set(parts) == incidents, "every domestic-abuse incident should name its victim and perpetrator"
    assert all(sorted(p) == ["perpetrator", "victim"] for p in parts.values()), \
        {k: v for k, v in parts.items() if sorted(v) != ["perpetrator", "victim"]}
    for ds in world.datasets.values():
        if ds.agency != "police":
            assert not any(e.roles for e in ds.persons.values()), f"{ds.agency} gives parts in records"


def test_generated_world_has_repeat_domestic_abuse_victims_and_the_cast_parts(world: World) -> None:
    """Some generated victims have two or more incidents; Jodie Mercer is the victim and Dean Ashby the
    perpetrator of both cast incidents."""
    police = world.dataset("police")
    victim_counts = Counter(sum(1 for r in e.roles.values() if r == "victim") for e in police.persons.values())
    assert sum(n for count, n in victim_counts.items() if count >= 2) > 0
    jodie = police.persons[JODIE_MERCER.person_refs["police"]]
    dean = police.persons[DEAN_ASHBY.person_refs["police"]]
    kai = police.persons[KAI_MERCER.person_refs["police"]]
    assert dict(jodie.roles) == {"POL-DA-C0001": "victim", "POL-DA-C0002": "victim"}
    assert dict(dean.roles) == {"POL-DA-C0001": "perpetrator", "POL-DA-C0002": "perpetrator"}
    assert dict(kai.roles) == {}
