"""The policy vocabularies (agencies, roles, purposes, legal bases, categories, agreements, bindings)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from gateway.domain import RecordKind
from gateway.errors import Finding
from gateway.policy.schemas import (
    AgencyEntry,
    AgreementEntry,
    AreaEntry,
    CategoryEntry,
    Entry,
    FieldCategoryEntry,
    GroupEntry,
    LegalBasisEntry,
    Names,
    PurposeEntry,
    RoleEntry,
    entry_findings,
)
from gateway.policy.sources import NOWHERE, LineDict, LineList, Location, SourceError, line_in, load_yaml
from gateway.schema import problems

E = TypeVar("E", bound=Entry)

NAME = re.compile(r"[a-z][a-z0-9_]*")
CATEGORY_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
AGREEMENT_ID = re.compile(r"[a-z0-9][a-z0-9-]*")
IDENTITY = re.compile(r"spiffe://[a-z0-9.-]+(/[A-Za-z0-9._-]+)+")
_RETENTION = re.compile(r"(\d+) (day|days|month|months|year|years)")
_DAYS_PER = {"day": 1, "month": 31, "year": 366}

# Hierarchies deeper than this would be cut short by Casbin's role manager (10 levels), so the
# decision index and Casbin could disagree; such hierarchies are refused.
MAX_HIERARCHY_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Area:
    """An area of the partnership (a borough) that some agencies serve alone."""

    name: str
    title: str


@dataclass(frozen=True, slots=True)
class Agency:
    """A partner organisation; `holds_records` is false for the hub, which only asks."""

    name: str
    title: str
    holds_records: bool
    review_hours: int = 72  # how long its reviewers have to decide a review outside a rated referral
    escalate_after_hours: int = 0  # when a pending review also goes to escalation reviewers; 0: never
    area: str = ""  # the area it serves; "" for an agency that serves the whole partnership


@dataclass(frozen=True, slots=True)
class Role:
    """A role a practitioner acts in; groups are roles that only collect others and no one asserts."""

    name: str
    agency: str
    inside_mash: bool
    description: str
    member_of: tuple[str, ...] = ()
    group: bool = False
    sees_records: bool = True  # false for roles (auditor, policy administrator) no line may grant anything
    reviews: str = ""  # "first" or "escalation": decides its agency's reviews (escalation: once escalated)


@dataclass(frozen=True, slots=True)
class Purpose:
    """Why information is asked for; a group purpose only collects others and cannot be cited."""

    name: str
    description: str
    parent: str = ""
    legal_bases: tuple[str, ...] = ()
    retention: str = ""
    retention_days: int = 0
    dpv: str = ""
    group: bool = False


@dataclass(frozen=True, slots=True)
class LegalBasis:
    """A lawful basis for processing, with the legislation it comes from."""

    name: str
    title: str
    uri: str


@dataclass(frozen=True, slots=True)
class RecordCategory:
    """A category of records an agency holds (or a group of them, such as the agency's own root)."""

    name: str
    agency: str
    parent: str
    description: str
    kind: RecordKind | None = None
    record_type: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)
    group: bool = False
    protected: bool = False
    protected_readers: tuple[str, ...] = ()
    # The subject kind ("child" or "adult") whose open-case check asks this category (status, allocated team
    # and worker), or "" when none does.
    open_cases: str = ""


@dataclass(frozen=True, slots=True)
class FieldCategory:
    """A kind of value inside records; redaction rules speak about these."""

    name: str
    description: str


