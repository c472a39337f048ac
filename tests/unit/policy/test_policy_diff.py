"""`policy diff` beyond the access matrix: bindings, agreements, roles, purposes and redaction rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from policy_helpers import SHIPPED, PolicyCopy, edit

from gateway.cli.main import main
from gateway.cli.policy_cmd import CLEAN, FINDINGS
from gateway.policy import PolicySnapshot, load_snapshot
from gateway.policy.diff import CHANGED, NARROWER, WIDER, PolicyChange, diff_settings


def changes(shipped: PolicySnapshot, directory: Path) -> list[tuple[str, str, str, str]]:
    return [(c.area, c.subject, c.change, c.direction) for c in diff_settings(shipped, load_snapshot(directory))]


def test_identical_policies_have_no_other_changes(shipped: PolicySnapshot, policy_copy: PolicyCopy) -> None:
    """Two copies of one policy differ in no setting."""
    assert diff_settings(shipped, load_snapshot(policy_copy())) == []


def test_certificate_gaining_a_role_is_wider(shipped: PolicySnapshot, policy_copy: PolicyCopy) -> None:
    """A binding that lets a certificate assert one more role is reported as wider."""
    directory = policy_copy()
    edit(directory / "bindings.yaml", "[mash_researcher_education, school_dsl]", "[school_dsl, mash_manager]")
    school = "spiffe://mash.local/agency/education/system/school-mis"
    assert changes(shipped, directory) == [
        ("binding", school, "roles it may assert gained mash_manager", WIDER),
        ("binding", school, "roles it may assert lost mash_researcher_education", NARROWER),
    ]


def test_agreement_changes_are_reported_with_their_direction(shipped: PolicySnapshot, policy_copy: PolicyCopy) -> None:
    """New parties, purposes, categories and a later end widen; a category still covered only rewords."""
    directory = policy_copy()
    edit(
        directory / "agreements.yaml",
        "parties: [csc, education, health, housing, hub]\n    purposes: [early_help]\n"
        "    categories: [csc, education, health.gp_registration, health.immunisation, health.maternity,\n"
        "                 housing.tenancy, housing.arrears]\n    valid_from: 2026-01-01\n    valid_until: 2027-12-31",
        "parties: [csc, education, health, hub, police]\n    purposes: [early_help, s17_assessment]\n"
        "    categories: [csc, education, health, police]\n    valid_from: 2026-01-01\n    valid_until: 2030-12-31",
    )
    found = changes(shipped, directory)
    agreement = [(change, direction) for area, subject, change, direction in found if subject == "early-help-isa-2026"]
    assert ("parties gained police", WIDER) in agreement
    assert ("parties lost housing", NARROWER) in agreement
    assert ("purposes gained s17_assessment", WIDER) in agreement
    assert ("categories gained health, police", WIDER) in agreement
    assert ("categories lost housing.arrears, housing.tenancy", NARROWER) in agreement
    assert (
        "categories no longer lists health.gp_registration, health.immunisation, health.maternity "
        "(still covered by a wider entry)",
        CHANGED,
    ) in agreement
    assert ("in force until 2027-12-31 -> 2030-12-31", WIDER) in agreement


def test_role_and_purpose_attributes(shipped: PolicySnapshot, policy_copy: PolicyCopy) -> None:
    """A role moving inside the MASH is wider; a purpose's new legal basis is wider; a new parent is flagged."""
    directory = policy_copy()
    edit(
        directory / "vocabulary" / "roles.yaml",
        "  school_dsl:\n    agency: education\n    inside_mash: false",
        "  school_dsl:\n    agency: education\n    inside_mash: true",
    )
    edit(
        directory / "vocabulary" / "purposes.yaml",
        "legal_bases: [children_act_1989_s17, uk_gdpr_6_1_e]",
        "legal_bases: [children_act_1989_s17, uk_gdpr_6_1_e, dpa_2018_sch1_para18]",
    )
    found = changes(shipped, directory)
    assert ("role", "school_dsl", "inside_mash False -> True", WIDER) in found
    assert ("purpose", "s17_assessment", "legal bases gained dpa_2018_sch1_para18", WIDER) in found


def test_redaction_rule_moving_toward_disclosure_is_wider(shipped: PolicySnapshot, policy_copy: PolicyCopy) -> None:
    """drop -> keep, losing a whole-record rule and unprotecting a category are wider; keep -> drop narrower."""
    directory = policy_copy()
    redaction = directory / "redaction.yaml"
    edit(redaction, "    person.address: drop\n", "    person.address: keep\n")
    edit(redaction, "    record.risk: keep\n", "    record.risk: drop\n")
    edit(redaction, "      health.mental_health: existence_only\n", "")
    categories = directory / "vocabulary" / "record_categories.yaml"
    edit(categories, "    protected: true\n    readers: [mash_researcher_housing]\n", "")
    found = changes(shipped, directory)
    assert ("redaction", "every agency", "person.address: drop -> keep", WIDER) in found
    assert ("redaction", "every agency", "record.risk: keep -> drop", NARROWER) in found
    assert ("redaction", "health", "records of health.mental_health: existence_only -> field rules", WIDER) in found
    assert ("category", "housing.refuge", "protected True -> False", WIDER) in found
    assert not [c for c in found if c[0] == "redaction" and "protected" in c[2]]  # reported once, as above


def test_diff_command_lists_other_changes_and_exits_1(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy
) -> None:
    """A change to bindings alone still makes `policy diff` report it, marked ▲, and exit 1."""
    directory = policy_copy()
    edit(directory / "bindings.yaml", "[auditor]", "[auditor, mash_manager]")
    code = main(["policy", "diff", str(SHIPPED), str(directory)])
    out = capsys.readouterr().out
    assert code == FINDINGS
    assert "1 other change(s): 1 wider, 0 narrower, 0 to review" in out
    assert (
        "▲ binding spiffe://mash.local/agency/hub/system/audit-console: roles it may assert gained mash_manager" in out
    )
    code = main(["policy", "diff", str(SHIPPED), str(policy_copy())])
    out = capsys.readouterr().out
    assert code == CLEAN
    assert "nothing else changes either" in out


def test_policy_change_widened_follows_its_direction() -> None:
    """Only a WIDER change counts as widened."""
    assert PolicyChange("role", "x", "y", WIDER).widened
    assert not PolicyChange("role", "x", "y", CHANGED).widened
