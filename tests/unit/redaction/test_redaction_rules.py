"""Redaction rules: each mistake reported at file:line, agency overrides, and the shipped rule file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import PolicyError
from gateway.redaction import RedactionRules, load_rules, parse_rules
from tests.unit.redaction.strategies import SHIPPED_RULES_PATH, load_catalogue, shipped_rules, shipped_vocabulary

AGENCIES = ("police", "health", "housing")
FIELD_CATEGORIES = (
    "person.name", "person.postcode", "person.date_of_birth", "record.detail", "record.date",
    "third_party.identity", "household.member", "police.handling_code", "police.handling_conditions",
    "service.name",
)
RECORD_CATEGORIES = ("police.intelligence", "health.sexual_health", "health.mental_health", "housing.refuge")
PROTECTED = {"health.sexual_health": ("mash_researcher_health",), "housing.refuge": ("mash_researcher_housing",)}

SAFEGUARDING = """\
safeguarding:
  pseudonymise_outside_mash:
    field_categories: [third_party.identity, household.member]
    domain: person
  handling_codes:
    record_categories: [police.intelligence]
    code_field: police.handling_code
    conditions_field: police.handling_conditions
"""

VALID = f"""\
version: 1
{SAFEGUARDING}
default:
  fields:
    person.name: {{operator: pseudonymise, domain: person}}
    record.detail: drop
    record.date: keep
agencies:
  police:
    fields:
      record.detail: agency_summary
  health:
    contact: {{team: "Health MASH nurse", phone: "020 7946 0102"}}
    records:
      health.mental_health: existence_only
"""


def parse(text: str) -> RedactionRules:
    return parse_rules(
        text,
        source_name="redaction.yaml",
        agencies=AGENCIES,
        field_categories=FIELD_CATEGORIES,
        record_categories=RECORD_CATEGORIES,
        protected=PROTECTED,
    )


def line_of(text: str, marker: str) -> int:
    """The 1-based number of the first line of `text` containing `marker`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"marker {marker!r} not in text")


def findings_of(text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyError) as caught:
        parse(text)
    assert all(f.file == "redaction.yaml" for f in caught.value.findings)
    return [(f.line, f.message) for f in caught.value.findings]


def with_default_rule(rule: str) -> str:
    """VALID with one more line in the default block."""
    return VALID.replace("    record.date: keep\n", f"    record.date: keep\n    {rule}\n")


# -- a valid file ----------------------------------------------------------------------------------------


def test_agency_rules_override_the_default_one_category_at_a_time() -> None:
    """An agency's own rule replaces the default for that category only; others inherit the default."""
    rules = parse(VALID)
    police_detail = rules.rule_for("police", "record.detail")
    health_detail = rules.rule_for("health", "record.detail")
    assert police_detail is not None
    assert health_detail is not None
    assert police_detail.operator == "agency_summary"
    assert health_detail.operator == "drop"
    assert police_detail.source == f"redaction.yaml:{line_of(VALID, 'record.detail: agency_summary')}"
    assert health_detail.source == f"redaction.yaml:{line_of(VALID, 'record.detail: drop')}"


def test_covers_says_whether_a_rule_applies_to_an_agency_and_field_category() -> None:
    """covers is True for default and agency rules, False for uncovered categories and unknown agencies."""
    rules = parse(VALID)
    assert rules.covers("housing", "person.name")
    assert rules.covers("police", "record.detail")
    assert not rules.covers("police", "service.name")
    assert not rules.covers("fire", "person.name")


def test_whole_record_rules_and_contacts_are_read() -> None:
    """records: and contact: are read per agency; the safeguarding block is compiled as written."""
    rules = parse(VALID)
    rule = rules.record_rule_for("health", "health.mental_health")
    contact = rules.contact_for("health")
    assert rule is not None
    assert contact is not None
    assert rule.operator == "existence_only"
    assert (contact.team, contact.phone, contact.email) == ("Health MASH nurse", "020 7946 0102", "")
    assert rules.safeguarding.pseudonym_domain == "person"


def test_protection_comes_from_the_vocabulary_with_its_readers() -> None:
    """The protected categories and their readers are those given by the vocabulary, not the rule file."""
    sg = parse(VALID).safeguarding
    assert sg.protected_readers == {c: frozenset(r) for c, r in PROTECTED.items()}
    assert sg.protected_record_categories == {"health.sexual_health", "housing.refuge"}