@dataclass(frozen=True, slots=True)
class Agreement:
    """A signed data-sharing agreement: who may share what, for which purposes, and when."""

    name: str
    title: str
    parties: frozenset[str]
    purposes: frozenset[str]
    categories: frozenset[str]
    valid_from: date
    valid_until: date
    cross_area: bool = False  # a party in one area may ask a party in another under it

    def in_force(self, on: date) -> bool:
        return self.valid_from <= on <= self.valid_until


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Every declared name of a policy directory, with where each was declared."""

    agencies: Mapping[str, Agency]
    roles: Mapping[str, Role]
    purposes: Mapping[str, Purpose]
    legal_bases: Mapping[str, LegalBasis]
    record_categories: Mapping[str, RecordCategory]
    field_categories: Mapping[str, FieldCategory]
    agreements: Mapping[str, Agreement]
    bindings: Mapping[str, frozenset[str]]
    declared_at: Mapping[tuple[str, str], Location]  # (kind, name) -> where it was declared
    malformed: frozenset[tuple[str, str]] = frozenset()  # (kind, name) declared by an entry with errors
    # The partnership's areas (boroughs); empty when it declares none (vocabulary/areas.yaml is optional).
    areas: Mapping[str, Area] = field(default_factory=lambda: MappingProxyType({}))

    def unknown(self, kind: str, name: str, known: Iterable[str]) -> str:
        """The finding for a name used but not (well) declared."""
        if (kind, name) in self.malformed:
            return f"{kind} {name!r} cannot be used: its entry at {self.where(kind, name)} has errors"
        return undeclared(kind, name, known)

    @property
    def open_case_category(self) -> str:
        """The category the children's open-case check asks for (`open_cases: child` or `true`), or ""."""
        return self.open_case_category_for("child")

    def open_case_category_for(self, subject_kind: str) -> str:
        """The category the open-case check for a child or an adult at risk asks for, or "" when none is declared."""
        return next((n for n, c in self.record_categories.items() if c.open_cases == subject_kind), "")

    def where(self, kind: str, name: str) -> Location:
        """Where a name was declared, or NOWHERE."""
        return self.declared_at.get((kind, name), NOWHERE)


OPEN_CASE_FIELDS = ("case_status", "allocated_team", "allocated_worker")
"""The fields an open-case category must declare: screening reads exactly these."""

SUBJECT_KINDS = ("child", "adult")
"""Whom a referral and an open-case check are about: a child, or an adult at risk."""

VOCABULARY_FILES = {
    "agencies": "vocabulary/agencies.yaml",
    "roles": "vocabulary/roles.yaml",
    "purposes": "vocabulary/purposes.yaml",
    "legal_bases": "vocabulary/legal_bases.yaml",
    "record_categories": "vocabulary/record_categories.yaml",
    "field_categories": "vocabulary/field_categories.yaml",
    "agreements": "agreements.yaml",
    "bindings": "bindings.yaml",
}

AREAS_FILE = "vocabulary/areas.yaml"
"""The partnership's areas (boroughs); optional: without it no agency names an area and nothing changes."""


