"""One agency node's records, indexed for local matching by NHS number or by name and date of birth."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from types import MappingProxyType
from typing import TYPE_CHECKING

from agency_stubs.catalogue import CATALOGUE, MASH_CONTACTS, CategorySpec
from gateway.domain import AgencyContact, Record, SubjectIdentifiers
from gateway.linkage import normalise_name, normalise_subject

if TYPE_CHECKING:
    from agency_stubs.cast import CastMember

MATCH_BY_NHS_NUMBER = "nhs_number"
MATCH_BY_NAME_AND_DATE_OF_BIRTH = "name_and_date_of_birth"


@dataclass(frozen=True, slots=True)
class PersonEntry:
    """A person as one agency holds them: its own reference, identifiers as recorded, and its records."""

    person_ref: str
    given_name: str
    family_name: str
    date_of_birth: date
    nhs_number: str = ""  # empty when the agency does not hold one
    postcode: str = ""
    records: tuple[Record, ...] = ()
    # The person's part in a record, by record id, where a record names several people in different parts:
    # "victim" or "perpetrator" for domestic-abuse incidents. Records not listed give no part.
    roles: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    # Where a record's event happened, by record id, as an area (borough) of the partnership, for an
    # agency serving several areas. Records not listed happened in the dataset's own area (if any).
    areas: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)


@dataclass(frozen=True, slots=True)
class PersonMatchResult:
    """One person a lookup matched, with records of the content categories asked for only."""

    person_ref: str
    method: str  # MATCH_BY_NHS_NUMBER or MATCH_BY_NAME_AND_DATE_OF_BIRTH
    records: tuple[Record, ...]
    known_in_existence_categories: bool


class AgencyDataset:
    """The records one simulated agency holds, with indexes so a lookup costs O(1) in the population size."""

    def __init__(
        self,
        agency: str,
        persons: Iterable[PersonEntry],
        *,
        mash_contact: AgencyContact | None = None,
        catalogue: Sequence[CategorySpec] | None = None,
        area: str = "",
    ) -> None:
        if agency not in CATALOGUE and catalogue is None:
            raise ValueError(f"unknown agency {agency!r}")
        self.agency = agency
        self.area = area  # the area (borough) this agency serves; "" when it serves the whole partnership
        self.mash_contact = mash_contact or MASH_CONTACTS[agency]
        self.catalogue: tuple[CategorySpec, ...] = tuple(catalogue if catalogue is not None else CATALOGUE[agency])
        self.categories: frozenset[str] = frozenset(spec.category for spec in self.catalogue)
        by_ref: dict[str, PersonEntry] = {}
        by_nhs: dict[str, list[str]] = {}
        by_name_dob: dict[tuple[str, str, date], list[str]] = {}
        for entry in persons:
            if entry.person_ref in by_ref:
                raise ValueError(f"{agency}: duplicate person reference {entry.person_ref}")
            for record in entry.records:
                self._check_record(record)
            by_ref[entry.person_ref] = entry
            if entry.nhs_number:
                by_nhs.setdefault(entry.nhs_number, []).append(entry.person_ref)
            key = (normalise_name(entry.given_name), normalise_name(entry.family_name), entry.date_of_birth)
            by_name_dob.setdefault(key, []).append(entry.person_ref)
        self.persons: Mapping[str, PersonEntry] = MappingProxyType(by_ref)
        self._by_nhs = {k: tuple(v) for k, v in by_nhs.items()}
        self._by_name_dob = {k: tuple(v) for k, v in by_name_dob.items()}

    def __len__(self) -> int:
        return len(self.persons)

    def __repr__(self) -> str:
        return f"AgencyDataset({self.agency!r}, persons={len(self.persons)})"

    def _check_record(self, record: Record) -> None:
        if record.agency != self.agency:
            raise ValueError(f"record {record.record_id} belongs to {record.agency!r}, not {self.agency!r}")
        if record.category not in self.categories:
            raise ValueError(f"record {record.record_id}: {record.category!r} is not a {self.agency} category")

    def records(self) -> Iterator[Record]:
        """Every record held, person by person."""
        for entry in self.persons.values():
            yield from entry.records

    def unknown_categories(self, categories: Iterable[str]) -> list[str]:
        """Those of `categories` this agency does not hold, in the order given."""
        return [c for c in categories if c not in self.categories]

    def lookup(
        self,
        subject: SubjectIdentifiers,
        categories: Collection[str],
        existence_categories: Collection[str] = (),
    ) -> list[PersonMatchResult]:
        """Match `subject` locally and return records in `categories` only; ValueError for unknown categories.

        A given NHS number must match exactly; only when this agency holds no NHS number for a person can
        name and date of birth match instead. Persons with nothing in the asked categories are not returned.
        """
        unknown = self.unknown_categories([*categories, *existence_categories])
        if unknown:
            raise ValueError(f"{self.agency} holds no record category {', '.join(sorted(set(unknown)))}")
        subject_n = normalise_subject(subject)
        if "nhs_number" in subject_n.invalid:
            return []  # a malformed NHS number can match no one; callers validate before asking
        key = subject_n.name_and_date_of_birth
        candidates: list[tuple[str, str]] = []
        if subject_n.nhs_number:
            refs = self._by_nhs.get(subject_n.nhs_number, ())
            candidates = [(ref, MATCH_BY_NHS_NUMBER) for ref in refs]
            if not candidates and key is not None:
                candidates = [
                    (ref, MATCH_BY_NAME_AND_DATE_OF_BIRTH)
                    for ref in self._by_name_dob.get(key, ())
                    if not self.persons[ref].nhs_number
                ]
        elif key is not None:
            candidates = [(ref, MATCH_BY_NAME_AND_DATE_OF_BIRTH) for ref in self._by_name_dob.get(key, ())]
        wanted = frozenset(categories)
        existence = frozenset(existence_categories)
        results: list[PersonMatchResult] = []
        for ref, method in candidates:
            entry = self.persons[ref]
            records = tuple(r for r in entry.records if r.category in wanted)
            known = any(r.category in existence for r in entry.records)
            if records or known:
                results.append(PersonMatchResult(ref, method, records, known))
        return results

    def with_extra_records(self, person: str | CastMember, records: Sequence[Record]) -> AgencyDataset:
        """A copy with `records` added to one person (a person_ref or a cast member, added if not yet known)."""
        if isinstance(person, str):
            if person not in self.persons:
                raise KeyError(f"{self.agency} holds no person {person!r}")
            ref = person
            entry = self.persons[ref]
        else:
            ref = person.person_refs.get(self.agency, f"{self.agency.upper()}-CAST-{person.nhs_number[-4:]}")
            entry = self.persons.get(ref) or PersonEntry(
                person_ref=ref,
                given_name=person.given_name,
                family_name=person.family_name,
                date_of_birth=date.fromisoformat(person.date_of_birth),
                nhs_number=person.nhs_number,
                postcode=person.postcode,
            )
        for record in records:
            self._check_record(record)
        updated = replace(entry, records=(*entry.records, *records))
        persons = {**self.persons, ref: updated}
        return AgencyDataset(self.agency, persons.values(), mash_contact=self.mash_contact, catalogue=self.catalogue,
                             area=self.area)
