"""A pan-London partnership from one seed: people living in boroughs over the years, and what each
borough's agencies and the London-wide agencies hold about them.

The population and records come from the same generator as the single-area world (`agency_stubs.world`),
so every record has the catalogue's shape. On top of it, each household has a residence history of one
to three boroughs; a record of a borough agency (children's social care, education, housing, youth
offending) is held by that agency in the borough where its subject lived when it happened (`csc_camden`,
category `csc_camden.case`), and a record of a London-wide agency (police, health, probation) says in
`PersonEntry.areas` the borough where its subject lived then. Some people are victims of several
domestic-abuse incidents, and some are the victim in one and the perpetrator in another. Young people
arrested at 10-17 are known to the youth offending service (an assessment, and a court order if charged).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from types import MappingProxyType

from agency_stubs import names
from agency_stubs.cast import CAST
from agency_stubs.catalogue import SIMULATED_AGENCIES
from agency_stubs.dataset import AgencyDataset, PersonEntry
from agency_stubs.records import at, make_record
from agency_stubs.world import DEFAULT_AS_OF, DEFAULT_SEED, Person, World, _age, _Generator
from agency_stubs.youth_offending import CATALOGUE as YOS_CATALOGUE
from agency_stubs.youth_offending import CATEGORIES as YOS_CATEGORIES
from agency_stubs.youth_offending import MASH_CONTACT as YOS_CONTACT
from agency_stubs.youth_offending import YOS
from gateway.domain import Record

BOROUGHS: Mapping[str, str] = MappingProxyType({
    "barking_and_dagenham": "London Borough of Barking and Dagenham",
    "barnet": "London Borough of Barnet",
    "bexley": "London Borough of Bexley",
    "brent": "London Borough of Brent",
    "bromley": "London Borough of Bromley",
    "camden": "London Borough of Camden",
    "croydon": "London Borough of Croydon",
    "ealing": "London Borough of Ealing",
    "enfield": "London Borough of Enfield",
    "greenwich": "Royal Borough of Greenwich",
    "hackney": "London Borough of Hackney",
    "hammersmith_and_fulham": "London Borough of Hammersmith and Fulham",
    "haringey": "London Borough of Haringey",
    "harrow": "London Borough of Harrow",
    "havering": "London Borough of Havering",
    "hillingdon": "London Borough of Hillingdon",
    "hounslow": "London Borough of Hounslow",
    "islington": "London Borough of Islington",
    "kensington_and_chelsea": "Royal Borough of Kensington and Chelsea",
    "kingston_upon_thames": "Royal Borough of Kingston upon Thames",
    "lambeth": "London Borough of Lambeth",
    "lewisham": "London Borough of Lewisham",
    "merton": "London Borough of Merton",
    "newham": "London Borough of Newham",
    "redbridge": "London Borough of Redbridge",
    "richmond_upon_thames": "London Borough of Richmond upon Thames",
    "southwark": "London Borough of Southwark",
    "sutton": "London Borough of Sutton",
    "tower_hamlets": "London Borough of Tower Hamlets",
    "waltham_forest": "London Borough of Waltham Forest",
    "wandsworth": "London Borough of Wandsworth",
    "westminster": "City of Westminster",
})
"""The 32 London boroughs by area id, in alphabetical order (the City of London has its own police and is not
one of them)."""

BOROUGH_KINDS: tuple[str, ...] = ("csc", "education", "housing", YOS)
"""Agencies each borough runs for itself; their records stay in the borough where they were made."""

YOUTH_JUSTICE_AGES = range(10, 18)
"""The ages at which an arrest is a matter for the youth justice system (the age of criminal responsibility to 17)."""

YOUTH_ARRESTS = 0.1
"""Share of 10-17 year olds arrested in the last two years."""

LONDON_WIDE: tuple[str, ...] = tuple(a for a in SIMULATED_AGENCIES if a not in BOROUGH_KINDS)
"""Agencies serving all of London (police, health, probation): one node each, every borough's records."""

MOVERS = 0.25
"""Share of households that moved borough at least once in the years the records cover."""


def borough_ids(boroughs: int) -> tuple[str, ...]:
    """The first `boroughs` London boroughs in alphabetical order; ValueError outside 1-32."""
    if not 1 <= boroughs <= len(BOROUGHS):
        raise ValueError(f"boroughs must be between 1 and {len(BOROUGHS)}, not {boroughs}")
    return tuple(BOROUGHS)[:boroughs]


def borough_agency(kind: str, area: str) -> str:
    """The agency of kind `kind` in borough `area`: ``csc_camden``; the hub is ``hub_camden``."""
    return f"{kind}_{area}"


