"""The pan-London world: boroughs, residence histories, borough agencies' records where their subject lived,
and the people analysts look for (movers, repeat victims, role switchers)."""

from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise

import pytest

from agency_stubs import london as london_module
from agency_stubs.cast import JODIE_MERCER
from agency_stubs.dataset import PersonEntry
from agency_stubs.london import (
    BOROUGH_KINDS,
    BOROUGHS,
    LONDON_WIDE,
    YOUTH_JUSTICE_AGES,
    LondonWorld,
    borough_ids,
    build_london,
)
from agency_stubs.world import _age


@pytest.fixture(scope="module")
def london() -> LondonWorld:
    """The first eleven boroughs (Hackney is the eleventh, so the cast lives there), 150 people in each."""
    return build_london(boroughs=11, people_per_borough=150)


def _pid_by_nhs(world: LondonWorld) -> dict[str, int]:
    return {p.nhs_number: p.pid for p in world.people}


def test_boroughs_are_the_first_n_london_boroughs_in_alphabetical_order() -> None:
    """32 boroughs with snake_case ids in alphabetical order; a count outside 1-32 is refused."""
    assert len(BOROUGHS) == 32
    assert list(BOROUGHS) == sorted(BOROUGHS)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", area) for area in BOROUGHS)
    assert borough_ids(3) == ("barking_and_dagenham", "barnet", "bexley")
    for bad in (0, 33, -1):
        with pytest.raises(ValueError, match="between 1 and 32"):
            borough_ids(bad)


def test_same_seed_gives_the_same_london() -> None:
    """A seed fixes the whole partnership; another seed gives another."""
    assert build_london(7, 3, 100).digest() == build_london(7, 3, 100).digest()
    assert build_london(7, 3, 100).digest() != build_london(8, 3, 100).digest()


def test_every_borough_has_its_own_agencies_and_london_wide_agencies_are_one_node(london: LondonWorld) -> None:
    """csc/education/housing/yos once per borough, serving that borough; police/health/probation once, serving
    all."""
    expected = {f"{k}_{a}" for a in london.areas for k in BOROUGH_KINDS} | set(LONDON_WIDE)
    assert set(london.datasets) == expected
    for area in london.areas:
        for kind in BOROUGH_KINDS:
            ds = london.dataset(f"{kind}_{area}")
            assert ds.area == area
            assert ds.mash_contact.agency == ds.agency
            assert all(r.agency == ds.agency and r.category.startswith(f"{ds.agency}.") for r in ds.records())
    assert all(london.dataset(a).area == "" for a in LONDON_WIDE)


def test_borough_records_are_held_where_their_subject_lived_when_they_were_made(london: LondonWorld) -> None:
    """Each record of a borough agency dates from a stretch of its subject's life in that borough; each record
    of a London-wide agency names that borough in `areas`."""
    pids = _pid_by_nhs(london)
    checked = 0
    for name, ds in london.datasets.items():
        for entry in ds.persons.values():
            pid = pids.get(entry.nhs_number)
            if pid is None:
                continue  # the cast, or an agency that does not hold the NHS number
            for record in entry.records:
                lived = london.area_at(pid, record.occurred_at.date())
                if ds.area:
                    assert lived == ds.area, (name, entry.person_ref, record.record_id)
                else:
                    assert entry.areas[record.record_id] == lived, (name, entry.person_ref, record.record_id)
                checked += 1
    assert checked > 1000


def test_splitting_into_boroughs_loses_and_invents_no_record(london: LondonWorld) -> None:
    """Across its boroughs, each borough kind holds each person's record once, and a record shared by a
    household (a joint tenancy) in one borough only."""
    for kind in BOROUGH_KINDS:
        held = [(a, e.person_ref, r.record_id) for a in london.areas
                for e in london.dataset(f"{kind}_{a}").persons.values() for r in e.records]
        assert held, f"{kind}: no records at all"
        assert len({(ref, rid) for _, ref, rid in held}) == len(held), f"{kind}: a person's record is held twice"
        boroughs: dict[str, set[str]] = {}
        for area, _, record_id in held:
            boroughs.setdefault(record_id, set()).add(area)
        assert all(len(a) == 1 for a in boroughs.values()), f"{kind}: a record is held in two boroughs"


def test_some_people_moved_and_are_known_in_several_boroughs(london: LondonWorld) -> None:
    """About a quarter of households moved borough; some children are known to two boroughs' social care."""
    moved = sum(1 for history in london.residence.values() if len(history) > 1)
    assert 0.1 < moved / len(london.people) < 0.4
    stretches = [pair for history in london.residence.values() for pair in pairwise(history)]
    assert all(a.area != b.area and a.until == b.start for a, b in stretches)
    known = Counter(e.person_ref for a in london.areas for e in london.dataset(f"csc_{a}").persons.values())
    assert any(n >= 2 for n in known.values()), "no child is known to two boroughs' children's social care"
    several = london.known_in_several_boroughs()
    assert several, "no child is known in two boroughs"
    for person, agencies in several:
        assert len({london.dataset(a).area for a in agencies}) >= 2
        assert all(any(e.nhs_number == person.nhs_number for e in london.dataset(a).persons.values())
                   for a in agencies)


