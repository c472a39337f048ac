"""A seeded synthetic partnership: a population of households and what each of six agencies holds about them."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from types import MappingProxyType

from agency_stubs import names
from agency_stubs.cast import CAST, CastMember
from agency_stubs.cast_records import cast_entries
from agency_stubs.catalogue import SIMULATED_AGENCIES
from agency_stubs.dataset import AgencyDataset, PersonEntry
from agency_stubs.records import at, make_record
from gateway.domain import Record
from gateway.linkage import nhs_check_digit

DEFAULT_SEED = 20260101
DEFAULT_AS_OF = date(2026, 11, 1)

_REF_PREFIX = {"police": "POL", "health": "HLT", "csc": "CSC", "education": "EDU", "housing": "HSG",
               "probation": "PRB", "yos": "YOS"}
# Not every agency records an NHS number; where it holds none, name and date of birth must match instead.
_HOLDS_NHS = {"police": 0.7, "health": 1.0, "csc": 0.95, "education": 0.9, "housing": 0.6, "probation": 0.8,
              "yos": 0.9}


@dataclass(frozen=True, slots=True)
class Person:
    """One member of the generated population."""

    pid: int
    given_name: str
    family_name: str
    sex: str  # "F" or "M"
    date_of_birth: date
    nhs_number: str
    postcode: str
    address_line: str
    phone: str
    household: int


@dataclass(frozen=True, slots=True)
class Household:
    """People living at one address: up to two adults and their children."""

    hid: int
    adults: tuple[int, ...]
    children: tuple[int, ...]
    postcode: str
    address_line: str

    @property
    def members(self) -> tuple[int, ...]:
        return (*self.adults, *self.children)


@dataclass(frozen=True)
class World:
    """The generated population and each agency's dataset; the fixed cast is in every world."""

    seed: int
    as_of: date
    people: tuple[Person, ...]
    households: tuple[Household, ...]
    datasets: Mapping[str, AgencyDataset]
    cast: tuple[CastMember, ...] = CAST
    _digest: list[str] = field(default_factory=list, repr=False, compare=False)

    def dataset(self, agency: str) -> AgencyDataset:
        try:
            return self.datasets[agency]
        except KeyError:
            raise KeyError(f"no agency {agency!r} in this world") from None

    def with_dataset(self, dataset: AgencyDataset) -> World:
        """A copy of the world with one agency's dataset replaced (e.g. after `with_extra_records`)."""
        datasets = MappingProxyType({**self.datasets, dataset.agency: dataset})
        return World(self.seed, self.as_of, self.people, self.households, datasets, self.cast)

    def digest(self) -> str:
        """SHA-256 over a canonical encoding of every dataset: equal digests mean identical worlds."""
        if not self._digest:
            hasher = hashlib.sha256()
            for agency in sorted(self.datasets):
                ds = self.datasets[agency]
                for ref in sorted(ds.persons):
                    e = ds.persons[ref]
                    doc = [agency, ref, e.given_name, e.family_name, e.date_of_birth.isoformat(), e.nhs_number,
                           e.postcode, [_record_doc(r) for r in e.records]]
                    hasher.update(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())
                    hasher.update(b"\n")
            self._digest.append(hasher.hexdigest())
        return self._digest[0]


def _record_doc(r: Record) -> list[object]:
    return [r.agency, r.record_id, r.record_type, r.category, r.kind.value, r.occurred_at.isoformat(), r.summary,
            [[f.name, f.category, f.value] for f in r.fields]]


def build_world(seed: int = DEFAULT_SEED, people: int = 2000, *, as_of: date = DEFAULT_AS_OF) -> World:
    """Generate `people` synthetic people in households, plus the fixed cast, and every agency's records."""
    if people < 0:
        raise ValueError("people must not be negative")
    gen = _Generator(random.Random(seed), as_of)
    gen.populate(people)
    gen.generate_records()
    datasets = {agency: gen.dataset(agency) for agency in SIMULATED_AGENCIES}
    return World(seed, as_of, tuple(gen.people), tuple(gen.households), MappingProxyType(datasets))


def _age(dob: date, on: date) -> int:
    return on.year - dob.year - ((on.month, on.day) < (dob.month, dob.day))