def test_a_protected_category_list_in_the_rule_file_is_refused_with_where_it_moved() -> None:
    """An old `protected_record_categories` entry is a finding pointing at the vocabulary, not ignored."""
    old = "  protected_record_categories: [health.sexual_health]\n"
    text = VALID.replace("  handling_codes:\n", old + "  handling_codes:\n")
    findings = findings_of(text)
    assert len(findings) == 1
    line, message = findings[0]
    assert line == line_of(text, "protected_record_categories")
    assert "vocabulary/record_categories.yaml" in message
    assert "health.sexual_health" not in message


def test_load_rules_names_the_file_in_findings(tmp_path: Path) -> None:
    """load_rules reports findings against the file's name (or the name given)."""
    path = tmp_path / "redaction.yaml"
    path.write_text(with_default_rule("person.postcode: obliterate"))
    kwargs = {
        "agencies": AGENCIES, "field_categories": FIELD_CATEGORIES, "record_categories": RECORD_CATEGORIES,
        "protected": PROTECTED,
    }
    with pytest.raises(PolicyError) as caught:
        load_rules(path, **kwargs)  # type: ignore[arg-type]
    assert str(caught.value.findings[0]).startswith("redaction.yaml:")
    with pytest.raises(PolicyError) as caught:
        load_rules(path, source_name="policies/redaction.yaml", **kwargs)  # type: ignore[arg-type]
    assert caught.value.findings[0].file == "policies/redaction.yaml"


def test_an_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    """A missing file is reported as a finding, not an OSError."""
    with pytest.raises(PolicyError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml", agencies=AGENCIES, field_categories=(), record_categories=(),
                   protected={})


# -- every kind of mistake, at its line ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("person.postcode: obliterate", "unknown operator 'obliterate'"),
        ("person.postcode: {operator: obliterate}", "unknown operator 'obliterate'"),
        ("person.postcode: existence_only", "whole-record operator: put it under records"),
        ("person.postcode: {keep_last: 4}", "person.postcode: operator is required"),
        ("person.postcode: {operator: generalise_postcode}", "needs the parameter 'to'"),
        ("person.postcode: {operator: generalise_postcode, to: street}",
         "must be one of: area, district, sector"),
        ("service.name: {operator: replace}", "needs the parameter 'text'"),
        ("service.name: {operator: replace, text: ''}", "must not be empty"),
        ("service.name: {operator: replace, text: 42}", "must be text"),
        ("service.name: {operator: mask, keep_last: -1}", "whole number from 0 to 64"),
        ("service.name: {operator: mask, keep_last: four}", "whole number from 0 to 64"),
        ("service.name: {operator: mask, keep_last: true}", "whole number from 0 to 64"),
        ("service.name: {operator: mask, char: '**'}", "exactly one visible character"),
        ("service.name: {operator: mask, kep_last: 4}", "mask has no parameter 'kep_last'"),
        ("service.name: {operator: keep, text: x}", "keep has no parameter 'text'"),
        ("service.name: {operator: pseudonymise}", "needs the parameter 'domain'"),
        ("service.name: {operator: pseudonymise, domain: Bad Domain}", "short lower-case name"),
        ("person.date_of_birth: {operator: generalise_date, to: week}",
         "must be one of: year, month, age_band"),
        ("person.date_of_birth: {operator: generalise_date, to: year, bands: [0, 18]}",
         "'bands' applies only"),
        ("person.date_of_birth: {operator: generalise_date, to: age_band, bands: [5, 10]}", "start at 0"),
        ("person.date_of_birth: {operator: generalise_date, to: age_band, bands: [0, 10, 5]}", "strictly"),
        ("person.date_of_birth: {operator: generalise_date, to: age_band, bands: 18}", "must be a list"),
        ("person.shoe_size: keep", "field category 'person.shoe_size' is not declared"),
        ("person.postcode: [keep]", "must be a mapping"),
        ("service.name: {operator: mask, keep_last: !!python/int 4}", "unsupported YAML tag"),
        ("person.date_of_birth: {operator: generalise_date, to: age_band, bands: [0, !!python/int 5]}",
         "unsupported YAML tag"),
        ("service.name: {operator: replace, text: !!binary aGVsbG8=}", "must be text"),
    ],
)
def test_a_bad_field_rule_is_rejected_at_its_line(rule: str, message: str) -> None:
    """Unknown operators, missing or bad parameters and undeclared categories are findings at file:line."""
    text = with_default_rule(rule)
    findings = findings_of(text)
    assert len(findings) == 1, findings
    line, text_of_finding = findings[0]
    assert message in text_of_finding
    assert line == line_of(text, rule.split(":", 1)[0] + ":")


