"""Hypothesis strategies and catalogue helpers for redaction tests, reusable by wire-level tests.

Generated values are planted canaries: every value in one generated answer is distinct, and no
restricted value can occur by chance inside another value, so a search of the serialised output for a
value finds it only if that value leaked.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from hypothesis import strategies as st

from gateway.domain import DisclosureLevel, Field, Record, RecordKind
from gateway.policy import load_snapshot
from gateway.policy.vocabulary import Vocabulary
from gateway.redaction import RedactionContext, RedactionRules, load_rules

REPO_ROOT = Path(__file__).resolve().parents[3]
CATALOGUE_PATH = REPO_ROOT / "docs" / "catalogue.md"
SHIPPED_RULES_PATH = REPO_ROOT / "policies" / "redaction.yaml"


@functools.cache
def shipped_vocabulary() -> Vocabulary:
    """The vocabulary of the shipped policies/ directory."""
    return load_snapshot(REPO_ROOT / "policies").vocabulary


AGENCIES = tuple(a.name for a in shipped_vocabulary().agencies.values() if a.holds_records)
"""The agencies that hold records, in the order the vocabulary declares them."""

UNLISTED_FIELD_CATEGORY = "unlisted.category"
"""A field category no rule speaks about, to check that such fields are withheld (fail closed)."""

CANARY_PREFIX = "cnry"
MIN_SEARCHABLE_LENGTH = 6
"""Values shorter than this (handling codes such as ``P``) are too short to search the output for."""


@dataclass(frozen=True, slots=True)
class CatalogueCategory:
    """One record category of docs/catalogue.md with its record type, kind and fields."""

    agency: str
    category: str
    kind: RecordKind
    record_type: str
    fields: tuple[tuple[str, str], ...]  # (field name, field category)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The agencies, field categories and record categories of docs/catalogue.md."""

    agencies: tuple[str, ...]
    field_categories: frozenset[str]
    categories: tuple[CatalogueCategory, ...]
    protected: frozenset[str]

    @property
    def record_categories(self) -> frozenset[str]:
        return frozenset(c.category for c in self.categories)

    def of_agency(self, agency: str) -> tuple[CatalogueCategory, ...]:
        return tuple(c for c in self.categories if c.agency == agency)


_FIELD_ROW = re.compile(r"^\| `([a-z_]+\.[a-z_]+)` \|", re.MULTILINE)
_RECORD_ROW = re.compile(
    r"^\| `([a-z]+)\.([a-z0-9_]+)` \| (event|state|involvement) \| `([a-z_]+)` \| (.+?) \|$", re.MULTILINE
)
_FIELD_SPEC = re.compile(r"([a-z_0-9]+)(?: \([^)]*\))?: ([a-z_]+\.[a-z_]+)")


@functools.cache
def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    """Parse the catalogue's field-category table and record-category tables."""
    text = path.read_text(encoding="utf-8")
    field_section = text.split("## Field categories", 1)[1].split("## Record categories", 1)[0]
    field_categories = frozenset(_FIELD_ROW.findall(field_section))
    categories = []
    for agency, name, kind, record_type, spec in _RECORD_ROW.findall(text):
        fields = tuple((m.group(1), m.group(2)) for m in _FIELD_SPEC.finditer(spec))
        category = CatalogueCategory(agency, f"{agency}.{name}", RecordKind(kind), record_type, fields)
        categories.append(category)
    protected = frozenset(shipped_protection())
    return Catalogue(AGENCIES, field_categories, tuple(categories), protected)


@functools.cache
def shipped_protection() -> Mapping[str, tuple[str, ...]]:
    """The protected record categories of the shipped vocabulary and the roles that may read each."""
    categories = shipped_vocabulary().record_categories
    return {name: c.protected_readers for name, c in categories.items() if c.protected}


@functools.cache
def shipped_rules() -> RedactionRules:
    """The shipped policies/redaction.yaml, validated against the catalogue's names."""
    cat = load_catalogue()
    return load_rules(
        SHIPPED_RULES_PATH,
        agencies=cat.agencies,
        field_categories=cat.field_categories,
        record_categories=cat.record_categories,
        protected=shipped_protection(),
    )


@dataclass(frozen=True, slots=True)
class Role:
    """A role of the shipped vocabulary, its home agency and whether it works inside the MASH."""

    name: str
    home_agency: str
    inside_mash: bool


ROLES: tuple[Role, ...] = tuple(
    Role(r.name, r.agency, r.inside_mash) for r in shipped_vocabulary().roles.values() if not r.group and r.sees_records
)
"""Every role of the shipped vocabulary that may be granted records."""


# Canary text: letters (some non-ASCII) and spaces only, so no date, postcode, NHS number or hex digest
# can appear inside it, and it cannot appear inside them.
_CANARY_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ éßÆЖ"
_canary_body = st.text(alphabet=_CANARY_ALPHABET, min_size=2, max_size=12)
_POSTCODE_LETTERS = "ABDEFGHJLNPRSTUWXYZ"

