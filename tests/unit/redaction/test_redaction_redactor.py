"""The redactor: levels, field rules, fail-closed withholding and the safeguarding protections."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime

import pytest

from gateway.domain import (
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
    REASON_NO_RULE,
    RedactionContext,
    RedactionResult,
    RedactionRules,
    Redactor,
    parse_rules,
    pseudonymise,
    verify_pseudonym,
)
from tests.unit.redaction.strategies import (
    SHIPPED_RULES_PATH,
    load_catalogue,
    shipped_protection,
    shipped_rules,
)

KEYS = Keyring("k1", {"k1": bytes(range(32))})
ON = date(2026, 11, 26)
WHEN = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
FULL, REDACTED, WITHHELD = FieldDisclosure.FULL, FieldDisclosure.REDACTED, FieldDisclosure.WITHHELD


def ctx(
    agency: str,
    level: DisclosureLevel,
    role: str = "social_worker",
    requester: str = "csc",
    inside: bool = False,
) -> RedactionContext:
    return RedactionContext(agency, level, role, requester, inside, ON)


def record(agency: str, category: str, record_type: str, *fields: tuple[str, str, str], rid: str = "r1",
           summary: str = "agency summary") -> Record:
    return Record(agency, rid, record_type, category, RecordKind.EVENT, WHEN, summary,
                  tuple(Field(n, c, v) for n, c, v in fields))


def domestic_abuse(rid: str = "pol-1") -> Record:
    return record(
        "police", "police.domestic_abuse", "domestic_abuse_incident",
        ("incident_date", "record.date", "2025-03-04"),
        ("dash_risk", "record.risk", "high"),
        ("location_postcode", "person.postcode", "SW1A 1AA"),
        ("perpetrator", "third_party.identity", "Darren Example"),
        ("narrative", "record.detail", "Neighbour heard shouting; canary-narrative"),
        ("officer_in_case", "staff.contact", "PC 1234 Patel"),
        rid=rid, summary="Domestic incident, child present",
    )


def intelligence(*fields: tuple[str, str, str]) -> Record:
    base = (
        ("report_date", "record.date", "2025-02-01"),
        ("grading", "police.grading", "B2"),
        ("informant", "third_party.identity", "Ian Formant"),
        ("intelligence", "record.detail", "canary-intel-text"),
    )
    return record("police", "police.intelligence", "intelligence_report", *base, *fields, rid="int-1")


def sexual_health(rid: str = "health.sexual_health-0042") -> Record:
    return record(
        "health", "health.sexual_health", "sexual_health_attendance",
        ("clinic", "service.name", "Riverside Sexual Health Clinic"),
        ("attendance_date", "record.date", "2025-01-09"),
        ("reason", "health.clinical", "canary-reason"),
        ("notes", "record.detail", "canary-notes"),
        rid=rid, summary="Attended the Riverside sexual health clinic",
    )


def refuge() -> Record:
    return record(
        "housing", "housing.refuge", "refuge_placement",
        ("refuge_address", "location.protected", "Safe House, 9 Hidden Lane"),
        ("placement_date", "record.date", "2025-01-20"),
        ("support_worker", "staff.contact", "Refuge worker Ann"),
        rid="housing-refuge-7", summary="Placed in refuge",
    )


def redact(
    records: list[Record], context: RedactionContext, rules: RedactionRules | None = None
) -> RedactionResult:
    return Redactor(rules or shipped_rules(), KEYS).redact(records, context)


def by_name(result: RedactionResult, index: int = 0) -> dict[str, tuple[str, FieldDisclosure, str]]:
    return {f.name: (f.value, f.disclosure, f.operator) for f in result.records[index].fields}


def serialised(result: RedactionResult) -> str:
    return json.dumps(dataclasses.asdict(result), default=str, ensure_ascii=False)


def field_entries(result: RedactionResult) -> list[ManifestEntry]:
    return [m for m in result.manifest if m.field]


# -- FULL ------------------------------------------------------------------------------------------------


def test_full_inside_the_mash_releases_every_field_as_held() -> None:
    """A MASH researcher granted FULL sees every field and an RFC 3339 time; all manifest entries FULL."""
    rec = domestic_abuse()
    result = redact([rec], ctx("police", DisclosureLevel.FULL, "mash_researcher_police", "police", True))
    out = result.records[0]
    expected = [(f.name, f.value, FULL) for f in rec.fields]
    assert [(f.name, f.value, f.disclosure) for f in out.fields] == expected
    assert out.occurred_at == "2025-03-04T10:30:00Z"
    assert out.summary == rec.summary
    assert {m.disclosure for m in result.manifest} == {FULL}
    assert len(result.manifest) == len(rec.fields) + 1


def test_full_outside_the_mash_still_pseudonymises_third_parties() -> None:
    """An operational role granted FULL sees a keyed pseudonym of the perpetrator, not the name."""
    result = redact([domestic_abuse()], ctx("police", DisclosureLevel.FULL, "police_officer", "police"))
    value, disclosure, operator = by_name(result)["perpetrator"]
    assert (disclosure, operator) == (REDACTED, "pseudonymise")
    assert verify_pseudonym(value, "Darren Example", "person", KEYS)
    assert by_name(result)["narrative"][0] == "Neighbour heard shouting; canary-narrative"


def test_a_naive_occurred_at_is_read_as_utc() -> None:
    """A record time without a zone is released as UTC, still RFC 3339."""
    rec = dataclasses.replace(domestic_abuse(), occurred_at=datetime(2025, 3, 4, 10, 30))
    result = redact([rec], ctx("police", DisclosureLevel.FULL, "mash_manager", "hub", True))
    assert result.records[0].occurred_at == "2025-03-04T10:30:00Z"


# -- PERTINENT -------------------------------------------------------------------------------------------


def test_pertinent_applies_each_field_rule() -> None:
    """A social worker sees the police incident through the shipped rules, field by field."""
    result = redact([domestic_abuse()], ctx("police", DisclosureLevel.PERTINENT))
    fields = by_name(result)
    assert fields["incident_date"] == ("2025-03-04", FULL, "")
    assert fields["dash_risk"] == ("high", FULL, "")
    assert fields["location_postcode"] == ("SW1A", REDACTED, "generalise_postcode")
    assert fields["narrative"] == ("Domestic incident, child present", REDACTED, "agency_summary")
    assert fields["officer_in_case"] == ("PC 1234 Patel", FULL, "")
    assert fields["perpetrator"][1:] == (REDACTED, "pseudonymise")
    assert result.records[0].occurred_at == "2025-03-04T10:30:00Z"
    assert result.manifest[0] == ManifestEntry("pol-1", "", "police.domestic_abuse", REDACTED)


def test_a_dropped_field_is_withheld_and_names_its_rule() -> None:
    """drop releases no value; the manifest says WITHHELD with the rule's file:line."""
    rec = record("health", "health.attendance", "ae_attendance", ("notes", "record.detail", "canary-notes"))
    result = redact([rec], ctx("health", DisclosureLevel.PERTINENT))
    out = result.records[0].fields[0]
    assert (out.value, out.disclosure, out.operator) == ("", WITHHELD, "drop")
    assert out.reason.startswith("dropped by redaction.yaml:")
    line = int(out.reason.rsplit(":", 1)[1])
    assert "record.detail: drop" in SHIPPED_RULES_PATH.read_text().splitlines()[line - 1]


