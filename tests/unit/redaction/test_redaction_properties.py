"""Properties of the redactor over generated records, callers and rule files: no leaks, full manifest."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import UTC, date, datetime

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.domain import (
    DisclosedField,
    DisclosedRecord,
    DisclosureLevel,
    Field,
    FieldDisclosure,
    ManifestEntry,
    Record,
    RecordKind,
)
from gateway.keyring import Keyring
from gateway.redaction import (
    GENERIC_CATEGORY,
    RedactionContext,
    RedactionResult,
    RedactionRules,
    Redactor,
    parse_rules,
)
from tests.unit.redaction.strategies import (
    AGENCIES,
    ROLES,
    SAFEGUARDING_BLOCK,
    answers,
    contexts,
    is_withheld_generically,
    load_catalogue,
    may_see_in_full,
    records_for,
    rule_documents,
    searchable,
    shipped_protection,
    shipped_rules,
)

KEYS = Keyring("k1", {"k1": bytes(range(32))})
OUTPUT_KEYS = frozenset(
    f.name for cls in (DisclosedRecord, DisclosedField, ManifestEntry) for f in dataclasses.fields(cls)
)
# How many examples is the profile's choice (tests/conftest.py): a fixed search in CI, a longer one to explore.
PROPERTY_SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])


def serialise(result: RedactionResult) -> str:
    """Everything the redactor hands back, as text (the wire-level test does the same with protobuf bytes)."""
    return json.dumps(dataclasses.asdict(result), default=str, ensure_ascii=False)


def check_answer(records: list[Record], ctx: RedactionContext, rules: RedactionRules) -> None:
    """The properties every redaction must have, whatever the records, caller and rules."""
    result = Redactor(rules, KEYS).redact(records, ctx)
    text = serialise(result)

    # Nothing the caller may not see in full appears anywhere in what is handed back.
    for record in records:
        for field in record.fields:
            if searchable(field.value) and not may_see_in_full(record, field, ctx, rules):
                assert field.value not in text, (record.category, field.name, field.category, ctx)

    # One record-level entry per record and one entry per field, no more, no fewer.
    record_entries = [m for m in result.manifest if not m.field]
    field_entries = [m for m in result.manifest if m.field]
    assert len(record_entries) == len(records)
    assert len(field_entries) == sum(len(r.fields) for r in records)

    named = [r for r in records if not is_withheld_generically(r, ctx, rules)]
    expected = Counter((r.record_id, f.name) for r in named for f in r.fields)
    listed = Counter((m.record_id, m.field) for m in field_entries if m.category != GENERIC_CATEGORY)
    assert listed == expected

    # The manifest is honest: FULL exactly when the specification says the caller may see the value.
    by_key = {(m.record_id, m.field): m for m in field_entries}
    for record in named:
        for field in record.fields:
            entry = by_key[(record.record_id, field.name)]
            assert (entry.disclosure is FieldDisclosure.FULL) == may_see_in_full(record, field, ctx, rules), (
                record.category, field.name, entry,
            )
    generic = [m for m in result.manifest if m.category == GENERIC_CATEGORY]
    assert all(m.disclosure is FieldDisclosure.WITHHELD for m in generic)

    # Released records are the named ones the level and codes allow, in order, never a protected one.
    released_ids = [r.record_id for r in result.records]
    assert released_ids == sorted(set(released_ids), key=released_ids.index)
    assert all(r.record_id in {x.record_id for x in named} for r in result.records)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_shipped_rules_never_leak_what_the_caller_may_not_see(data: st.DataObject) -> None:
    """For any answer and caller, the shipped rules release no restricted value; the manifest is complete."""
    agency = data.draw(st.sampled_from(AGENCIES))
    records = data.draw(answers(agency))
    ctx = data.draw(contexts(agency))
    check_answer(records, ctx, shipped_rules())


@st.composite
def agency_answers(draw: st.DrawFn) -> tuple[list[Record], RedactionContext]:
    """One agency's answer and a caller granted some level for it."""
    agency = draw(st.sampled_from(AGENCIES))
    return draw(answers(agency)), draw(contexts(agency))