@pytest.mark.parametrize(
    ("old", "new", "marker", "message"),
    [
        ("  police:\n", "  fire:\n", "fire:", "agency 'fire' is not declared"),
        ("health.mental_health: existence_only", "health.dentistry: existence_only", "health.dentistry",
         "record category 'health.dentistry' is not declared"),
        ("health.mental_health: existence_only", "police.intelligence: existence_only",
         "police.intelligence: ex",
         "belongs to another agency"),
        ("health.mental_health: existence_only", "health.mental_health: drop", "health.mental_health: drop",
         "unknown record operator 'drop' (a field operator: put it under fields)"),
        ("record_categories: [police.intelligence]", "record_categories: [police.intelligense]",
         "police.intelligense",
         "record category 'police.intelligense' is not declared"),
        ("code_field: police.handling_code", "code_field: police.handling_cod",
         "code_field: police.handling_cod",
         "field category 'police.handling_cod' is not declared"),
        ("field_categories: [third_party.identity, household.member]",
         "field_categories: [third_party.identity, household.members]", "household.members",
         "field category 'household.members' is not declared"),
        ("    domain: person\n", "    domain: PERSON\n", "domain: PERSON", "short lower-case name"),
        ("version: 1", "version: 2", "version: 2", "version must be 1"),
        ("version: 1", "version: true", "version: true", "version must be 1"),
        ("health.mental_health: existence_only", "health.mental_health: {operator: existence_only, text: x}",
         "health.mental_health", "existence_only has no parameter 'text' (parameters: none)"),
        ("    contact: {team: \"Health MASH nurse\", phone: \"020 7946 0102\"}", "    contact: {}", "contact: {}",
         "agency health: contact needs at least one of team, phone, email"),
        ("    record.date: keep\n", "    record.date: keep\n    7: keep\n", "7: keep", "keys must be plain names"),
        ("    domain: person\n", "    domain: [person]\n", "domain: [person]",
         "safeguarding: pseudonymise_outside_mash.domain must be text"),
        ("version: 1", "versoin: 1", "versoin",
         "versoin is not a known key (expected one of: version, safeguarding, default, agencies)"),
        ("    contact: {team", "    contact: {tema", "contact: {tema",
         "agency health: contact.tema is not a known key (expected one of: team, phone, email)"),
        ("    records:\n", "    record:\n", "record:",
         "agency health: record is not a known key (expected one of: contact, fields, records)"),
        ("    record.date: keep\n", "    record.date: keep\n    record.date: drop\n", "record.date: drop",
         "'record.date' is given twice"),
    ],
)
def test_a_bad_document_is_rejected_at_its_line(old: str, new: str, marker: str, message: str) -> None:
    """Undeclared agencies and categories, misplaced operators and unknown keys are found at file:line."""
    assert old in VALID
    text = VALID.replace(old, new, 1)
    findings = findings_of(text)
    assert any(message in m for _, m in findings), findings
    line = next(line for line, m in findings if message in m)
    assert line == line_of(text, marker)


def test_an_agency_with_everything_commented_out_gets_the_default_rules() -> None:
    """An agency heading with nothing under it is not a mistake: the agency has the default rules."""
    rules = parse(VALID.replace("    fields:\n      record.detail: agency_summary\n", ""))
    assert rules.rule_for("police", "record.detail") == rules.rule_for("housing", "record.detail")


def test_a_rules_file_that_is_not_a_mapping_is_rejected() -> None:
    """A file whose top level is a list is one finding at its first line, not a crash."""
    assert findings_of("- keep\n") == [(1, "redaction rules must be a mapping of names to values")]


def test_mistakes_in_every_block_are_reported_together() -> None:
    """A shape error in one block does not hide mistakes in the others: each is found at its own line."""
    text = with_default_rule("person.postcode: obliterate").replace("version: 1", "versoin: 1")
    text = text.replace("    records:\n", "    record:\n").replace("    domain: person\n", "    domain: PERSON\n")
    findings = findings_of(text)
    assert sorted(line for line, _ in findings) == sorted([
        line_of(text, "versoin"),  # an unknown key
        line_of(text, "versoin"),  # and so 'version' is missing; the file begins there
        line_of(text, "domain: PERSON"),
        line_of(text, "obliterate"),
        line_of(text, "record:"),
    ]), findings


def test_a_missing_safeguarding_block_is_rejected() -> None:
    """Without the safeguarding block the rules do not load: its protections must be stated."""
    findings = findings_of(VALID.replace(SAFEGUARDING, ""))
    assert any(m == "safeguarding is required" for _, m in findings)