def test_a_field_without_a_rule_is_withheld_at_pertinent() -> None:
    """Fail closed: a field category no rule speaks about is withheld with reason 'no redaction rule'."""
    rec = record("csc", "csc.case", "csc_case", ("case_status", "record.status", "open"),
                 ("shoe_size", "unlisted.category", "canary-shoe"))
    result = redact([rec], ctx("csc", DisclosureLevel.PERTINENT))
    assert by_name(result)["shoe_size"] == ("", WITHHELD, "")
    assert field_entries(result)[1] == ManifestEntry(
        "r1", "shoe_size", "unlisted.category", WITHHELD, "", REASON_NO_RULE
    )
    assert "canary-shoe" not in serialised(result)


def test_an_agency_without_rules_has_every_field_withheld() -> None:
    """Fail closed: records of an agency the rules do not know are released with every field withheld."""
    rec = record("fire", "fire.visit", "home_safety_visit", ("visit_date", "record.date", "2025-01-01"))
    result = redact([rec], ctx("fire", DisclosureLevel.PERTINENT))
    assert by_name(result)["visit_date"] == ("", WITHHELD, "")
    assert result.records[0].occurred_at == ""


def test_dates_of_birth_become_age_bands_at_the_disclosure_date() -> None:
    """A date of birth is released as its age band on the disclosure date, a postcode as its district."""
    rec = record("education", "education.enrolment", "school_enrolment",
                 ("date_of_birth", "person.date_of_birth", "2021-11-26"),
                 ("postcode", "person.postcode", "E1 6AN"))
    result = redact([rec], ctx("education", DisclosureLevel.PERTINENT))
    assert by_name(result)["date_of_birth"] == ("age 5-10", REDACTED, "generalise_date")
    assert by_name(result)["postcode"] == ("E1", REDACTED, "generalise_postcode")


