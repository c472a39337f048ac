"""What a node serves for an agency the synthetic world has no generator for: records from a file, or none.

The record categories, their kinds and field categories come from the policy vocabulary, and the MASH
contact from `redaction.yaml`, so a newly declared agency can be served without code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from agency_stubs.catalogue import CategorySpec
from agency_stubs.dataset import AgencyDataset, PersonEntry
from gateway.domain import AgencyContact, Field, Record
from gateway.linkage import normalise_nhs_number
from gateway.policy.snapshot import PolicySnapshot


def catalogue_from_policy(snapshot: PolicySnapshot, agency: str) -> tuple[CategorySpec, ...]:
    """The agency's record categories (not groups) as the vocabulary declares them, in declared order."""
    return tuple(
        CategorySpec(c.name, c.kind, c.record_type, c.description, tuple(c.fields.items()))
        for c in snapshot.vocabulary.record_categories.values()
        if c.agency == agency and not c.group and c.kind is not None
    )


def contact_from_policy(snapshot: PolicySnapshot, agency: str) -> AgencyContact:
    """The contact `redaction.yaml` gives the agency, else its title from the vocabulary."""
    return snapshot.redaction.contact_for(agency) or AgencyContact(agency, snapshot.agencies[agency].title)


SEEDED_RECORDS = Path(__file__).parent / "records"


def seeded_records(agency: str) -> Path | None:
    """The records file shipped for an agency the synthetic world does not generate (e.g. asc), if any."""
    path = SEEDED_RECORDS / f"{agency}.yaml"
    return path if path.is_file() else None


def policy_dataset(snapshot: PolicySnapshot, agency: str, records_file: Path | None = None) -> AgencyDataset:
    """A dataset for a declared agency: the people and records of `records_file`, or an empty holding.

    ValueError names the place in the file that is wrong (never its values).
    """
    catalogue = catalogue_from_policy(snapshot, agency)
    people: list[PersonEntry] = []
    if records_file is not None:
        doc = yaml.safe_load(records_file.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("people"), list):
            raise ValueError(f"{records_file}: expected a mapping with a `people` list")
        specs = {spec.category: spec for spec in catalogue}
        people = [_person(agency, specs, entry, f"{records_file}: people[{i}]")
                  for i, entry in enumerate(doc["people"])]
    return AgencyDataset(agency, people, mash_contact=contact_from_policy(snapshot, agency), catalogue=catalogue)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping")
    return value


def _text(entry: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = entry.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str | int | date) or isinstance(value, bool) or str(value).strip() == "":
        raise ValueError(f"{where}.{key}: expected a non-empty value")
    return str(value).strip()


def _person(agency: str, specs: Mapping[str, CategorySpec], raw: Any, where: str) -> PersonEntry:
    entry = _mapping(raw, where)
    unknown = set(entry) - {"person_ref", "given_name", "family_name", "date_of_birth", "nhs_number", "postcode",
                            "records"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        dob = date.fromisoformat(_text(entry, "date_of_birth", where))
    except ValueError:
        raise ValueError(f"{where}.date_of_birth: expected YYYY-MM-DD") from None
    nhs_number = _text(entry, "nhs_number", where, required=False)
    if nhs_number:
        try:
            nhs_number = normalise_nhs_number(nhs_number)
        except ValueError:
            raise ValueError(f"{where}.nhs_number: not a valid NHS number") from None
    raw_records = entry.get("records", [])
    if not isinstance(raw_records, list):
        raise ValueError(f"{where}.records: expected a list")
    return PersonEntry(
        person_ref=_text(entry, "person_ref", where),
        given_name=_text(entry, "given_name", where),
        family_name=_text(entry, "family_name", where),
        date_of_birth=dob,
        nhs_number=nhs_number,
        postcode=_text(entry, "postcode", where, required=False),
        records=tuple(_record(agency, specs, r, f"{where}.records[{i}]") for i, r in enumerate(raw_records)),
    )


def _record(agency: str, specs: Mapping[str, CategorySpec], raw: Any, where: str) -> Record:
    entry = _mapping(raw, where)
    category = _text(entry, "category", where)
    spec = specs.get(category)
    if spec is None:
        raise ValueError(f"{where}.category: not a record category the policy declares for {agency}")
    occurred = entry.get("occurred_at")
    if isinstance(occurred, str):
        try:
            occurred = datetime.fromisoformat(occurred)
        except ValueError:
            occurred = None
    if not isinstance(occurred, datetime) or occurred.tzinfo is None:
        raise ValueError(f"{where}.occurred_at: expected an ISO 8601 time with a UTC offset")
    values = _mapping(entry.get("fields", {}), f"{where}.fields")
    unknown = [name for name in values if name not in spec.field_names]
    if unknown:
        raise ValueError(f"{where}.fields: {category} has no field(s) {', '.join(sorted(unknown))}")
    return Record(
        agency=agency, record_id=_text(entry, "record_id", where), record_type=spec.record_type,
        category=category, kind=spec.kind, occurred_at=occurred,
        summary=_text(entry, "summary", where, required=False),
        fields=tuple(Field(name, spec.field_category(name), str(value)) for name, value in values.items()),
    )
