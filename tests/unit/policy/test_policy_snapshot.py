"""The shipped policy loads into a snapshot whose lookups, vocabularies and agreements work as documented."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import casbin
import pytest
from policy_helpers import SHIPPED, PolicyCopy, edit

from gateway.domain import DisclosureLevel
from gateway.policy import PolicySnapshot, load_snapshot
from gateway.policy.casbin_model import enforce_level
from gateway.policy.rules import AGENCY_DIR

POLICE_SYSTEM = "spiffe://mash.local/agency/police/system/case-system"
ALL_CATEGORIES = 36  # 32 across the six children's MASH agencies, and adult social care's four


def test_version_is_a_sha256_content_hash(shipped: PolicySnapshot) -> None:
    """The policy version names its hash function and is 64 hex digits."""
    algorithm, _, digest = shipped.version.partition(":")
    assert algorithm == "sha256"
    assert len(digest) == 64
    int(digest, 16)


def test_version_is_stable_and_changes_with_any_byte(policy_copy: PolicyCopy) -> None:
    """The same files give the same version; one changed comment gives a new one."""
    directory = policy_copy()
    first = load_snapshot(directory).version
    assert load_snapshot(directory).version == first
    edit(directory / "agencies" / "csc.csv", "# Children's social care", "# Children’s social care")
    assert load_snapshot(directory).version != first


def test_decide_reports_level_and_deciding_lines(shipped: PolicySnapshot) -> None:
    """A capped decision names the allow that granted and the deny that capped it, as file:line."""
    decision = shipped.decide("mash_manager", "s47_enquiry", "health", "health.sexual_health")
    assert decision.level is DisclosureLevel.NONE
    assert decision.allowed_by
    assert all(w.startswith("agencies/health.csv:") for w in decision.allowed_by)
    assert decision.denied_by
    assert all(w.startswith("agencies/health.csv:") for w in decision.denied_by)
    for where in (*decision.allowed_by, *decision.denied_by):
        line = shipped.line_at(where)
        assert line is not None
        assert line.role in ("mash_manager", "mash_staff")


def test_uncapped_decision_has_no_denied_by(shipped: PolicySnapshot) -> None:
    """A researcher's own agency is FULL from one allow line and no deny."""
    decision = shipped.decide("mash_researcher_police", "safeguarding_screening", "police", "police.crime")
    assert decision.level is DisclosureLevel.FULL
    assert decision.denied_by == ()
    assert len(decision.allowed_by) == 1


@pytest.mark.parametrize(
    ("role", "purpose", "agency", "category"),
    [
        ("no_such_role", "s47_enquiry", "police", "police.crime"),
        ("social_worker", "no_such_purpose", "police", "police.crime"),
        ("social_worker", "s47_enquiry", "police", "police.no_such_category"),
        ("social_worker", "s47_enquiry", "health", "police.crime"),
    ],
)
def test_unknown_or_mismatched_names_get_nothing(
    shipped: PolicySnapshot, role: str, purpose: str, agency: str, category: str
) -> None:
    """Any undeclared name, or a category asked of the wrong agency, is decided NONE (fail closed)."""
    decision = shipped.decide(role, purpose, agency, category)
    assert decision.level is DisclosureLevel.NONE
    assert decision.allowed_by == ()
    assert decision.denied_by == ()


def test_decisions_for_covers_every_agency_and_record_category(shipped: PolicySnapshot) -> None:
    """One query's decision set has every record-holding agency and every record category, and matches decide()."""
    decisions = shipped.decisions_for("social_worker", "s47_enquiry")
    assert list(decisions) == [a for a, v in shipped.agencies.items() if v.holds_records]
    assert list(decisions) == ["police", "health", "csc", "education", "housing", "probation", "asc"]
    assert sum(len(v) for v in decisions.values()) == ALL_CATEGORIES
    for agency, per_category in decisions.items():
        for category, decision in per_category.items():
            assert shipped.record_categories[category].agency == agency
            assert decision == shipped.decide("social_worker", "s47_enquiry", agency, category)


def test_decisions_for_unknown_names_is_empty(shipped: PolicySnapshot) -> None:
    """An undeclared role or purpose gets an empty decision set."""
    assert shipped.decisions_for("no_such_role", "s47_enquiry") == {}
    assert shipped.decisions_for("social_worker", "no_such_purpose") == {}


def test_roles_for_follows_the_binding_file(shipped: PolicySnapshot) -> None:
    """A bound certificate may assert exactly its listed roles; an unbound one none."""
    assert shipped.roles_for(POLICE_SYSTEM) == {"mash_researcher_police", "police_officer"}
    assert shipped.roles_for("spiffe://mash.local/agency/hub/system/policy-admin") == {"policy_admin"}
    assert shipped.roles_for("spiffe://mash.local/agency/police/system/other") == frozenset()


def test_hierarchies(shipped: PolicySnapshot) -> None:
    """Purposes and categories sit within their ancestors, and housing management is not safeguarding."""
    assert shipped.purpose_within("s47_enquiry", "child_protection")
    assert shipped.purpose_within("s47_enquiry", "safeguarding")
    assert shipped.purpose_within("early_help", "early_help")
    assert not shipped.purpose_within("housing_management", "safeguarding")
    assert not shipped.purpose_within("safeguarding", "s47_enquiry")
    assert shipped.category_within("police.intelligence", "police")
    assert not shipped.category_within("police", "police.intelligence")
    assert not shipped.category_within("health.sexual_health", "housing")
    assert shipped.role_within("mash_manager", "mash_staff")
    assert not shipped.role_within("social_worker", "mash_staff")