def test_occurred_at_follows_the_record_date_rule() -> None:
    """Health generalises record dates to the month, and the record's own time with them."""
    rec = record("health", "health.attendance", "ae_attendance",
                 ("attendance_date", "record.date", "2025-03-04"))
    result = redact([rec], ctx("health", DisclosureLevel.PERTINENT))
    assert result.records[0].occurred_at == "2025-03"
    assert by_name(result)["attendance_date"] == ("2025-03", REDACTED, "generalise_date")


def test_existence_only_records_say_known_and_whom_to_call() -> None:
    """A mental health involvement at PERTINENT is 'known to health' plus the contact; no field content."""
    rec = record("health", "health.mental_health", "mental_health_involvement",
                 ("diagnosis", "health.clinical", "canary-diagnosis"),
                 ("clinician", "staff.contact", "Dr Canary"))
    result = redact([rec], ctx("health", DisclosureLevel.PERTINENT))
    out = result.records[0]
    assert out.fields == ()
    assert out.summary == (
        "Known to health: yes. Contact: Health MASH nurse, 020 7946 0102, mash.health@example.org."
    )
    assert [m.disclosure for m in field_entries(result)] == [WITHHELD, WITHHELD]
    assert result.manifest[0].operator == "existence_only"
    assert "canary-diagnosis" not in serialised(result)
    assert "Dr Canary" not in serialised(result)


def test_existence_only_does_not_apply_at_full() -> None:
    """A caller granted FULL sees the mental health involvement in full."""
    rec = record("health", "health.mental_health", "mental_health_involvement",
                 ("diagnosis", "health.clinical", "canary-diagnosis"))
    result = redact([rec], ctx("health", DisclosureLevel.FULL, "mash_researcher_health", "health", True))
    assert by_name(result)["diagnosis"] == ("canary-diagnosis", FULL, "")


@pytest.mark.parametrize("level", [DisclosureLevel.NONE, DisclosureLevel.EXISTS])
def test_below_pertinent_no_record_content_is_released(level: DisclosureLevel) -> None:
    """At EXISTS or NONE no records are returned and every field is listed as withheld."""
    result = redact([domestic_abuse()], ctx("police", level))
    assert result.records == ()
    assert {m.disclosure for m in result.manifest} == {WITHHELD}
    assert len(result.manifest) == len(domestic_abuse().fields) + 1
    assert result.manifest[0].reason == f"level {level.name}: content not disclosed"


def test_a_record_of_another_agency_is_withheld() -> None:
    """Records that do not belong to the answering agency are never released under its rules."""
    result = redact([domestic_abuse()], ctx("housing", DisclosureLevel.FULL, "mash_manager", "hub", True))
    assert result.records == ()
    assert result.manifest[0].reason == "record does not belong to the answering agency"


# -- third parties ---------------------------------------------------------------------------------------