def agency_kind(agency: str, areas: Iterable[str]) -> tuple[str, str]:
    """(kind, area) of a borough agency (``csc_camden`` → ("csc", "camden")); (agency, "") for any other."""
    for area in areas:
        if agency.endswith(f"_{area}"):
            return agency[: -len(area) - 1], area
    return agency, ""


@dataclass(frozen=True, slots=True)
class Residence:
    """One stretch of a person's life in one borough: from `start` until the day before `until` (None: still)."""

    area: str
    start: date
    until: date | None = None

    def covers(self, day: date) -> bool:
        return self.start <= day and (self.until is None or day < self.until)


@dataclass(frozen=True)
class LondonWorld(World):
    """A `World` whose datasets are per borough agency (`csc_camden`) and London-wide agency (`police`), with
    each person's residence history (cast members by full name, the generated population by pid)."""

    areas: tuple[str, ...] = ()
    residence: Mapping[int, tuple[Residence, ...]] = field(default_factory=lambda: MappingProxyType({}))
    cast_area: str = ""

    def with_dataset(self, dataset: AgencyDataset) -> LondonWorld:
        return replace(self, datasets=MappingProxyType({**self.datasets, dataset.agency: dataset}), _digest=[])

    def area_at(self, pid: int, day: date) -> str:
        """The borough person `pid` lived in on `day` (the first borough for a day before their history)."""
        return _area_at(self.residence[pid], day)

    def known_in_several_boroughs(self, *, under: int = 18) -> list[tuple[Person, tuple[str, ...]]]:
        """Generated people younger than `under` whom borough agencies of two or more boroughs hold (matched by
        NHS number), each with those agencies, in population order."""
        held: dict[str, list[str]] = {}
        for agency in self.borough_agencies():
            for entry in self.datasets[agency].persons.values():
                if entry.nhs_number:
                    held.setdefault(entry.nhs_number, []).append(agency)
        out = []
        for person in self.people:
            agencies = held.get(person.nhs_number, [])
            if len({self.datasets[a].area for a in agencies}) >= 2 and _age(person.date_of_birth, self.as_of) < under:
                out.append((person, tuple(agencies)))
        return out

    def borough_agencies(self, kind: str | None = None) -> list[str]:
        """Every borough agency (of one kind), borough by borough."""
        kinds = BOROUGH_KINDS if kind is None else (kind,)
        return [borough_agency(k, a) for a in self.areas for k in kinds]


def build_london(seed: int = DEFAULT_SEED, boroughs: int = 3, people_per_borough: int = 300, *,
                 as_of: date = DEFAULT_AS_OF) -> LondonWorld:
    """Generate a London partnership of the first `boroughs` boroughs with about `people_per_borough` people
    living in each; deterministic for a seed. The fixed cast lives in Hackney if it is one of the boroughs,
    else in the first."""
    areas = borough_ids(boroughs)
    if people_per_borough < 0:
        raise ValueError("people_per_borough must not be negative")
    gen = _Generator(random.Random(seed), as_of)
    gen.populate(boroughs * people_per_borough)
    gen.generate_records()
    _switch_roles(gen, random.Random(f"{seed}:switchers"))
    residence = _residences(gen, areas, random.Random(f"{seed}:residence"))
    cast_area = "hackney" if "hackney" in areas else areas[0]
    # Young people's arrests and youth offending records come from a stream of their own: every other agency's
    # records are the same with or without them.
    youth = _YouthJustice(gen, random.Random(f"{seed}:youth_justice"))
    datasets: dict[str, AgencyDataset] = {}
    for agency in (*SIMULATED_AGENCIES, YOS):
        held = youth.dataset() if agency == YOS else gen.dataset(agency)
        generated = youth.known() if agency == YOS else gen.people_known_to(agency)  # pid order, cast last
        pid_of = {e.person_ref: pid for e, pid in zip(held.persons.values(), generated, strict=False)}
        if agency == "police":
            held = youth.with_arrests(held, pid_of)
        entries = list(held.persons.values())

        def area_of(entry: PersonEntry, day: date, pid_of: Mapping[str, int] = pid_of) -> str:
            pid = pid_of.get(entry.person_ref)
            return cast_area if pid is None else _area_at(residence[pid], day)

        if agency in BOROUGH_KINDS:
            datasets.update((d.agency, d) for d in _split(held, areas, area_of).values())
        else:
            datasets[agency] = AgencyDataset(agency, [
                replace(e, areas=MappingProxyType({r.record_id: area_of(e, r.occurred_at.date()) for r in e.records}))
                for e in entries
            ], mash_contact=held.mash_contact)
    return LondonWorld(seed, as_of, tuple(gen.people), tuple(gen.households), MappingProxyType(datasets), CAST,
                       areas=areas, residence=MappingProxyType(residence), cast_area=cast_area)