def test_repeat_victims_and_people_who_switch_roles_exist(london: LondonWorld) -> None:
    """Police hold repeat domestic-abuse victims and people who are the victim in one incident and the
    perpetrator in another; every incident has exactly one victim and one perpetrator."""
    police = london.dataset("police")
    parts: dict[str, list[str]] = {}
    for entry in police.persons.values():
        for record_id, role in entry.roles.items():
            parts.setdefault(record_id, []).append(role)
    assert all(sorted(p) == ["perpetrator", "victim"] for p in parts.values())
    roles = [Counter(e.roles.values()) for e in police.persons.values()]
    assert sum(1 for c in roles if c["victim"] >= 2) >= 3
    assert sum(1 for c in roles if c["victim"] and c["perpetrator"]) >= 3


def test_the_cast_lives_in_hackney(london: LondonWorld) -> None:
    """The fixed cast is in every world: in London, Hackney's agencies and the London-wide ones hold them."""
    assert london.cast_area == "hackney"
    refs = JODIE_MERCER.person_refs
    assert refs["housing"] in london.dataset("housing_hackney").persons
    jodie = london.dataset("police").persons[refs["police"]]
    assert set(jodie.areas.values()) == {"hackney"}
    assert set(jodie.roles.values()) == {"victim"}


def _pid_of(world: LondonWorld, entry: PersonEntry) -> int:
    """The generated person an entry is about, by name and date of birth (police write family names in capitals)."""
    found = [p.pid for p in world.people if (p.given_name, p.family_name.upper(), p.date_of_birth)
             == (entry.given_name, entry.family_name.upper(), entry.date_of_birth)]
    assert len(found) == 1, f"{entry.person_ref}: {len(found)} generated people match"
    return found[0]


def _young_arrests(world: LondonWorld) -> dict[int, list[tuple[str, str, str]]]:
    """(date, offence, outcome) of each police arrest of a generated person aged 10-17 at the time, by pid."""
    cast = {m.person_refs.get("police") for m in world.cast}
    out: dict[int, list[tuple[str, str, str]]] = {}
    for entry in world.dataset("police").persons.values():
        if entry.person_ref in cast:
            continue
        for record in entry.records:
            if record.category == "police.arrest" and _age(entry.date_of_birth, record.occurred_at.date()) in \
                    YOUTH_JUSTICE_AGES:
                values = {f.name: f.value for f in record.fields}
                out.setdefault(_pid_of(world, entry), []).append(
                    (values["arrest_date"], values["offence"], values["outcome"]))
    return out


def test_young_people_arrested_at_10_to_17_are_known_to_the_youth_offending_service_where_they_lived(
        london: LondonWorld) -> None:
    """Every arrest of someone aged 10-17 at the time is followed by an AssetPlus assessment, and a charge by a
    court order for that offence, held by the youth offending service of the borough they lived in then; the
    service holds nobody else and nothing from before the arrest."""
    arrests = _young_arrests(london)
    assert len(arrests) >= 20, f"only {len(arrests)} young people were arrested: too few to test"
    held: dict[int, list[tuple[str, str, dict[str, str]]]] = {}
    for agency in london.borough_agencies("yos"):
        dataset = london.dataset(agency)
        assert dataset.mash_contact.team == "YOS MASH officer"
        for entry in dataset.persons.values():
            pid = _pid_of(london, entry)
            for record in entry.records:
                day = record.occurred_at.date()
                assert london.area_at(pid, day) == dataset.area, (agency, entry.person_ref, record.record_id)
                held.setdefault(pid, []).append((record.category.split(".", 1)[1], day.isoformat(),
                                                 {f.name: f.value for f in record.fields}))
    assert set(held) == set(arrests), "the youth offending service holds someone not arrested at 10-17, or misses one"
    for pid, records in held.items():
        first_arrest = min(day for day, _, _ in arrests[pid])
        assert all(day >= first_arrest for _, day, _ in records), (pid, records)
        assessments = [r for r in records if r[0] == "assessment"]
        orders = [r for r in records if r[0] == "court_order"]
        assert len(assessments) == len(arrests[pid])
        charged = [offence for _, offence, outcome in arrests[pid] if outcome == "Charged and bailed"]
        assert sorted(fields["offence"] for _, _, fields in orders) == sorted(charged)
    assert any(r[0] == "court_order" for records in held.values() for r in records), "no court order at all"


def test_the_youth_offending_service_leaves_the_rest_of_the_world_as_it_was(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The youth justice records come from a stream of their own: with no new arrests of young people, every
    other agency's dataset is the same, and only the police gain arrests from it."""
    with_arrests = build_london(7, 3, 100)
    monkeypatch.setattr(london_module, "YOUTH_ARRESTS", 0.0)
    without = build_london(7, 3, 100)
    for agency, dataset in with_arrests.datasets.items():
        if agency == "police" or agency.startswith("yos_"):
            continue
        assert dataset.persons == without.dataset(agency).persons, agency
    before, after = without.dataset("police").persons, with_arrests.dataset("police").persons
    assert set(before) <= set(after)
    for ref, entry in before.items():
        assert after[ref].records[:len(entry.records)] == entry.records, ref
        assert all(r.category == "police.arrest" for r in after[ref].records[len(entry.records):]), ref
    added = sum(len(e.records) for e in after.values()) - sum(len(e.records) for e in before.values())
    assert added > 0, "no young person was arrested"