def test_a_missing_safeguarding_entry_is_rejected_at_the_block() -> None:
    """Each safeguarding entry is required; the finding points at the safeguarding block."""
    text = VALID.replace("    record_categories: [police.intelligence]\n", "").replace(
        "  handling_codes:\n", "  handling_codes: {code_field: police.handling_code, "
        "conditions_field: police.handling_conditions}\n", 1)
    text = text.replace("    code_field: police.handling_code\n    conditions_field: police.handling_conditions\n", "")
    findings = findings_of(text)
    message = "safeguarding: handling_codes.record_categories is required"
    expected = (line_of(text, "handling_codes:"), message)
    assert expected in findings


def test_invalid_yaml_is_reported_at_its_line() -> None:
    """A YAML syntax error is a single finding at the line of the problem."""
    text = VALID.replace("    record.date: keep\n", "    record.date: [keep\n")
    findings = findings_of(text)
    assert len(findings) == 1
    assert "not valid YAML" in findings[0][1]
    assert findings[0][0] >= line_of(text, "record.date: [keep")


def test_an_empty_file_is_rejected() -> None:
    """An empty rules file does not load."""
    assert findings_of("") == [(1, "the redaction rules file is empty")]


def test_every_mistake_is_reported_in_one_run() -> None:
    """Several mistakes give several findings, each at its own line, so one check shows all to fix."""
    text = with_default_rule("person.postcode: obliterate").replace("  police:\n", "  fire:\n")
    text = text.replace("    record.date: keep\n", "    record.date: {operator: mask, keep_last: x}\n")
    findings = findings_of(text)
    assert sorted(line for line, _ in findings) == sorted(
        [line_of(text, "obliterate"), line_of(text, "fire:"), line_of(text, "keep_last: x")]
    )


# -- the shipped rules -----------------------------------------------------------------------------------


def test_the_shipped_rules_cover_every_agency_and_field_category_of_the_catalogue() -> None:
    """Every field category each agency holds in docs/catalogue.md has a rule in policies/redaction.yaml."""
    catalogue = load_catalogue()
    rules = shipped_rules()
    missing = [
        (c.agency, fc) for c in catalogue.categories for _, fc in c.fields if not rules.covers(c.agency, fc)
    ]
    assert missing == []
    # the catalogue lists every record category the vocabulary declares (adult social care's four included)
    assert {c.category for c in catalogue.categories} == {
        n for n, c in shipped_vocabulary().record_categories.items() if not c.group}


def test_the_shipped_safeguarding_block_protects_what_the_catalogue_says() -> None:
    """Protected categories, third-party pseudonyms and handling codes are all switched on."""
    sg = shipped_rules().safeguarding
    assert sg.protected_readers == {
        "health.sexual_health": {"mash_researcher_health"}, "housing.refuge": {"mash_researcher_housing"},
    }
    assert sg.pseudonymise_outside_mash == {"third_party.identity", "household.member"}
    assert sg.handling_code_record_categories == {"police.intelligence"}
    assert (sg.handling_code_field, sg.handling_conditions_field) == (
        "police.handling_code", "police.handling_conditions",
    )


@pytest.mark.parametrize("agency", load_catalogue().agencies)
def test_the_shipped_rules_give_operational_staff_the_pertinent_minimum(agency: str) -> None:
    """Contacts, risk and status kept; narrative, protected locations gone; identities reduced."""
    rules = shipped_rules()

    def operator(category: str) -> str:
        rule = rules.rule_for(agency, category)
        assert rule is not None, category
        return rule.operator

    for category in ("staff.contact", "record.risk", "record.status"):
        assert operator(category) == "keep"
    assert operator("record.detail") in ("drop", "agency_summary")
    assert operator("location.protected") == "drop"
    assert operator("person.address") == "drop"
    assert operator("third_party.identity") == "pseudonymise"
    assert operator("household.member") == "pseudonymise"
    dob = rules.rule_for(agency, "person.date_of_birth")
    postcode = rules.rule_for(agency, "person.postcode")
    assert dob is not None
    assert postcode is not None
    assert dob.params["to"] == "age_band"
    assert postcode.params["to"] == "district"


def test_the_shipped_rules_file_is_what_the_loader_reads() -> None:
    """The shipped file exists where the policy snapshot loader looks for it."""
    assert SHIPPED_RULES_PATH.name == "redaction.yaml"
    assert SHIPPED_RULES_PATH.parent.name == "policies"