class _Reader:
    """Reads the entries of line-numbered YAML through their schemas, collecting findings with file:line."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        self.declared_at: dict[tuple[str, str], Location] = {}
        # Names declared with a malformed entry: references to them are not reported as undeclared too.
        self.broken: set[tuple[str, str]] = set()

    def error(self, file: str, line: int, message: str) -> None:
        self.findings.append(Finding(file, line, message))

    def section(self, doc: LineDict, key: str, file: str) -> LineDict:
        value = doc.get(key)
        if value is None:
            self.error(file, doc.line, f"missing top-level key {key!r}")
            return _empty(doc.line)
        if not isinstance(value, LineDict):
            self.error(file, doc.line_of(key), f"{key!r} must be a mapping of names to entries")
            return _empty(doc.line)
        for extra in doc:
            if extra != key:
                self.error(file, doc.line_of(extra), f"unknown top-level key {extra!r}")
        return value

    def entries(
        self,
        section: LineDict,
        file: str,
        kind: str,
        pattern: re.Pattern[str],
        schema: type[E],
    ) -> Iterable[tuple[str, E, LineDict, int]]:
        """Each well-formed entry as (name, validated entry, its YAML, line); a finding for each other one."""
        for name, raw in section.items():
            line = section.line_of(name)
            if not pattern.fullmatch(name):
                self.error(file, line, f"{kind} name {name!r} is not a valid name ({pattern.pattern})")
                continue
            entry = _empty(line) if raw is None else raw
            if not isinstance(entry, LineDict):
                self.error(file, line, f"{kind} {name!r} must be a mapping")
                continue
            self.declared_at[(kind, name)] = Location(file, line)
            try:
                model = schema.model_validate(entry)
            except ValidationError as exc:
                self.broken.add((kind, name))
                self.findings += entry_findings(exc, entry, file, f"{kind} {name!r}: ", schema)
                continue
            yield name, model, entry, line

    def known(self, kind: str, names: Mapping[str, object]) -> set[str]:
        """Declared names of a kind, including those whose entries are malformed (already reported)."""
        return set(names) | {n for k, n in self.broken if k == kind}


def _named(entry: LineDict, key: str, names: Iterable[str]) -> list[tuple[str, int]]:
    """Each name of a validated list with the line it was written on."""
    value = entry.get(key)
    return [
        (name, value.line_of(i) if isinstance(value, LineList) else entry.line_of(key))
        for i, name in enumerate(names)
    ]


def _empty(line: int) -> LineDict:
    result = LineDict()
    result.line, result.key_lines = line, {}
    return result


def undeclared(what: str, name: str, known: Iterable[str]) -> str:
    """The finding for a name nobody declared, suggesting the closest declared name of that kind."""
    # A high cutoff: a suggestion should be the typo's fix, not a merely similar name (police.marac
    # for police.traffic) that a hurried reader might accept.
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.8)
    return f"undeclared {what} {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _check_refs(
    reader: _Reader,
    refs: Iterable[tuple[str, str, int]],
    known: Mapping[str, object] | set[str],
    what: str,
) -> None:
    for name, file, line in refs:
        if name not in known:
            reader.error(file, line, undeclared(what, name, known))


def _hierarchy_problems(
    parents: Mapping[str, Iterable[str]],
    kind: str,
    where: Callable[[str], Location],
) -> list[Finding]:
    """Cycles and over-deep chains in a child -> parents hierarchy."""
    findings: list[Finding] = []
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(node: str) -> int:
        if node in depth:
            return depth[node]
        if node in visiting:
            findings.append(where(node).finding(f"{kind} hierarchy has a cycle through {node!r}"))
            depth[node] = 0
            return 0
        visiting.add(node)
        best = 0
        for parent in parents.get(node, ()):
            best = max(best, 1 + visit(parent))
        visiting.discard(node)
        depth[node] = best
        return best

    for node in sorted(parents):
        if visit(node) > MAX_HIERARCHY_DEPTH and not any(node in f.message for f in findings):
            findings.append(
                where(node).finding(
                    f"{kind} {node!r} sits {depth[node]} levels deep; at most {MAX_HIERARCHY_DEPTH} are supported"
                )
            )
    return findings


def load_vocabulary(
    directory: Path,
    findings: list[Finding],
    unreadable: list[Finding] | None = None,
) -> Vocabulary:
    """Read every vocabulary file of `directory`, appending a Finding for each problem.

    Files that are missing or cannot be parsed at all are also listed in `unreadable`.
    """
    unreadable = unreadable if unreadable is not None else []
    reader = _Reader(findings)
    docs: dict[str, LineDict] = {}
    for key, rel in VOCABULARY_FILES.items():
        path = directory / rel
        if not path.is_file():
            reader.error(rel, 0, "file is missing")
            unreadable.append(findings[-1])
            docs[key] = _empty(1)
            continue
        try:
            docs[key] = load_yaml(path, rel)
        except SourceError as exc:
            findings.append(exc.finding)
            unreadable.append(exc.finding)
            docs[key] = _empty(1)
    areas = _areas(reader, directory, findings, unreadable)
    agencies = _agencies(reader, docs["agencies"], areas)
    legal_bases = _legal_bases(reader, docs["legal_bases"])
    field_categories = _field_categories(reader, docs["field_categories"])
    roles = _roles(reader, docs["roles"], agencies)
    purposes = _purposes(reader, docs["purposes"], legal_bases)
    categories = _record_categories(reader, docs["record_categories"], agencies, field_categories, roles)
    agreements = _agreements(reader, docs["agreements"], agencies, purposes, categories)
    bindings = _bindings(reader, docs["bindings"], roles)
    return Vocabulary(
        agencies=MappingProxyType(agencies),
        roles=MappingProxyType(roles),
        purposes=MappingProxyType(purposes),
        legal_bases=MappingProxyType(legal_bases),
        record_categories=MappingProxyType(categories),
        field_categories=MappingProxyType(field_categories),
        agreements=MappingProxyType(agreements),
        bindings=MappingProxyType(bindings),
        declared_at=MappingProxyType(reader.declared_at),
        malformed=frozenset(reader.broken),
        areas=MappingProxyType(areas),
    )


def _areas(reader: _Reader, directory: Path, findings: list[Finding], unreadable: list[Finding]) -> dict[str, Area]:
    path = directory / AREAS_FILE
    if not path.exists():
        return {}
    try:
        doc = load_yaml(path, AREAS_FILE)
    except SourceError as exc:
        findings.append(exc.finding)
        unreadable.append(exc.finding)
        return {}
    section = reader.section(doc, "areas", AREAS_FILE)
    entries = reader.entries(section, AREAS_FILE, "area", NAME, AreaEntry)
    return {name: Area(name, entry.title) for name, entry, _, _ in entries}


def _agencies(reader: _Reader, doc: LineDict, areas: Mapping[str, Area]) -> dict[str, Agency]:
    file = VOCABULARY_FILES["agencies"]
    section = reader.section(doc, "agencies", file)
    result = {}
    known = reader.known("area", areas)
    for name, entry, raw, _ in reader.entries(section, file, "agency", NAME, AgencyEntry):
        if entry.area and entry.area not in known:
            reader.error(file, raw.line_of("area"), f"agency {name!r}: " + undeclared("area", entry.area, areas)
                         + ("" if areas else f" ({AREAS_FILE} declares none)"))
        result[name] = Agency(
            name, entry.title, entry.holds_records, entry.review_hours, entry.escalate_after_hours, entry.area
        )
    return result


def _legal_bases(reader: _Reader, doc: LineDict) -> dict[str, LegalBasis]:
    file = VOCABULARY_FILES["legal_bases"]
    result = {}
    section = reader.section(doc, "legal_bases", file)
    for name, entry, raw, _ in reader.entries(section, file, "legal basis", NAME, LegalBasisEntry):
        if not entry.uri.startswith("https://"):
            reader.error(
                file,
                raw.line_of("uri"),
                f"legal basis {name!r}: uri must be an https:// link to the legislation",
            )
        result[name] = LegalBasis(name, entry.title, entry.uri)
    return result


def _field_categories(reader: _Reader, doc: LineDict) -> dict[str, FieldCategory]:
    file = VOCABULARY_FILES["field_categories"]
    section = reader.section(doc, "field_categories", file)
    return {
        name: FieldCategory(name, entry.description)
        for name, entry, _, _ in reader.entries(
            section, file, "field category", CATEGORY_NAME, FieldCategoryEntry
        )
    }


def _roles(reader: _Reader, doc: LineDict, agencies: Mapping[str, Agency]) -> dict[str, Role]:
    file = VOCABULARY_FILES["roles"]
    result: dict[str, Role] = {}
    refs: list[tuple[str, str, int]] = []
    for key in ("roles", "groups"):
        if key not in doc:
            reader.error(file, doc.line, f"missing top-level key {key!r}")
    for extra in doc:
        if extra not in ("roles", "groups"):
            reader.error(file, doc.line_of(extra), f"unknown top-level key {extra!r}")
    raw_groups, raw_roles = doc.get("groups"), doc.get("roles")
    groups = raw_groups if isinstance(raw_groups, LineDict) else _empty(doc.line)
    roles = raw_roles if isinstance(raw_roles, LineDict) else _empty(doc.line)
    sections: tuple[tuple[LineDict, type[RoleEntry | GroupEntry]], ...] = ((roles, RoleEntry), (groups, GroupEntry))
    for section, schema in sections:
        for name, entry, raw, line in reader.entries(section, file, "role", NAME, schema):
            if name in result:
                reader.error(file, line, f"role {name!r} is declared twice")
                continue
            refs += [(m, file, ln) for m, ln in _named(raw, "member_of", entry.member_of)]
            asserted = entry if isinstance(entry, RoleEntry) else None
            agency = asserted.agency if asserted else ""
            if agency and agency not in reader.known("agency", agencies):
                reader.error(file, raw.line_of("agency"), undeclared("agency", agency, agencies))
            result[name] = Role(
                name=name,
                agency=agency,
                inside_mash=asserted.inside_mash if asserted else False,
                description=entry.description,
                member_of=tuple(entry.member_of),
                group=asserted is None,
                sees_records=asserted.sees_records if asserted else True,
                reviews=(asserted.reviews or "") if asserted else "",
            )
    for name, role in result.items():
        for parent in role.member_of:
            if parent in result and not result[parent].group:
                reader.findings.append(
                    reader.declared_at[("role", name)].finding(
                        f"role {name!r} is a member of {parent!r}, which is not a group"
                    )
                )
    _check_refs(reader, refs, reader.known("role", result), "role")
    reader.findings += _hierarchy_problems(
        {n: [p for p in r.member_of if p in result] for n, r in result.items()},
        "role",
        lambda n: reader.declared_at.get(("role", n), Location(file, 0)),
    )
    return result


def _purposes(reader: _Reader, doc: LineDict, legal_bases: Mapping[str, LegalBasis]) -> dict[str, Purpose]:
    file = VOCABULARY_FILES["purposes"]
    result: dict[str, Purpose] = {}
    parents: list[tuple[str, str, int]] = []
    section = reader.section(doc, "purposes", file)
    for name, entry, raw, _ in reader.entries(section, file, "purpose", NAME, PurposeEntry):
        parent = entry.parent
        if parent:
            parents.append((parent, file, raw.line_of("parent")))
        bases = _named(raw, "legal_bases", entry.legal_bases)
        _check_refs(
            reader, [(b, file, ln) for b, ln in bases], reader.known("legal basis", legal_bases), "legal basis"
        )
        retention = entry.retention
        days = 0
        if retention:
            match = _RETENTION.fullmatch(retention)
            if match is None:
                reader.error(
                    file,
                    raw.line_of("retention"),
                    f"purpose {name!r}: retention must read like '6 years', '18 months' or '90 days'",
                )
            else:
                days = int(match.group(1)) * _DAYS_PER[match.group(2).rstrip("s")]
        dpv = entry.dpv
        if dpv and not (dpv.startswith("dpv:") or dpv.startswith("https://w3id.org/dpv")):
            reader.error(
                file,
                raw.line_of("dpv"),
                f"purpose {name!r}: dpv must be a W3C DPV term such as 'dpv:ServiceProvision'",
            )
        result[name] = Purpose(
            name=name,
            description=entry.description,
            parent=parent,
            legal_bases=tuple(entry.legal_bases),
            retention=retention,
            retention_days=days,
            dpv=dpv,
            group=entry.group,
        )
    _check_refs(reader, parents, reader.known("purpose", result), "purpose")
    reader.findings += _hierarchy_problems(
        {n: [p.parent] if p.parent in result else [] for n, p in result.items()},
        "purpose",
        lambda n: reader.declared_at.get(("purpose", n), Location(file, 0)),
    )
    return result


def _record_categories(
    reader: _Reader,
    doc: LineDict,
    agencies: Mapping[str, Agency],
    field_categories: Mapping[str, FieldCategory],
    roles: Mapping[str, Role],
) -> dict[str, RecordCategory]:
    file = VOCABULARY_FILES["record_categories"]
    result: dict[str, RecordCategory] = {}
    # Every agency that holds records is the root of its own categories, so a line can grant "police".
    for holder in agencies.values():
        if holder.holds_records:
            result[holder.name] = RecordCategory(
                holder.name, holder.name, "", f"everything {holder.title} holds", group=True
            )
            reader.declared_at[("category", holder.name)] = reader.declared_at.get(
                ("agency", holder.name), NOWHERE
            )
    # The categories of an agency whose entry is malformed are not reported again, nor where they are used.
    broken_agencies = {n for k, n in reader.broken if k == "agency"}
    reader.broken |= {("category", n) for n in broken_agencies}
    parents: list[tuple[str, str, int]] = []
    unprotected: dict[str, int] = {}  # categories that say `protected: false` outright
    reader_lines: dict[str, int] = {}
    section = reader.section(doc, "record_categories", file)
    for name, entry, raw, line in reader.entries(section, file, "category", CATEGORY_NAME, CategoryEntry):
        if name in result:
            reader.error(file, line, f"category {name!r} is declared twice (agency roots are implicit)")
            continue
        agency = name.split(".", 1)[0]
        if agency in broken_agencies:
            reader.broken.add(("category", name))
            continue
        if agency not in agencies or not agencies[agency].holds_records:
            reader.error(
                file, line, f"category {name!r} must start with the name of an agency that holds records"
            )
            continue
        parent = entry.parent or agency
        if parent != agency and not parent.startswith(agency + "."):
            reader.error(
                file,
                raw.line_of("parent"),
                f"category {name!r} cannot sit under {parent!r}, which belongs to another agency",
            )
        parents.append((parent, file, raw.line_of("parent")))
        if not entry.group:
            for key, value in (("kind", entry.kind), ("record_type", entry.record_type)):
                if not value:
                    reader.error(file, line, f"category {name!r}: {key} is required (or mark it `group: true`)")
            if entry.fields is None:
                reader.error(file, line, f"category {name!r} lists no fields")
        fields: dict[str, str] = {}
        for field_name, field_category in (entry.fields or {}).items():
            if field_category in field_categories:
                fields[field_name] = field_category
            else:
                reader.error(
                    file,
                    line_in(raw, ("fields", field_name)),
                    undeclared("field category", field_category, field_categories) + f" for field {field_name!r}",
                )
        if entry.protected is False:
            unprotected[name] = raw.line_of("protected")
        readers = _named(raw, "readers", entry.readers)
        _check_refs(reader, [(r, file, ln) for r, ln in readers], reader.known("role", roles), "role")
        if readers:
            reader_lines[name] = raw.line_of("readers")
        result[name] = RecordCategory(
            name=name,
            agency=agency,
            parent=parent,
            description=entry.description,
            kind=entry.kind,
            record_type=entry.record_type,
            fields=MappingProxyType(fields),
            group=entry.group,
            protected=bool(entry.protected),
            protected_readers=tuple(entry.readers),
            open_cases=_subject_kind(entry.open_cases),
        )
        if entry.open_cases:
            missing = [f for f in OPEN_CASE_FIELDS if f not in fields]
            if missing:
                reader.error(file, raw.line_of("open_cases"),
                             f"category {name!r} answers the open-case check, so it needs the fields "
                             f"{', '.join(OPEN_CASE_FIELDS)} (missing: {', '.join(missing)})")
    for kind in SUBJECT_KINDS:
        open_case = [n for n, c in result.items() if c.open_cases == kind]
        for extra in open_case[1:]:
            reader.error(file, reader.declared_at.get(("category", extra), Location(file, 0)).line,
                         f"only one category may answer the open-case check ({kind}); "
                         f"{open_case[0]!r} already does")
    _check_refs(reader, parents, reader.known("category", result), "category")
    reader.findings += _hierarchy_problems(
        {n: [c.parent] if c.parent in result else [] for n, c in result.items()},
        "category",
        lambda n: reader.declared_at.get(("category", n), Location(file, 0)),
    )
    return _inherit_protection(reader, result, unprotected, reader_lines)


def _subject_kind(open_cases: bool | str) -> str:
    """`open_cases: true` is the children's check (as before adults' MASHes); a kind names its subject."""
    if open_cases is True:
        return "child"
    return open_cases or ""


def _inherit_protection(
    reader: _Reader,
    categories: dict[str, RecordCategory],
    unprotected: Mapping[str, int],
    reader_lines: Mapping[str, int],
) -> dict[str, RecordCategory]:
    """Every category below a protected one is protected too, read only by readers all of them allow.

    Otherwise a sub-category (clinic notes under sexual health) would escape the protection.
    """
    file = VOCABULARY_FILES["record_categories"]
    result = dict(categories)
    for name, category in categories.items():
        above = [
            categories[a]
            for a in ancestors(name, lambda n: (categories[n].parent,) if n in categories else ())
            if a in categories and categories[a].protected
        ]
        if name in reader_lines and not above:
            reader.error(file, reader_lines[name], "readers only make sense on a protected category")
        if not above or (len(above) == 1 and above[0] is category):
            continue
        guards = [c for c in above if c is not category]
        if name in unprotected:
            reader.error(
                file,
                unprotected[name],
                f"category {name!r} sits under protected {guards[0].name!r}, so it is protected too",
            )
        allowed = set.intersection(*(set(c.protected_readers) for c in guards))
        own = category.protected_readers
        for extra in (r for r in own if r not in allowed):
            reader.error(
                file,
                reader_lines.get(name, 0),
                f"reader {extra!r} of {name!r} is not a reader of the protected category above it",
            )
        readers = tuple(r for r in (own or guards[0].protected_readers) if r in allowed)
        result[name] = replace(category, protected=True, protected_readers=readers)
    return result


def _agreements(
    reader: _Reader,
    doc: LineDict,
    agencies: Mapping[str, Agency],
    purposes: Mapping[str, Purpose],
    categories: Mapping[str, RecordCategory],
) -> dict[str, Agreement]:
    file = VOCABULARY_FILES["agreements"]
    result = {}
    section = reader.section(doc, "agreements", file)
    for name, entry, raw, _ in reader.entries(section, file, "agreement", AGREEMENT_ID, AgreementEntry):
        for key, names, known, what in (
            ("parties", entry.parties, reader.known("agency", agencies), "agency"),
            ("purposes", entry.purposes, reader.known("purpose", purposes), "purpose"),
            ("categories", entry.categories, reader.known("category", categories), "category"),
        ):
            _check_refs(reader, [(n, file, ln) for n, ln in _named(raw, key, names)], known, what)
        if entry.valid_until < entry.valid_from:
            reader.error(file, raw.line_of("valid_until"), f"agreement {name!r} ends before it starts")
        result[name] = Agreement(
            name,
            entry.title,
            frozenset(entry.parties),
            frozenset(entry.purposes),
            frozenset(entry.categories),
            entry.valid_from,
            entry.valid_until,
            entry.cross_area,
        )
    return result


_ROLE_LIST: TypeAdapter[list[str]] = TypeAdapter(Names, config=ConfigDict(strict=True))


def _bindings(reader: _Reader, doc: LineDict, roles: Mapping[str, Role]) -> dict[str, frozenset[str]]:
    file = VOCABULARY_FILES["bindings"]
    section = reader.section(doc, "bindings", file)
    result: dict[str, frozenset[str]] = {}
    known = reader.known("role", roles)
    for identity, value in section.items():
        line = section.line_of(identity)
        if not IDENTITY.fullmatch(identity):
            reader.error(file, line, f"{identity!r} is not a certificate identity (spiffe://<domain>/...)")
            continue
        try:
            names = _ROLE_LIST.validate_python(value)
        except ValidationError as exc:
            for problem in problems(exc, partial(line_in, value)):
                where = problem.line or line
                reader.error(file, where, f"{identity}: roles {problem.key} {problem.message}".replace("  ", " "))
            continue
        for role, role_line in _named(section, identity, names):
            if role not in known:
                reader.error(file, role_line, undeclared("role", role, roles))
            elif role in roles and roles[role].group:
                reader.error(file, role_line, f"{role!r} is a group; a certificate can only assert roles")
        result[identity] = frozenset(names)
    return result


def ancestors(start: str, parents: Callable[[str], Iterable[str]]) -> frozenset[str]:
    """`start` and everything above it in a hierarchy given by `parents`."""
    seen = {start}
    todo = [start]
    while todo:
        for parent in parents(todo.pop()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return frozenset(seen)


def role_parents(vocab: Vocabulary) -> Callable[[str], Iterable[str]]:
    return lambda n: vocab.roles[n].member_of if n in vocab.roles else ()


def purpose_parents(vocab: Vocabulary) -> Callable[[str], Iterable[str]]:
    return lambda n: (vocab.purposes[n].parent,) if n in vocab.purposes and vocab.purposes[n].parent else ()


def category_parents(vocab: Vocabulary) -> Callable[[str], Iterable[str]]:
    def parents(n: str) -> Iterable[str]:
        c = vocab.record_categories.get(n)
        return (c.parent,) if c is not None and c.parent else ()

    return parents