KEEP_THIRD_PARTIES = """\
version: 1
safeguarding:
  pseudonymise_outside_mash: {field_categories: [third_party.identity, household.member], domain: person}
  handling_codes:
    record_categories: [police.intelligence]
    code_field: police.handling_code
    conditions_field: police.handling_conditions
default:
  fields:
    third_party.identity: keep
    household.member: {operator: mask, keep_first: 1}
    record.date: keep
"""


def keep_third_party_rules() -> RedactionRules:
    catalogue = load_catalogue()
    return parse_rules(KEEP_THIRD_PARTIES, source_name="redaction.yaml", agencies=catalogue.agencies,
                       field_categories=catalogue.field_categories,
                       record_categories=catalogue.record_categories, protected=shipped_protection())


def test_a_rule_that_would_reveal_a_third_party_is_overridden_outside_the_mash() -> None:
    """Even if a rule keeps or masks a third party, callers outside the MASH get a pseudonym."""
    rec = record("housing", "housing.tenancy", "tenancy", ("household", "household.member", "Hannah Member"))
    result = redact([rec], ctx("housing", DisclosureLevel.PERTINENT), keep_third_party_rules())
    value, disclosure, operator = by_name(result)["household"]
    assert (disclosure, operator) == (REDACTED, "pseudonymise")
    assert verify_pseudonym(value, "Hannah Member", "person", KEYS)


def test_inside_the_mash_the_pertinent_rule_for_third_parties_applies() -> None:
    """Inside the MASH the field rule decides, here keep."""
    rec = record("csc", "csc.referral", "referral", ("referrer", "third_party.identity", "Rita Referrer"))
    result = redact([rec], ctx("csc", DisclosureLevel.PERTINENT, "mash_social_worker", "hub", True),
                    keep_third_party_rules())
    assert by_name(result)["referrer"] == ("Rita Referrer", FULL, "")


def test_the_same_person_gets_the_same_pseudonym_in_every_agencys_answer() -> None:
    """A perpetrator in a police record and a household member in housing link up, unnamed."""
    police = redact([domestic_abuse()], ctx("police", DisclosureLevel.PERTINENT))
    tenancy = record("housing", "housing.tenancy", "tenancy",
                     ("household", "household.member", "darren  EXAMPLE"))
    housing = redact([tenancy], ctx("housing", DisclosureLevel.PERTINENT))
    assert by_name(police)["perpetrator"][0] == by_name(housing)["household"][0]
    assert by_name(police)["perpetrator"][0] == pseudonymise("Darren Example", domain="person", keys=KEYS)


# -- protected services ----------------------------------------------------------------------------------

PROTECTED_TELLS = ("sexual", "Sexual", "clinic", "Riverside", "0042", "refuge", "Refuge", "Hidden Lane",
                   "attendance_date", "canary")


@pytest.mark.parametrize(
    ("role", "requester", "inside"),
    [
        ("mash_manager", "hub", True),
        ("mash_researcher_police", "police", True),
        ("social_worker", "csc", False),
        ("housing_officer", "housing", False),
    ],
)
@pytest.mark.parametrize("level", list(DisclosureLevel))
def test_a_sexual_health_record_is_never_released_outside_health(
    role: str, requester: str, inside: bool, level: DisclosureLevel
) -> None:
    """Outside health a sexual-health attendance is not returned and nothing in the answer names it."""
    rec = sexual_health()
    result = redact([rec], ctx("health", level, role, requester, inside))
    assert result.records == ()
    text = serialised(result)
    for tell in PROTECTED_TELLS:
        assert tell not in text
    assert {(m.category, m.disclosure) for m in result.manifest} == {(GENERIC_CATEGORY, WITHHELD)}
    assert len(result.manifest) == len(rec.fields) + 1
    opaque = result.manifest[0].record_id
    assert verify_pseudonym(opaque, f"health/{rec.record_id}", "withheld-record", KEYS)