def test_vocabularies_hold_the_contract_names(shipped: PolicySnapshot) -> None:
    """Roles carry home agency and inside_mash; purposes their legal bases; legal bases their URIs."""
    assert shipped.roles["mash_manager"].agency == "hub"
    assert shipped.roles["mash_manager"].inside_mash
    assert shipped.roles["housing_officer"].agency == "housing"
    assert not shipped.roles["housing_officer"].inside_mash
    assert set(shipped.purposes["s47_enquiry"].legal_bases) == {
        "children_act_1989_s47",
        "dpa_2018_sch1_para18",
    }
    assert (
        shipped.legal_bases["children_act_1989_s47"].uri
        == "https://www.legislation.gov.uk/ukpga/1989/41/section/47"
    )
    assert shipped.purposes["s47_enquiry"].retention_days > 0
    assert shipped.record_categories["health.sexual_health"].protected
    assert shipped.record_categories["police.domestic_abuse"].fields["perpetrator"] == "third_party.identity"
    assert "person.postcode" in shipped.field_categories
    assert {a for a, v in shipped.agencies.items() if v.holds_records} == {
        "police",
        "health",
        "csc",
        "education",
        "housing",
        "probation",
        "asc",
    }
    assert shipped.purposes["care_act_s42_enquiry"].parent == "adult_safeguarding"
    assert "care_act_2014_s42" in shipped.purposes["care_act_s42_enquiry"].legal_bases


@pytest.mark.parametrize(
    ("agreement", "agency", "category", "purpose", "on", "allowed"),
    [
        ("mash-isa-2026", "police", "police.intelligence", "s47_enquiry", date(2026, 6, 1), True),
        ("mash-isa-2026", "police", "police.intelligence", "housing_management", date(2026, 6, 1), False),
        ("mash-isa-2026", "police", "police.intelligence", "s47_enquiry", date(2028, 1, 1), False),
        ("mash-isa-2024", "police", "police.crime", "s47_enquiry", date(2026, 6, 1), False),
        ("mash-isa-2024", "police", "police.crime", "s47_enquiry", date(2024, 6, 1), True),
        ("early-help-isa-2026", "health", "health.maternity", "early_help", date(2026, 6, 1), True),
        ("early-help-isa-2026", "health", "health.mental_health", "early_help", date(2026, 6, 1), False),
        ("early-help-isa-2026", "police", "police.crime", "early_help", date(2026, 6, 1), False),
        ("housing-partnership-2026", "housing", "housing.asb", "housing_management", date(2026, 6, 1), True),
        (
            "housing-partnership-2026",
            "housing",
            "housing.refuge",
            "housing_management",
            date(2026, 6, 1),
            False,
        ),
        ("no-such-agreement", "housing", "housing.asb", "housing_management", date(2026, 6, 1), False),
    ],
)
def test_agreement_allows(
    shipped: PolicySnapshot, agreement: str, agency: str, category: str, purpose: str, on: date, allowed: bool
) -> None:
    """An agreement covers a disclosure only for its parties, purposes, categories and validity period."""
    assert shipped.agreement_allows(agreement, agency, category, purpose, on) is allowed


def test_redaction_rules_come_with_the_snapshot(shipped: PolicySnapshot) -> None:
    """The snapshot carries the redaction rules of the same directory."""
    assert shipped.redaction.covers("police", "record.detail")


def test_policy_files_parse_as_casbin_parses_them(shipped: PolicySnapshot) -> None:
    """Reading the agency files with Casbin's own file adapter gives exactly the snapshot's rows."""
    rows = []
    for path in sorted((SHIPPED / AGENCY_DIR).glob("*.csv")):
        enforcer = casbin.Enforcer(str(SHIPPED / "model.conf"), str(path))
        rows += [tuple(r) for r in enforcer.get_policy()]
    assert rows == [line.casbin_row() for line in shipped.lines]


def test_index_agrees_with_casbin_on_sampled_shipped_cells(shipped: PolicySnapshot) -> None:
    """A spread of shipped decisions equals the highest level Casbin's enforce() allows."""
    enforcer = shipped.enforcer()
    roles = [r for r, v in shipped.roles.items() if not v.group]
    purposes = [p for p, v in shipped.purposes.items() if not v.group]
    categories = list(shipped.record_categories.values())
    checked = 0
    for i, role in enumerate(roles):
        for j, purpose in enumerate(purposes):
            category = categories[(i * 7 + j * 3) % len(categories)]
            want = enforce_level(enforcer, role, purpose, category.agency, category.name)
            assert shipped.decide(role, purpose, category.agency, category.name).level is want
            checked += 1
    assert checked == len(roles) * len(purposes)


def test_snapshot_directory_and_lines(shipped: PolicySnapshot) -> None:
    """Every line knows its file and line, and every record-holding agency has its own file."""
    files = {line.file for line in shipped.lines}
    assert files == {f"agencies/{a}.csv" for a, v in shipped.agencies.items() if v.holds_records}
    assert "agencies/asc.csv" in files
    assert all(line.line > 0 for line in shipped.lines)
    assert isinstance(shipped.directory, Path)


def test_request_problems_name_questions_no_request_could_ask(shipped: PolicySnapshot) -> None:
    """request_problems flags another agency's category and group names, and passes a real request."""
    assert shipped.request_problems("social_worker", "s47_enquiry", "police", "police.crime") == ()
    assert shipped.request_problems("mash_manager", "s47_enquiry", "police", "health.sexual_health") == (
        ("category", "category 'health.sexual_health' is held by health, not by police"),
    )
    fields = [f for f, _ in shipped.request_problems("mash_staff", "safeguarding", "health", "health")]
    assert fields == ["role", "purpose", "category"]
    assert [f for f, _ in shipped.request_problems("janitor", "s47_enquiry", "police", "police.crime")] == ["role"]