def _area_at(history: Sequence[Residence], day: date) -> str:
    for stretch in history:
        if stretch.covers(day):
            return stretch.area
    return history[0].area if day < history[0].start else history[-1].area


def _residences(gen: _Generator, areas: Sequence[str], rng: random.Random) -> dict[int, tuple[Residence, ...]]:
    """A residence history per household: most stay in one borough; movers change borough once or twice in
    the last four years, when most records are made, so they are known in several boroughs."""
    out: dict[int, tuple[Residence, ...]] = {}
    start = gen.as_of - timedelta(days=365 * 12)
    for n, hh in enumerate(gen.households):
        home = areas[n % len(areas)] if n < len(areas) else rng.choice(areas)
        history = [Residence(home, start)]
        if len(areas) > 1 and rng.random() < MOVERS:
            moves = sorted(gen.as_of - timedelta(days=30 + rng.randrange(365 * 4))
                           for _ in range(rng.choices((1, 2), (75, 25))[0]))
            for day in moves:
                if day <= history[-1].start:
                    continue
                elsewhere = rng.choice([a for a in areas if a != history[-1].area])
                history[-1] = replace(history[-1], until=day)
                history.append(Residence(elsewhere, day))
        for pid in hh.members:
            out[pid] = tuple(history)
    return out


class _YouthJustice:
    """Arrests of young people (10-17 at the time) and what the youth offending service then holds: an AssetPlus
    assessment after every such arrest, and a court order it supervises when the young person was charged.

    Some children are arrested (`YOUTH_ARRESTS`); an arrest the world already holds of someone then aged 10-17
    counts too. The police hold the new arrests on top of their dataset; the records come from `rng` alone."""

    def __init__(self, gen: _Generator, rng: random.Random) -> None:
        self.gen = gen
        self.rng = rng
        self.arrests: dict[int, list[Record]] = {}
        for pid, records in sorted(gen._records["police"].items()):
            young = [r for r in records if r.category == "police.arrest" and self.young_at(pid, r)]
            if young:
                self.arrests[pid] = young
        self.new_arrests: dict[int, list[Record]] = {}
        for hh in gen.households:
            for pid in hh.children:
                if gen.age(pid) in YOUTH_JUSTICE_AGES and rng.random() < YOUTH_ARRESTS:
                    dob = gen.people[pid].date_of_birth
                    since_tenth = (gen.as_of - dob).days - 365 * 10  # a few days too many: checked below
                    when = gen.as_of - timedelta(days=1 + rng.randrange(max(1, min(365 * 2, since_tenth))))
                    if _age(dob, when) not in YOUTH_JUSTICE_AGES:
                        continue  # ten only today: too young on any day the records cover
                    record = gen.arrest(when, rng.choice(names.YOUTH_OFFENCES), rng)
                    self.new_arrests[pid] = [record]
                    self.arrests.setdefault(pid, []).append(record)
        self.records: dict[int, list[Record]] = {
            pid: [r for arrest in sorted(arrests, key=lambda a: a.occurred_at) for r in self.follow_up(arrest)]
            for pid, arrests in sorted(self.arrests.items())}

    def young_at(self, pid: int, record: Record) -> bool:
        return _age(self.gen.people[pid].date_of_birth, record.occurred_at.date()) in YOUTH_JUSTICE_AGES

    def follow_up(self, arrest: Record) -> list[Record]:
        rng, gen = self.rng, self.gen
        arrested = arrest.occurred_at.date()
        fields = {f.name: f.value for f in arrest.fields}
        assessed = gen._past(arrested + timedelta(days=7 + rng.randrange(35)))
        out = [make_record(
            f"{YOS}.assessment", gen._id(YOS, "AS"), at(assessed, 9 + rng.randrange(8)),
            "AssetPlus assessment completed.",
            {"risk_of_serious_harm": rng.choices(("low", "medium", "high"), (55, 35, 10))[0],
             "assessed": assessed.isoformat()}, catalogue=YOS_CATEGORIES)]
        if fields["outcome"] == "Charged and bailed":
            start = gen._past(arrested + timedelta(days=30 + rng.randrange(90)))
            order = rng.choice(("Referral order, 6 months", "Referral order, 9 months",
                                "Youth rehabilitation order, 12 months"))
            out.append(make_record(
                f"{YOS}.court_order", gen._id(YOS, "CO"), at(start, 10), f"{order.split(',')[0]} made.",
                {"order_type": order, "start_date": start.isoformat(), "offence": fields["offence"],
                 "case_manager": f"{rng.choice(names.STAFF_NAMES)}, YOS case manager, "
                                 f"020 7946 08{rng.randrange(100):02d}",
                 "notes": rng.choice(("Attends appointments.", "Missed two appointments; warning given.",
                                      "Engaging with reparation work.", "Education placement arranged."))},
                catalogue=YOS_CATEGORIES))
        return sorted(out, key=lambda r: r.occurred_at)

    def known(self) -> list[int]:
        return sorted(self.records)

    def dataset(self) -> AgencyDataset:
        """The youth offending service's dataset, person by person in pid order (the cast is not known to it)."""
        entries = [self.gen.person_entry(YOS, n, pid, self.records[pid], self.rng)
                   for n, pid in enumerate(self.known(), start=1)]
        return AgencyDataset(YOS, entries, mash_contact=YOS_CONTACT, catalogue=YOS_CATALOGUE)

    def with_arrests(self, police: AgencyDataset, pid_of: dict[str, int]) -> AgencyDataset:
        """`police` holding the new arrests too: on the young person's entry, or on a new one after the rest
        (`pid_of` learns its pid)."""
        ref_of = {pid: ref for ref, pid in pid_of.items()}
        entries = {ref: e for ref, e in police.persons.items()}
        n = len(pid_of)
        for pid, records in sorted(self.new_arrests.items()):
            if pid in ref_of:
                entry = entries[ref_of[pid]]
                entries[entry.person_ref] = replace(entry, records=(*entry.records, *records))
            else:
                n += 1
                entry = self.gen.person_entry("police", n, pid, records, self.rng)
                entries[entry.person_ref] = entry
                pid_of[entry.person_ref] = pid
        return AgencyDataset(police.agency, list(entries.values()), mash_contact=police.mash_contact)