def test_a_protected_record_claiming_another_agency_does_not_make_its_reader_an_owner() -> None:
    """A sexual-health record labelled as csc's is still withheld from csc: the category names its owner."""
    forged = dataclasses.replace(sexual_health(), agency="csc")
    result = redact([forged], ctx("csc", DisclosureLevel.FULL, "mash_researcher_csc", "csc", True))
    assert result.records == ()
    assert "Riverside" not in serialised(result)
    assert {m.category for m in result.manifest} == {GENERIC_CATEGORY}


def test_a_refuge_placement_is_never_released_outside_housing() -> None:
    """Outside housing a refuge placement is not returned and nothing in the answer gives it away."""
    result = redact([refuge()], ctx("housing", DisclosureLevel.FULL, "mash_manager", "hub", True))
    assert result.records == ()
    text = serialised(result)
    for tell in ("refuge", "Refuge", "Hidden Lane", "placement", "location.protected", "support_worker"):
        assert tell not in text


def test_the_declared_reader_sees_a_protected_record_under_its_level() -> None:
    """Health's researcher sees a sexual-health attendance in full at FULL, and redacted at PERTINENT."""
    researcher = ctx("health", DisclosureLevel.FULL, "mash_researcher_health", "health", True)
    full = redact([sexual_health()], researcher)
    assert by_name(full)["clinic"] == ("Riverside Sexual Health Clinic", FULL, "")
    pertinent = redact([sexual_health()], dataclasses.replace(researcher, level=DisclosureLevel.PERTINENT))
    assert by_name(pertinent)["clinic"] == ("[service withheld]", REDACTED, "replace")
    assert by_name(pertinent)["notes"][1] == WITHHELD


def test_a_refuge_address_is_dropped_even_for_the_declared_reader_at_pertinent() -> None:
    """Housing's researcher at PERTINENT sees that a refuge placement exists, never the refuge's address."""
    result = redact([refuge()], ctx("housing", DisclosureLevel.PERTINENT, "mash_researcher_housing", "housing",
                                    True))
    assert by_name(result)["refuge_address"] == ("", WITHHELD, "drop")
    assert "Hidden Lane" not in serialised(result)


def test_protected_records_do_not_disturb_the_others() -> None:
    """A withheld protected record sits among released records without shifting their manifest."""
    attendance = record("health", "health.attendance", "ae_attendance",
                        ("hospital", "service.name", "Royal Hospital"), rid="ae-1")
    result = redact([sexual_health(), attendance], ctx("health", DisclosureLevel.PERTINENT))
    assert [r.record_id for r in result.records] == ["ae-1"]
    assert [m.record_id for m in result.manifest if m.record_id == "ae-1"] == ["ae-1", "ae-1"]


# -- police handling codes -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["P", "p", " P "])
def test_intelligence_with_handling_code_p_goes_outside_police(code: str) -> None:
    """Code P releases the record outside police under the caller's level; the informant is pseudonymised."""
    rec = intelligence(("handling_code", "police.handling_code", code))
    result = redact([rec], ctx("police", DisclosureLevel.PERTINENT))
    assert len(result.records) == 1
    assert result.records[0].conditions == ()
    assert by_name(result)["informant"][1:] == (REDACTED, "pseudonymise")
    assert "canary-intel-text" not in serialised(result)


def test_intelligence_with_code_c_carries_its_conditions() -> None:
    """Code C releases the record with its conditions attached, and the conditions field in full."""
    rec = intelligence(
        ("handling_code", "police.handling_code", "C"),
        ("conditions", "police.handling_conditions", "Not to be disclosed to the family"),
    )
    result = redact([rec], ctx("police", DisclosureLevel.FULL, "mash_manager", "hub", True))
    out = result.records[0]
    assert out.conditions == ("Not to be disclosed to the family",)
    assert by_name(result)["conditions"] == ("Not to be disclosed to the family", FULL, "")
    assert result.manifest[0].reason == "handling conditions travel with the record"