class _Generator:
    """Draws the population and records from one random stream, in a fixed order, so a seed fixes the world."""

    def __init__(self, rng: random.Random, as_of: date) -> None:
        self.rng = rng
        self.as_of = as_of
        self.people: list[Person] = []
        self.households: list[Household] = []
        self._nhs: set[str] = set()
        self._records: dict[str, dict[int, list[Record]]] = {a: {} for a in SIMULATED_AGENCIES}
        # A person's part in a record naming several people in different parts (domestic abuse), by record id.
        self._roles: dict[int, dict[str, str]] = {}
        self._counters: dict[str, int] = {}

    # --- population -----------------------------------------------------------------------------------

    def _nhs_number(self) -> str:
        # Generated numbers start with 4; the cast's start with 999, so the two can never collide.
        while True:
            nine = "4" + "".join(self.rng.choice("0123456789") for _ in range(8))
            check = nhs_check_digit(nine)
            if check is None:
                continue
            number = nine + str(check)
            if number not in self._nhs:
                self._nhs.add(number)
                return number

    def _dob(self, age: int) -> date:
        latest = self.as_of - timedelta(days=365 * age)
        return latest - timedelta(days=1 + self.rng.randrange(365))

    def _postcode(self) -> str:
        rng = self.rng
        return f"{rng.choice(names.POSTCODE_DISTRICTS)} {rng.randrange(10)}" + "".join(
            rng.choice(names.INWARD_LETTERS) for _ in range(2)
        )

    def _person(self, hid: int, sex: str, family: str, age: int, postcode: str, address: str) -> int:
        rng = self.rng
        given = rng.choice(names.GIVEN_NAMES_FEMALE if sex == "F" else names.GIVEN_NAMES_MALE)
        pid = len(self.people)
        phone = f"07700 900{rng.randrange(1000):03d}" if age >= 14 else ""
        self.people.append(Person(pid, given, family, sex, self._dob(age), self._nhs_number(), postcode, address,
                                  phone, hid))
        return pid

    def populate(self, target: int) -> None:
        rng = self.rng
        while len(self.people) < target:
            hid = len(self.households)
            postcode = self._postcode()
            address = f"{rng.randrange(1, 240)} {rng.choice(names.STREETS)}, London"
            shape = rng.choices(("couple_children", "single_parent", "couple", "single"), (40, 25, 15, 20))[0]
            family = rng.choice(names.FAMILY_NAMES)
            adults: list[int] = []
            children: list[int] = []
            if shape in ("couple_children", "single_parent"):
                parent_age = rng.randrange(22, 52)
                first_sex = "F" if shape == "couple_children" or rng.random() < 0.85 else "M"
                adults.append(self._person(hid, first_sex, family, parent_age, postcode, address))
                if shape == "couple_children":
                    partner_family = family if rng.random() < 0.7 else rng.choice(names.FAMILY_NAMES)
                    other = "M" if rng.random() < 0.95 else "F"
                    adults.append(self._person(hid, other, partner_family, parent_age + rng.randrange(-3, 8),
                                               postcode, address))
                for _ in range(rng.choices((1, 2, 3, 4), (35, 40, 18, 7))[0]):
                    age = rng.randrange(0, min(18, parent_age - 17))
                    children.append(self._person(hid, rng.choice("FM"), family, age, postcode, address))
            elif shape == "couple":
                age = rng.randrange(20, 85)
                adults.append(self._person(hid, "F", family, age, postcode, address))
                adults.append(self._person(hid, "M", family if rng.random() < 0.6 else rng.choice(names.FAMILY_NAMES),
                                           max(18, age + rng.randrange(-5, 6)), postcode, address))
            else:
                adults.append(self._person(hid, rng.choice("FM"), family, rng.randrange(18, 90), postcode, address))
            self.households.append(Household(hid, tuple(adults), tuple(children), postcode, address))

    # --- helpers ----------------------------------------------------------------------------------------

    def _id(self, agency: str, code: str) -> str:
        key = f"{agency}.{code}"
        self._counters[key] = self._counters.get(key, 0) + 1
        return f"{_REF_PREFIX[agency]}-{code}-{self._counters[key]:06d}"

    def _add(self, record: Record, *pids: int) -> None:
        per_person = self._records[record.agency]
        for pid in pids:
            per_person.setdefault(pid, []).append(record)

    def _date_within(self, days: int, *, not_before: date | None = None) -> date:
        day = self.as_of - timedelta(days=1 + self.rng.randrange(days))
        return self._past(max(day, not_before)) if not_before else day

    def _past(self, day: date) -> date:
        """`day`, or the day before `as_of` if it would be later: nothing is recorded in the future."""
        return min(day, self.as_of - timedelta(days=1))

    def _third_party(self) -> str:
        rng = self.rng
        given = rng.choice(names.GIVEN_NAMES_FEMALE + names.GIVEN_NAMES_MALE)
        return f"{given} {rng.choice(names.FAMILY_NAMES)}"

    def _staff(self, role: str, phone_block: int) -> str:
        # 020 7946 0000-0999 is Ofcom's range for drama, so no generated number can ring anyone.
        number = f"020 7946 0{phone_block % 10}{self.rng.randrange(100):02d}"
        return f"{self.rng.choice(names.STAFF_NAMES)}, {role}, {number}"

    def age(self, pid: int) -> int:
        return _age(self.people[pid].date_of_birth, self.as_of)

    def name(self, pid: int) -> str:
        p = self.people[pid]
        return f"{p.given_name} {p.family_name}"

    # --- records ----------------------------------------------------------------------------------------

    def generate_records(self) -> None:
        steps: tuple[Callable[[Household], None], ...] = (
            self._health, self._education, self._csc, self._police, self._housing, self._probation,
        )
        for step in steps:
            for household in self.households:
                step(household)

    def _health(self, hh: Household) -> None:
        rng = self.rng
        for pid in hh.members:
            p, age = self.people[pid], self.age(pid)
            if rng.random() < 0.97:
                since = self._past(max(p.date_of_birth + timedelta(days=30), self._date_within(365 * 15)))
                practice = rng.choice(names.GP_PRACTICES)
                self._add(make_record(
                    "health.gp_registration", self._id("health", "GP"), at(since), "Registered with a GP practice.",
                    {"practice": practice, "registered_since": since.isoformat(),
                     "gp": self._staff("GP", 7), "home_address": p.address_line, "postcode": p.postcode},
                ), pid)
            if age < 18 and rng.random() < 0.9:
                overdue = rng.random() < 0.12
                updated = self._date_within(365 * 3, not_before=p.date_of_birth)
                self._add(make_record(
                    "health.immunisation", self._id("health", "IM"), at(updated),
                    "Immunisations overdue." if overdue else "Immunisations up to date.",
                    {"status": rng.choice(("overdue: second MMR dose", "overdue: pre-school booster"))
                     if overdue else "up to date", "last_updated": updated.isoformat()},
                ), pid)
            if age < 5 and rng.random() < 0.85:
                wnb = rng.choices((0, 1, 2, 3, 4), (70, 15, 8, 5, 2))[0]
                last = self._date_within(200, not_before=p.date_of_birth)
                concerns = ("No concerns; development on track." if wnb == 0 else
                            f"Not brought to {wnb} appointment(s); " + rng.choice((
                                "parent reports transport problems.", "home visit arranged.",
                                "family not at home when visited.", "rebooked twice.")))
                self._add(make_record(
                    "health.maternity", self._id("health", "HV"), at(last), "Health visiting contact.",
                    {"health_visitor": self._staff("Health Visitor", 6), "last_contact": last.isoformat(),
                     "was_not_brought_count": str(wnb), "concerns": concerns},
                ), pid)
            if rng.random() < (0.16 if age < 18 else 0.1):
                count = rng.choices((1, 2, 3), (75, 18, 7))[0]
                for n in range(count):
                    when = self._date_within(365, not_before=p.date_of_birth)
                    complaint, injury = rng.choice((
                        ("Fall in the playground", "Laceration to the forehead"), ("Fever", "none"),
                        ("Sports injury", "Sprained ankle"), ("Burn from a kettle", "Superficial scald to hand"),
                        ("Abdominal pain", "none"), ("Head injury", "Minor head injury"),
                        ("Assault", "Bruising to the face"), ("Overdose", "none"),
                    ))
                    companion = self.name(hh.adults[0]) if age < 16 and hh.adults else "attended alone"
                    self._add(make_record(
                        "health.attendance", self._id("health", "AE"), at(when, rng.randrange(24)),
                        "A&E attendance" + (" with an injury." if injury != "none" else "."),
                        {"attendance_date": when.isoformat(), "hospital": rng.choice(names.HOSPITALS),
                         "presenting_complaint": complaint, "injury_type": injury,
                         "attendances_12m": str(n + 1), "accompanied_by": companion,
                         "notes": rng.choice(("Treated and discharged.", "Discharged with GP follow-up.",
                                              "Account consistent with injury.", "Safeguarding checklist completed."))},
                    ), pid)
            if age >= 16 and rng.random() < 0.08:
                opened = self._date_within(365 * 4)
                self._add(make_record(
                    "health.mental_health", self._id("health", "MH"), at(opened), "Known to mental health services.",
                    {"service": rng.choice(("Community Mental Health Team", "Talking Therapies", "Perinatal Mental "
                                            "Health Service", "CAMHS" if age < 18 else "Early Intervention in "
                                            "Psychosis")),
                     "diagnosis": rng.choice(("Depression", "Generalised anxiety disorder", "Bipolar disorder",
                                              "Post-traumatic stress disorder", "Emotionally unstable personality "
                                              "disorder")),
                     "status": rng.choice(("open", "open", "discharged")), "clinician": self._staff("Clinician", 8),
                     "notes": rng.choice(("Engaging well with treatment.", "Missed the last two appointments.",
                                          "Crisis plan in place.", "Stable on medication."))},
                ), pid)
            if age >= 16 and rng.random() < 0.03:
                started = self._date_within(365 * 3)
                self._add(make_record(
                    "health.substance_misuse", self._id("health", "SM"), at(started), "In substance-misuse treatment.",
                    {"service": "Hackney Recovery Service",
                     "substance": rng.choice(("Alcohol", "Heroin", "Crack cocaine", "Cannabis", "Cocaine")),
                     "treatment_status": rng.choice(("in treatment", "completed", "dropped out"))},
                ), pid)
            if 16 <= age <= 45 and rng.random() < 0.05:
                when = self._date_within(365 * 2)
                self._add(make_record(
                    "health.sexual_health", self._id("health", "SH"), at(when), "Sexual health attendance.",
                    {"clinic": rng.choice(("Clinic 1, Homerton Sexual Health Service", "Barts Sexual Health Centre",
                                           "Mortimer Market Centre")), "attendance_date": when.isoformat(),
                     "reason": rng.choice(("STI screening", "Contraception", "PrEP review", "Emergency contraception")),
                     "notes": rng.choice(("Routine attendance.", "Partner notification offered.",
                                          "Safeguarding questions asked; no concerns disclosed."))},
                ), pid)

    def _education(self, hh: Household) -> None:
        rng = self.rng
        for pid in hh.children:
            p, age = self.people[pid], self.age(pid)
            if not 4 <= age <= 17:
                continue
            if rng.random() < 0.97:
                year = max(0, age - 4)
                school = rng.choice(names.SCHOOLS_PRIMARY if year <= 6 else names.SCHOOLS_SECONDARY)
                year_group = "Reception" if year == 0 else f"Year {min(year, 13)}"
                self._add(make_record(
                    "education.enrolment", self._id("education", "EN"), at(date(self.as_of.year - (year > 0), 9, 4)),
                    f"On a school roll, {year_group}.",
                    {"school": school, "year_group": year_group, "date_of_birth": p.date_of_birth.isoformat(),
                     "home_address": p.address_line, "postcode": p.postcode,
                     "dsl_contact": self._staff("Designated Safeguarding Lead", 3)},
                ), pid)
                pct = min(100.0, max(40.0, rng.gauss(94, 6)))
                self._add(make_record(
                    "education.attendance", self._id("education", "AT"), at(date(self.as_of.year, 7, 22)),
                    "Persistently absent last term." if pct < 90 else "Attendance recorded for last term.",
                    {"term": f"{self.as_of.year - 1}/{self.as_of.year % 100:02d} summer term",
                     "attendance_pct": f"{round(pct)}%", "persistent_absence": "yes" if pct < 90 else "no"},
                ), pid)
                if age >= 11 and rng.random() < 0.04:
                    when = self._date_within(365 * 2)
                    kind = rng.choice(("suspension", "suspension", "permanent exclusion"))
                    self._add(make_record(
                        "education.exclusion", self._id("education", "EX"), at(when), f"Excluded: {kind}.",
                        {"exclusion_date": when.isoformat(), "exclusion_type": kind,
                         "reason": rng.choice(("Physical assault against a pupil", "Persistent disruptive behaviour",
                                               "Bringing a knife onto school premises", "Verbal abuse of staff",
                                               "Drug-related incident"))},
                    ), pid)
                if rng.random() < 0.14:
                    status = rng.choices(("sen_support", "ehc_plan"), (80, 20))[0]
                    self._add(make_record(
                        "education.sen", self._id("education", "SN"), at(self._date_within(365 * 3)),
                        "Has an EHC plan." if status == "ehc_plan" else "Receives SEN support.",
                        {"sen_status": status,
                         "needs": rng.choice(("Autism spectrum condition", "Speech, language and communication needs",
                                              "Specific learning difficulty (dyslexia)",
                                              "Social, emotional and mental health needs", "Moderate learning "
                                              "difficulty"))},
                    ), pid)
            else:
                status = rng.choice(("cme", "ehe"))
                since = self._date_within(365 * 2)
                self._add(make_record(
                    "education.missing_education", self._id("education", "ME"), at(since),
                    "Child missing education." if status == "cme" else "Electively home educated.",
                    {"status": status, "since": since.isoformat()},
                ), pid)

    def _csc(self, hh: Household) -> None:
        rng = self.rng
        for pid in hh.children:
            roll = rng.random()
            if roll < 0.06:
                legal = rng.choices(("child_in_need", "child_protection", "looked_after"), (50, 32, 18))[0]
                opened = self._date_within(365 * 2, not_before=self.people[pid].date_of_birth)
                self._add(make_record(
                    "csc.case", self._id("csc", "CS"), at(opened), f"Open case: {legal.replace('_', ' ')}.",
                    {"case_status": "open", "legal_status": legal,
                     "allocated_team": rng.choice(("Assessment Team 1", "Assessment Team 3", "Family Support and "
                                                   "Protection Team A", "Children in Care Team")),
                     "allocated_worker": rng.choice(names.STAFF_NAMES), "opened": opened.isoformat()},
                ), pid)
                if legal == "child_protection":
                    start = self._past(opened + timedelta(days=rng.randrange(10, 60)))
                    category = rng.choice(("neglect", "neglect", "emotional", "physical", "sexual"))
                    self._add(make_record(
                        "csc.cp_plan", self._id("csc", "CP"), at(start), f"Subject to a child protection plan "
                        f"({category}).",
                        {"plan_category": category, "start_date": start.isoformat(),
                         "review_date": (start + timedelta(days=90)).isoformat(),
                         "key_worker": rng.choice(names.STAFF_NAMES)},
                    ), pid)
                self._referral(pid, opened - timedelta(days=rng.randrange(3, 30)), accepted=True)
                done = opened + timedelta(days=rng.randrange(10, 45))
                if done < self.as_of:
                    self._add(make_record(
                        "csc.assessment", self._id("csc", "AS"), at(done), "Assessment completed.",
                        {"assessment_type": rng.choice(("child_and_family_assessment", "section_47_enquiry")),
                         "completed": done.isoformat(), "outcome": rng.choice(("Child in need plan",
                                                                               "Initial child protection conference",
                                                                               "Step down to early help")),
                         "narrative": rng.choice(("Home conditions poor; parents engaging inconsistently.",
                                                  "Child describes frequent arguments at home.",
                                                  "Concerns about supervision of younger siblings.",
                                                  "Parent's substance use affecting daily care."))},
                    ), pid)
            elif roll < 0.10:
                self._referral(pid, self._date_within(365 * 3, not_before=self.people[pid].date_of_birth),
                               accepted=False)
            elif roll < 0.12:
                closed_from = self._date_within(365 * 4, not_before=self.people[pid].date_of_birth)
                self._add(make_record(
                    "csc.case", self._id("csc", "CS"), at(closed_from), "Closed case.",
                    {"case_status": "closed", "legal_status": "none", "allocated_team": "", "allocated_worker": "",
                     "opened": closed_from.isoformat()},
                ), pid)

    def _referral(self, pid: int, when: date, *, accepted: bool) -> None:
        rng = self.rng
        referrer = rng.choice((
            f"{self._third_party()}, neighbour", f"{self._third_party()}, class teacher",
            f"{self._third_party()}, GP", "Anonymous member of the public", f"{self._third_party()}, grandparent",
        ))
        self._add(make_record(
            "csc.referral", self._id("csc", "RF"), at(when), "Referral received.",
            {"referral_date": when.isoformat(), "referrer": referrer,
             "concern": rng.choice(("Child arrives at school hungry and unkempt.", "Reports of shouting and "
                                    "banging at the address.", "Child disclosed being hit with a belt.",
                                    "Child left home alone overnight.", "Parent seen intoxicated at the school "
                                    "gate.")),
             "outcome": "Accepted for assessment" if accepted else rng.choice(("No further action",
                                                                                "Signposted to early help"))},
        ), pid)

    def _police(self, hh: Household) -> None:
        rng = self.rng
        if len(hh.adults) == 2 and rng.random() < 0.05:
            women = [a for a in hh.adults if self.people[a].sex == "F"]
            victim = women[0] if women and rng.random() < 0.85 else hh.adults[0]
            perp = hh.adults[1] if victim == hh.adults[0] else hh.adults[0]
            self._domestic_abuse(hh, victim, perp)
        for pid in hh.children:
            age = self.age(pid)
            if 11 <= age <= 17 and rng.random() < 0.03:
                for _ in range(rng.randrange(1, 4)):
                    when = self._date_within(365 * 2)
                    hours = rng.randrange(3, 96)
                    self._add(make_record(
                        "police.missing_person", self._id("police", "MP"), at(when, rng.randrange(24)),
                        f"Reported missing; found after {hours} hours.",
                        {"reported_date": when.isoformat(), "duration_hours": str(hours),
                         "found_postcode": self._postcode(),
                         "return_interview": rng.choice(("Completed; no disclosures", "Declined", "Completed; "
                                                         "disclosed staying with older associates")),
                         "narrative": rng.choice(("Found at a friend's address.", "Located by officers at a "
                                                  "railway station.", "Returned home of own accord."))},
                    ), pid)
            if 12 <= age <= 17 and rng.random() < 0.03:
                concern = rng.choice(("child_criminal_exploitation", "child_sexual_exploitation", "county_lines"))
                self._add(make_record(
                    "police.exploitation", self._id("police", "EX"), at(self._date_within(365)),
                    "Exploitation concern recorded.",
                    {"concern_type": concern, "risk_level": rng.choice(("low", "medium", "high")),
                     "associates": f"{self._third_party()}; {self._third_party()}",
                     "narrative": rng.choice(("Seen getting into cars with older males.", "Found with unexplained "
                                              "cash and a second phone.", "Stopped out of area with a "
                                              "known dealer."))},
                ), pid)
        for pid in hh.adults:
            if rng.random() < 0.05:
                when = self._date_within(365 * 3)
                role = rng.choice(("victim", "suspect", "offender", "witness"))
                offence = rng.choice(names.OFFENCES)
                self._add(make_record(
                    "police.crime", self._id("police", "CR"), at(when, rng.randrange(24)),
                    f"Crime report; recorded as {role}.",
                    {"crime_date": when.isoformat(), "offence": offence, "role_in_crime": role,
                     "other_party": self._third_party(),
                     "narrative": rng.choice(("Incident outside a licensed premises.", "Reported online.",
                                              "CCTV enquiries made.", "Dispute between neighbours escalated.")),
                     "outcome": rng.choice(("Under investigation", "No further action", "Charged",
                                            "Community resolution"))},
                ), pid)
                if role in ("suspect", "offender") and rng.random() < 0.5:
                    self._arrest(pid, when, offence)
            if rng.random() < 0.03:
                self._intelligence(pid, rng.randrange(1, 4))

    def _domestic_abuse(self, hh: Household, victim: int, perp: int) -> None:
        rng = self.rng
        incidents = rng.choices((1, 2, 3), (60, 28, 12))[0]
        risks = [self.domestic_abuse_incident(hh, victim, perp) for _ in range(incidents)]
        if "high" in risks or ("medium" in risks and rng.random() < 0.2):
            when = self._date_within(120)
            self._add(make_record(
                "police.marac", self._id("police", "MR"), at(when), "Referred to MARAC.",
                {"referral_date": when.isoformat(), "risk_level": "high", "victim": self.name(victim),
                 "actions": rng.choice(("IDVA allocated; safety plan agreed.", "Target hardening at the address.",
                                        "Information shared with housing and health."))},
            ), victim)
        if rng.random() < 0.5:
            self._arrest(perp, self._date_within(365), "Assault occasioning actual bodily harm")
        if rng.random() < 0.3:
            self._intelligence(perp, 1)
        if rng.random() < 0.3:
            self._supervision(perp, "Assault occasioning actual bodily harm (domestic)")
        if rng.random() < 0.15:
            placed = self._date_within(365 * 6)
            self._add(make_record(
                "housing.refuge", self._id("housing", "RG"), at(placed), "Refuge placement recorded.",
                {"refuge_address": f"{self.rng.randrange(1, 60)} {self.rng.choice(names.STREETS)}, London "
                                   f"{self._postcode()}",
                 "placement_date": placed.isoformat(), "support_worker": self._staff("Refuge support worker", 5)},
            ), victim)

    def domestic_abuse_incident(self, hh: Household, victim: int, perp: int, *, within_days: int = 365 * 2) -> str:
        """One domestic-abuse incident at `hh`'s address, held by victim, perpetrator and any child present,
        each with their part; returns its DASH risk."""
        rng = self.rng
        when = self._date_within(within_days)
        risk = rng.choices(("standard", "medium", "high"), (45, 35, 20))[0]
        child_present = bool(hh.children) and rng.random() < 0.7
        record = make_record(
            "police.domestic_abuse", self._id("police", "DA"), at(when, rng.randrange(24)),
            f"Domestic abuse incident; DASH {risk}; child present: {'yes' if child_present else 'no'}.",
            {"incident_date": when.isoformat(), "dash_risk": risk,
             "child_present": "yes" if child_present else "no", "location_postcode": hh.postcode,
             "perpetrator": self.name(perp),
             "narrative": rng.choice(("Verbal argument escalated; victim pushed against a wall.",
                                      "Victim reports controlling behaviour and threats.",
                                      "Neighbours reported shouting; both parties intoxicated.",
                                      "Victim has a bruised cheek and a damaged phone.")),
             "officer_in_case": self._staff("Safeguarding Unit", 4)},
        )
        self._add(record, victim, perp, *(hh.children if child_present else ()))
        self._roles.setdefault(victim, {})[record.record_id] = "victim"
        self._roles.setdefault(perp, {})[record.record_id] = "perpetrator"
        return risk

    def _arrest(self, pid: int, when: date, offence: str) -> None:
        self._add(self.arrest(when, offence), pid)

    def arrest(self, when: date, offence: str, rng: random.Random | None = None) -> Record:
        """A police arrest record on `when`, its details drawn from `rng` (default: the world's stream)."""
        rng = rng or self.rng
        return make_record(
            "police.arrest", self._id("police", "AR"), at(when, rng.randrange(24)), "Arrested.",
            {"arrest_date": when.isoformat(), "offence": offence,
             "bail_conditions": rng.choice(("", "Not to contact the victim directly or indirectly.",
                                            "Curfew 21:00 to 06:00; to reside at the bail address.")),
             "outcome": rng.choice(("Released under investigation", "Charged and bailed", "No further action",
                                    "Cautioned"))},
        )

    def _intelligence(self, pid: int, count: int) -> None:
        rng = self.rng
        for _ in range(count):
            when = self._date_within(365 * 2)
            code = rng.choices(("P", "C", "", "X", "4"), (55, 35, 4, 3, 3))[0]
            conditions = rng.choice((
                "Not to be disclosed to the subject; consult the originating officer before onward sharing.",
                "For safeguarding use only; do not record on case notes visible to the family.",
                "Share with the MASH only; sanitise before any wider disclosure.",
            )) if code == "C" else ""
            self._add(make_record(
                "police.intelligence", self._id("police", "IN"), at(when, rng.randrange(24)),
                "Intelligence report (3x5x2 graded).",
                {"report_date": when.isoformat(), "grading": rng.choice("ABC") + str(rng.randrange(1, 6)),
                 "handling_code": code, "conditions": conditions,
                 "informant": rng.choice(("Anonymous (Crimestoppers)", f"Confidential source CS-{rng.randrange(9999)}",
                                          f"{self._third_party()}, member of the public")),
                 "intelligence": rng.choice(("Subject believed to be carrying a knife.",
                                             "Subject associating with a county lines group.",
                                             "Subject's address used to store stolen goods.",
                                             "Subject making threats towards a former partner."))},
            ), pid)

    def _housing(self, hh: Household) -> None:
        rng = self.rng
        if rng.random() < 0.35:
            start = self._date_within(365 * 12)
            tenure = rng.choice(("secure", "secure", "introductory", "temporary accommodation"))
            for pid in hh.adults:
                others = [self.name(o) for o in hh.members if o != pid]
                self._add(make_record(
                    "housing.tenancy", self._id("housing", "TN"), at(start), f"Council tenancy ({tenure}).",
                    {"address": hh.address_line, "postcode": hh.postcode, "tenancy_start": start.isoformat(),
                     "tenure": tenure, "household": ", ".join(others) or "lives alone"},
                ), pid)
            if rng.random() < 0.25:
                since = self._date_within(365 * 2)
                self._add(make_record(
                    "housing.arrears", self._id("housing", "RA"), at(since), "In rent arrears.",
                    {"arrears_band": rng.choice(("under 500", "500-999", "1000-2499", "2500 and over")),
                     "since": since.isoformat()},
                ), hh.adults[0])
        if rng.random() < 0.03:
            when = self._date_within(365 * 3)
            application = make_record(
                "housing.homelessness", self._id("housing", "HL"), at(when), "Homelessness application made.",
                {"application_date": when.isoformat(), "temporary_postcode": self._postcode(),
                 "decision": rng.choice(("Main duty accepted", "Relief duty", "Not homeless", "Intentionally "
                                         "homeless"))},
            )
            self._add(application, *hh.adults)
        for pid in hh.adults:
            if rng.random() < 0.03:
                when = self._date_within(365 * 2)
                self._add(make_record(
                    "housing.asb", self._id("housing", "AS"), at(when), "Anti-social behaviour complaint.",
                    {"complaint_date": when.isoformat(), "complainant": f"{self._third_party()}, neighbour",
                     "allegation": rng.choice(("Noise late at night.", "Rubbish dumped on the landing.",
                                               "Intimidating visitors at the door.", "Dog fouling and barking.")),
                     "outcome": rng.choice(("Warning letter issued", "Mediation offered", "No further action",
                                            "Acceptable behaviour contract"))},
                ), pid)

    def _probation(self, hh: Household) -> None:
        rng = self.rng
        for pid in hh.adults:
            p = self.people[pid]
            if rng.random() < (0.02 if p.sex == "M" else 0.005):
                self._supervision(pid, rng.choice(names.OFFENCES))
        if hh.children and len(hh.adults) == 2 and rng.random() < 0.02:
            registered = hh.adults[1]
            when = self._date_within(365 * 8)
            record = make_record(
                "probation.sex_offender_household", self._id("probation", "SO"), at(when),
                "A registered sex offender lives in the household.",
                {"registered_person": self.name(registered), "registration_date": when.isoformat(),
                 "victim": self._third_party(),
                 "notes": rng.choice(("Home visit completed; household aware of the conviction.",
                                      "Disclosure made to the partner under the child sex offender disclosure "
                                      "scheme."))},
            )
            self._add(record, *(m for m in hh.members if m != registered))

    def _supervision(self, pid: int, offence: str) -> None:
        rng = self.rng
        if pid in self._records["probation"] and any(
            r.category == "probation.supervision" for r in self._records["probation"][pid]
        ):
            return
        start = self._date_within(365 * 3)
        self._add(make_record(
            "probation.supervision", self._id("probation", "SV"), at(start), "Supervised by probation.",
            {"supervision_status": rng.choice(("active (community order)", "active (licence)", "active (licence)",
                                               "terminated")),
             "offence": offence, "start_date": start.isoformat(), "practitioner": self._staff("Probation "
                                                                                              "Practitioner", 61)},
        ), pid)
        rosh = rng.choices(("low", "medium", "high", "very_high"), (40, 35, 20, 5))[0]
        assessed = self._past(start + timedelta(days=14))
        mappa = rng.random() < 0.25
        self._add(make_record(
            "probation.risk", self._id("probation", "RK"), at(assessed),
            f"Risk of serious harm: {rosh.replace('_', ' ')}.",
            {"rosh_level": rosh, "mappa_category": rng.choice("123") if mappa else "",
             "mappa_level": rng.choice("123") if mappa else "", "assessed": assessed.isoformat()},
        ), pid)
        if rng.random() < 0.6:
            self._add(make_record(
                "probation.licence", self._id("probation", "LC"), at(start), "On licence with conditions.",
                {"conditions": rng.choice(("To reside at an approved address; not to contact the victim.",
                                           "Curfew 19:00 to 07:00 with electronic monitoring.",
                                           "Not to enter the exclusion zone shown on the map; to attend "
                                           "appointments as directed.")),
                 "expires": (start + timedelta(days=365 + rng.randrange(730))).isoformat()},
            ), pid)

    # --- datasets ---------------------------------------------------------------------------------------

    @property
    def roles(self) -> Mapping[int, Mapping[str, str]]:
        """Each person's parts in domestic-abuse incidents so far, by pid and record id."""
        return self._roles

    def people_known_to(self, agency: str) -> list[int]:
        """The pids `agency` holds records about, in the order `dataset` lists them (the cast follows)."""
        return sorted(self._records[agency])

    def _person_roles(self, pid: int, records: list[Record]) -> Mapping[str, str]:
        """The person's part in each of `records` that gives one (victim or perpetrator of domestic abuse)."""
        mine = self._roles.get(pid, {})
        return MappingProxyType({r.record_id: mine[r.record_id] for r in records if r.record_id in mine})

    def dataset(self, agency: str) -> AgencyDataset:
        entries = [self.person_entry(agency, n, pid, self._records[agency][pid])
                   for n, pid in enumerate(self.people_known_to(agency), start=1)]
        entries.extend(cast_entries(agency))
        return AgencyDataset(agency, entries)

    def person_entry(self, agency: str, n: int, pid: int, records: list[Record],
                     rng: random.Random | None = None) -> PersonEntry:
        """Agency `agency`'s `n`th person entry, for person `pid` with `records`; whether the agency recorded their
        NHS number is drawn from `rng` (default: the world's stream)."""
        p = self.people[pid]
        return PersonEntry(
            person_ref=f"{_REF_PREFIX[agency]}-{200000 + n:07d}",
            given_name=p.given_name,
            family_name=p.family_name.upper() if agency == "police" else p.family_name,
            date_of_birth=p.date_of_birth,
            nhs_number=p.nhs_number if (rng or self.rng).random() < _HOLDS_NHS[agency] else "",
            postcode=p.postcode,
            records=tuple(records),
            roles=self._person_roles(pid, records),
        )