# Field values are dated before 2020 and record times from 2020 on, so a held date never reappears by
# chance inside a released timestamp.
_FIELD_DATES = st.dates(min_value=date(1990, 1, 1), max_value=date(2019, 12, 31))
_RECORD_TIMES = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2023, 12, 31), timezones=st.just(UTC)
)
DISCLOSURE_DATES = st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31))


@st.composite
def postcodes(draw: st.DrawFn) -> str:
    """Valid UK postcodes whose area has two letters, so one can never sit inside another."""
    area = draw(st.text(alphabet=_POSTCODE_LETTERS, min_size=2, max_size=2))
    district = str(draw(st.integers(1, 9))) + draw(st.sampled_from(["", "0", "1", "A", "W"]))
    sector = str(draw(st.integers(0, 9)))
    unit = draw(st.text(alphabet=_POSTCODE_LETTERS, min_size=2, max_size=2))
    space = draw(st.sampled_from([" ", ""]))
    return f"{area}{district}{space}{sector}{unit}"


@st.composite
def nhs_numbers(draw: st.DrawFn) -> str:
    """Ten-digit NHS numbers with a valid check digit."""
    while True:
        digits = draw(st.lists(st.integers(0, 9), min_size=9, max_size=9))
        check = 11 - sum(d * (10 - i) for i, d in enumerate(digits)) % 11
        if check != 10:
            return "".join(map(str, digits)) + str(0 if check == 11 else check)


def canary(body: str, serial: int) -> str:
    """A planted value: the prefix, random letters, and a serial that makes it unique in the answer."""
    return f"{CANARY_PREFIX}{body}#{serial}#"


@st.composite
def field_value(draw: st.DrawFn, category: str, serial: int) -> str:
    """A value typical for `category`, or (sometimes) a canary that an operator must cope with."""
    if draw(st.integers(0, 9)) == 0:
        return canary(draw(_canary_body), serial)
    if category in ("person.date_of_birth", "record.date"):
        return draw(_FIELD_DATES).isoformat()
    if category == "person.postcode":
        return draw(postcodes())
    if category == "person.nhs_number":
        return draw(nhs_numbers())
    if category == "police.handling_code":
        return draw(st.sampled_from(["P", "C", "C", "P", "X", "", "p", " C "]))
    return canary(draw(_canary_body), serial)


@st.composite
def records_for(
    draw: st.DrawFn, agency: str, serials: list[int], used: set[str], categories: Sequence[str] = ()
) -> Record:
    """One record of a catalogue category of `agency` (or of `categories`), with distinct field values."""
    catalogue = load_catalogue()
    choices = [c for c in catalogue.of_agency(agency) if not categories or c.category in categories]
    cat = draw(st.sampled_from(choices))
    specs = list(cat.fields)
    if draw(st.integers(0, 4)) == 0:
        extra = draw(st.sampled_from([UNLISTED_FIELD_CATEGORY, *sorted(catalogue.field_categories)]))
        specs.append(("extra_field", extra))
    fields = []
    for name, category in specs:
        serials[0] += 1
        value = draw(field_value(category, serials[0]))
        if value in used and len(value) >= MIN_SEARCHABLE_LENGTH:
            value = canary("dup", serials[0])
        used.add(value)
        fields.append(Field(name, category, value))
    serials[0] += 1
    # Record ids and summaries name the category, as an agency system might, so a leak of them for a
    # protected record is caught by a search for the category name.
    record_id = f"{cat.category}-{serials[0]}"
    summary = f"summary of {cat.record_type} {serials[0]}"
    occurred = draw(_RECORD_TIMES)
    return Record(
        agency, record_id, cat.record_type, cat.category, cat.kind, occurred, summary, tuple(fields)
    )


@st.composite
def answers(draw: st.DrawFn, agency: str, *, max_records: int = 6) -> list[Record]:
    """One agency's answer: a few records with values distinct across the whole answer."""
    serials = [0]
    used: set[str] = set()
    count = draw(st.integers(0, max_records))
    return [draw(records_for(agency, serials, used)) for _ in range(count)]


@st.composite
def contexts(
    draw: st.DrawFn, agency: str, levels: Sequence[DisclosureLevel] = tuple(DisclosureLevel)
) -> RedactionContext:
    """A caller (role, home agency, inside or outside the MASH) granted some level for `agency`."""
    role = draw(st.sampled_from(ROLES))
    return RedactionContext(
        agency=agency,
        level=draw(st.sampled_from(tuple(levels))),
        role=role.name,
        requester_agency=role.home_agency,
        inside_mash=role.inside_mash,
        disclosure_date=draw(DISCLOSURE_DATES),
    )


def searchable(value: str) -> bool:
    """Whether a held value is long enough that finding it in the output means it leaked."""
    return len(value) >= MIN_SEARCHABLE_LENGTH