def test_code_c_conditions_travel_even_if_a_rule_would_drop_them() -> None:
    """The conditions must travel with the information, so a drop rule does not remove them."""
    rules_text = KEEP_THIRD_PARTIES + "    police.handling_conditions: drop\n    police.handling_code: keep\n"
    catalogue = load_catalogue()
    rules = parse_rules(rules_text, source_name="r.yaml", agencies=catalogue.agencies,
                        field_categories=catalogue.field_categories,
                       record_categories=catalogue.record_categories, protected=shipped_protection())
    rec = intelligence(("handling_code", "police.handling_code", "C"),
                       ("conditions", "police.handling_conditions", "Police only after 1 May"))
    result = redact([rec], ctx("police", DisclosureLevel.PERTINENT), rules)
    assert result.records[0].conditions == ("Police only after 1 May",)
    assert by_name(result)["conditions"] == ("Police only after 1 May", FULL, "")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ((), "no handling code: not shared outside the owning agency"),
        ((("handling_code", "police.handling_code", "X"),), "handling code does not permit sharing"),
        ((("handling_code", "police.handling_code", ""),), "handling code does not permit sharing"),
        ((("handling_code", "police.handling_code", "C"),), "handling code C without conditions"),
        ((("handling_code", "police.handling_code", "C"), ("conditions", "police.handling_conditions", "  ")),
         "handling code C without conditions"),
        ((("handling_code", "police.handling_code", "P"), ("code2", "police.handling_code", "C")),
         "handling code does not permit sharing"),
    ],
)
@pytest.mark.parametrize("level", [DisclosureLevel.PERTINENT, DisclosureLevel.FULL])
def test_intelligence_without_a_sharing_code_is_withheld_whole(
    extra: tuple[tuple[str, str, str], ...], reason: str, level: DisclosureLevel
) -> None:
    """A missing, unknown or unusable handling code withholds the whole record outside police."""
    rec = intelligence(*extra)
    result = redact([rec], ctx("police", level, "mash_manager", "hub", True))
    assert result.records == ()
    assert result.manifest[0].reason.startswith(reason)
    assert {m.disclosure for m in result.manifest} == {WITHHELD}
    assert "canary-intel-text" not in serialised(result)


def test_police_see_their_own_intelligence_whatever_the_code() -> None:
    """Handling codes restrict sharing outside police; the police researcher sees an X-coded report."""
    rec = intelligence(("handling_code", "police.handling_code", "X"))
    result = redact([rec], ctx("police", DisclosureLevel.FULL, "mash_researcher_police", "police", True))
    assert by_name(result)["intelligence"] == ("canary-intel-text", FULL, "")


# -- the manifest ----------------------------------------------------------------------------------------


def test_the_manifest_mirrors_the_released_fields() -> None:
    """For released records each field entry repeats the field's disclosure, operator and reason."""
    result = redact([domestic_abuse(), domestic_abuse("pol-2")], ctx("police", DisclosureLevel.PERTINENT))
    released = [
        ManifestEntry(r.record_id, f.name, f.category, f.disclosure, f.operator, f.reason)
        for r in result.records for f in r.fields
    ]
    assert field_entries(result) == released


def test_redaction_is_deterministic() -> None:
    """The same records and context give the same result (no hidden state between calls)."""
    context = ctx("police", DisclosureLevel.PERTINENT)
    redactor = Redactor(shipped_rules(), KEYS)
    assert redactor.redact([domestic_abuse()], context) == redactor.redact([domestic_abuse()], context)


def test_an_undeclared_category_named_below_a_protected_one_is_protected_too() -> None:
    """A record of an undeclared health.sexual_health.notes is withheld generically like its parent."""
    record = Record("health", "H-1", "sexual_health_note", "health.sexual_health.notes", RecordKind.EVENT,
                    datetime(2026, 1, 1, tzinfo=UTC), "Clinic visit.",
                    (Field("clinic", "service.name", "Riverside Sexual Health Clinic"),))
    ctx = RedactionContext("health", DisclosureLevel.FULL, "mash_manager", "hub", True, date(2026, 11, 26))
    result = Redactor(shipped_rules(), Keyring.generate()).redact([record], ctx)
    assert result.records == ()
    assert "Riverside" not in repr(result)
