"""The pan-London world: boroughs, residence histories, borough agencies' records where their subject lived,
and the people analysts look for (movers, repeat victims, role switchers)."""

from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise

import pytest

from agency_stubs.cast import JODIE_MERCER
from agency_stubs.london import BOROUGH_KINDS, BOROUGHS, LONDON_WIDE, LondonWorld, borough_ids, build_london


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
    """csc/education/housing once per borough, serving that borough; police/health/probation once, serving all."""
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