def handling_code_releases(record: Record, rules: RedactionRules) -> bool:
    """The contract's handling-code rule, stated independently: P, or C with non-empty conditions."""
    sg = rules.safeguarding
    codes = {f.value.strip().upper() for f in record.fields if f.category == sg.handling_code_field}
    if codes == {"P"}:
        return True
    if codes == {"C"}:
        return any(f.value.strip() for f in record.fields if f.category == sg.handling_conditions_field)
    return False


def is_owner(record: Record, ctx: RedactionContext) -> bool:
    """Whether the caller's agency owns the record: it holds it and the record's category is under it."""
    return record.agency == ctx.requester_agency and record.category.startswith(record.agency + ".")


def is_withheld_generically(record: Record, ctx: RedactionContext, rules: RedactionRules) -> bool:
    """Whether the record is a protected one the caller, not one of its declared readers, may not see named."""
    readers = rules.safeguarding.protected_readers.get(record.category)
    if readers is None:
        return False
    genuine = record.agency == ctx.agency and record.category.startswith(record.agency + ".")
    return not (genuine and ctx.role in readers)


def may_see_in_full(record: Record, field: Field, ctx: RedactionContext, rules: RedactionRules) -> bool:
    """An oracle, written from the specification rather than the code: may this caller see the value?"""
    sg = rules.safeguarding
    if is_withheld_generically(record, ctx, rules):
        return False
    if record.agency != ctx.agency or ctx.level < DisclosureLevel.PERTINENT:
        return False
    coded = record.category in sg.handling_code_record_categories and not is_owner(record, ctx)
    if coded and not handling_code_releases(record, rules):
        return False
    if ctx.level < DisclosureLevel.FULL and rules.record_rule_for(ctx.agency, record.category) is not None:
        return False  # existence only releases no field, so there is nothing for handling conditions to govern
    if coded and field.category == sg.handling_conditions_field and any(
        f.value.strip().upper() == "C" for f in record.fields if f.category == sg.handling_code_field
    ):
        return True  # conditions travel with the record
    if not ctx.inside_mash and field.category in sg.pseudonymise_outside_mash:
        return False
    if ctx.level == DisclosureLevel.FULL:
        return True
    rule = rules.rule_for(ctx.agency, field.category)
    return rule is not None and rule.operator == "keep"


# -- random rule files -----------------------------------------------------------------------------------

SAFEGUARDING_BLOCK = """\
safeguarding:
  pseudonymise_outside_mash:
    field_categories: [third_party.identity, household.member]
    domain: person
  handling_codes:
    record_categories: [police.intelligence]
    code_field: police.handling_code
    conditions_field: police.handling_conditions
"""

_BAND_CHOICES = ("[0, 18]", "[0, 1, 5, 11, 16, 18, 25]", "[0, 13, 16]")


@st.composite
def operator_specs(draw: st.DrawFn) -> str:
    """One valid operator with parameters, written as the rule file writes it."""
    operator = draw(st.sampled_from(
        ["keep", "drop", "agency_summary", "replace", "mask", "pseudonymise", "generalise_date",
         "generalise_postcode"]
    ))
    if operator == "replace":
        return '{operator: replace, text: "[withheld]"}'
    if operator == "mask":
        first, last = draw(st.integers(0, 4)), draw(st.integers(0, 4))
        char = draw(st.sampled_from(["*", "#"]))
        return f"{{operator: mask, keep_first: {first}, keep_last: {last}, char: '{char}'}}"
    if operator == "pseudonymise":
        return f"{{operator: pseudonymise, domain: {draw(st.sampled_from(['person', 'other', 'a.b']))}}}"
    if operator == "generalise_date":
        to = draw(st.sampled_from(["year", "month", "age_band"]))
        bands = f", bands: {draw(st.sampled_from(_BAND_CHOICES))}" if to == "age_band" else ""
        return f"{{operator: generalise_date, to: {to}{bands}}}"
    if operator == "generalise_postcode":
        to = draw(st.sampled_from(["area", "district", "sector"]))
        return f"{{operator: generalise_postcode, to: {to}}}"
    return operator


@st.composite
def rule_documents(draw: st.DrawFn) -> str:
    """A valid rule file: random operators for random agencies and categories, some left without a rule."""
    catalogue = load_catalogue()
    lines = ["version: 1", SAFEGUARDING_BLOCK.rstrip("\n"), "default:", "  fields:"]
    for category in sorted(catalogue.field_categories):
        if draw(st.integers(0, 9)) > 0:
            lines.append(f"    {category}: {draw(operator_specs())}")
    lines.append("agencies:")
    for agency in catalogue.agencies:
        lines.append(f"  {agency}:")
        lines.append("    fields:")
        own = draw(st.lists(st.sampled_from(sorted(catalogue.field_categories)), max_size=4, unique=True))
        lines.extend(f"      {category}: {draw(operator_specs())}" for category in own)
        if not own:
            lines[-1] = "    fields: {}"
        existence = draw(st.lists(st.sampled_from([c.category for c in catalogue.of_agency(agency)]),
                                  max_size=2, unique=True))
        if existence:
            lines.append("    records:")
            lines.extend(f"      {category}: existence_only" for category in existence)
    return "\n".join(lines) + "\n"