# Found by a random search: with existence only for intelligence, a code-C report asked for by another
# agency's MASH researcher releases no field, not even its handling conditions (there is no content for
# them to govern; the caller learns them from the police contact).
EXISTENCE_ONLY_INTELLIGENCE = f"""\
version: 1
{SAFEGUARDING_BLOCK}default:
  fields:
    police.handling_conditions: keep
    police.handling_code: keep
agencies:
  police:
    records:
      police.intelligence: existence_only
"""
CODE_C_REPORT = Record(
    "police", "police.intelligence-7", "intelligence_report", "police.intelligence", RecordKind.EVENT,
    datetime(2021, 5, 6, tzinfo=UTC), "summary of intelligence_report 7",
    (
        Field("handling_code", "police.handling_code", "C"),
        Field("conditions", "police.handling_conditions", "cnryNotToTheFamily#1#"),
        Field("intelligence", "record.detail", "cnrySeenAtTheFlat#2#"),
    ),
)
OTHER_RESEARCHER_AT_PERTINENT = RedactionContext(
    "police", DisclosureLevel.PERTINENT, "mash_researcher_health", "health", True, date(2025, 1, 1)
)


@PROPERTY_SETTINGS
@given(document=rule_documents(), answer=agency_answers())
@example(document=EXISTENCE_ONLY_INTELLIGENCE, answer=([CODE_C_REPORT], OTHER_RESEARCHER_AT_PERTINENT))
def test_any_valid_rule_file_never_leaks_what_the_caller_may_not_see(
    document: str, answer: tuple[list[Record], RedactionContext]
) -> None:
    """Whatever operators a valid rule file chooses, the redactor releases only what those rules allow."""
    catalogue = load_catalogue()
    rules = parse_rules(
        document,
        source_name="redaction.yaml",
        agencies=catalogue.agencies,
        field_categories=catalogue.field_categories,
        record_categories=catalogue.record_categories,
        protected=shipped_protection(),
    )
    records, ctx = answer
    check_answer(records, ctx, rules)


@st.composite
def protected_answers(draw: st.DrawFn) -> tuple[list[Record], RedactionContext]:
    """Answers made only of protected records, asked for by any role that is not one of their readers."""
    catalogue = load_catalogue()
    agency = draw(st.sampled_from(["health", "housing"]))
    readers = {r for c, names in shipped_protection().items() if c.startswith(agency + ".") for r in names}
    outsiders = [r for r in ROLES if r.name not in readers]
    ctx = draw(contexts(agency))
    role = draw(st.sampled_from(outsiders))
    ctx = dataclasses.replace(
        ctx, role=role.name, requester_agency=role.home_agency, inside_mash=role.inside_mash
    )
    serials, used = [0], set[str]()
    records = []
    for _ in range(draw(st.integers(1, 4))):
        records.append(draw(records_for(agency, serials, used, sorted(catalogue.protected))))
    return records, ctx


@PROPERTY_SETTINGS
@given(answer=protected_answers())
def test_protected_records_never_reveal_the_service_for_any_role_or_level(
    answer: tuple[list[Record], RedactionContext],
) -> None:
    """Sexual-health and refuge records give away nothing but to their readers: no service, place or type."""
    records, ctx = answer
    result = Redactor(shipped_rules(), KEYS).redact(records, ctx)
    assert result.records == ()
    text = serialise(result)
    for tell in ("sexual", "refuge", "clinic", "placement", "support_worker", "location.protected"):
        assert tell not in text.casefold()
    for record in records:
        for value in (record.record_id, record.record_type, record.category, record.summary):
            assert value not in text
        for field in record.fields:
            if field.name not in OUTPUT_KEYS:  # "reason" is also a key of every manifest entry
                assert field.name not in text
            assert not searchable(field.value) or field.value not in text
    assert {m.category for m in result.manifest} == {GENERIC_CATEGORY}


@given(data=st.data())
def test_full_inside_the_owning_agency_releases_everything_as_held(data: st.DataObject) -> None:
    """The owning agency's MASH researcher granted FULL sees every field exactly as the agency holds it."""
    agency = data.draw(st.sampled_from(AGENCIES))
    records = data.draw(answers(agency))
    ctx = RedactionContext(agency, DisclosureLevel.FULL, f"mash_researcher_{agency}", agency, True,
                           data.draw(st.dates()))
    result = Redactor(shipped_rules(), KEYS).redact(records, ctx)
    assert [[(f.name, f.value) for f in r.fields] for r in result.records] == [
        [(f.name, f.value) for f in r.fields] for r in records
    ]