def _switch_roles(gen: _Generator, rng: random.Random) -> None:
    """Make some perpetrators of domestic abuse the victim of a later incident with a new partner from another
    household: the people analysts see "swap between the two"."""
    perpetrators = sorted(pid for pid, parts in gen.roles.items() if "perpetrator" in parts.values())
    adults = [pid for hh in gen.households for pid in hh.adults]
    for pid in perpetrators:
        if rng.random() < 0.3:
            partner = rng.choice(adults)
            if partner != pid:
                gen.domestic_abuse_incident(gen.households[gen.people[pid].household], pid, partner)


def _split(held: AgencyDataset, areas: Sequence[str],
           area_of: Callable[[PersonEntry, date], str]) -> dict[str, AgencyDataset]:
    """One agency's dataset cut into its boroughs' datasets: each record goes to the borough its subject lived in
    when it was made, under the borough agency's name and categories."""
    per_area: dict[str, list[PersonEntry]] = {a: [] for a in areas}
    for entry in held.persons.values():
        by_area: dict[str, list[Record]] = {}
        for record in entry.records:
            by_area.setdefault(area_of(entry, record.occurred_at.date()), []).append(record)
        for area, records in by_area.items():
            ids = {r.record_id for r in records}
            per_area[area].append(replace(entry, records=tuple(records),
                                          roles=MappingProxyType({k: v for k, v in entry.roles.items() if k in ids})))
    return {area: as_agency(AgencyDataset(held.agency, entries, mash_contact=held.mash_contact,
                                          catalogue=held.catalogue),
                            borough_agency(held.agency, area), area)
            for area, entries in per_area.items()}


def as_agency(dataset: AgencyDataset, agency: str, area: str = "") -> AgencyDataset:
    """`dataset` as agency `agency` holds it: the agency, its record categories (`csc.case` → `csc_camden.case`)
    and its MASH contact renamed; `area` is the borough it serves ("" for all)."""
    if agency == dataset.agency and area == dataset.area:
        return dataset
    home = dataset.agency

    def moved(category: str) -> str:
        return agency + category[len(home):] if category.split(".", 1)[0] == home else category

    persons = [replace(p, records=tuple(replace(r, agency=agency, category=moved(r.category)) for r in p.records))
               for p in dataset.persons.values()]
    catalogue = [replace(spec, category=moved(spec.category)) for spec in dataset.catalogue]
    return AgencyDataset(agency, persons, mash_contact=replace(dataset.mash_contact, agency=agency),
                         catalogue=catalogue, area=area)
