"""`policy check`'s deeper findings: dead and over-broad rules, protected exposure, gaps and expiry."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from policy_helpers import PolicyCopy, append, edit

from gateway.domain import DisclosureLevel
from gateway.errors import Finding, PolicyError
from gateway.policy import PolicySnapshot, is_blocking, lint, load_snapshot
from gateway.policy.checks import expiring_agreements

TODAY = date(2026, 11, 26)


ADULTS_MASH_HEALTH = "p, role:mash_staff, agency:health, cat:health, purpose:adult_safeguarding, PERTINENT, allow"
"""The adults' MASH grant of health to MASH staff (the MASH manager is one)."""


def _line_of(path: Path, line: str) -> int:
    """The 1-based number of the line of `path` that is exactly `line`."""
    return path.read_text(encoding="utf-8").splitlines().index(line) + 1


def at(findings: list[Finding], file: str, line: int | None = None) -> list[Finding]:
    return [f for f in findings if f.file == file and (line is None or f.line == line)]


def test_shipped_policy_has_only_the_expired_agreement_warning(shipped: PolicySnapshot) -> None:
    """The shipped policy is clean but for the expired 2024 agreement, kept for reviewing old disclosures."""
    findings = lint(shipped, TODAY)
    assert [f.message for f in findings] == [
        "agreement 'mash-isa-2024' expired on 2025-03-31; requests citing it are refused"
    ]
    assert not any(is_blocking(f) for f in findings)


def test_line_beyond_every_agreement_is_a_blocking_error(policy_copy: PolicyCopy) -> None:
    """Granting probation risk assessments for tenancy management exceeds every agreement."""
    findings = lint(load_snapshot(policy_copy("lint_findings")), TODAY)
    [finding] = at(findings, "agencies/probation.csv", 6)
    assert "grants more than any agreement allows" in finding.message
    assert "probation.risk for housing_management" in finding.message
    assert is_blocking(finding)


def test_allow_capped_by_a_deny_everywhere_is_reported_as_shadowed(policy_copy: PolicyCopy) -> None:
    """A FULL grant that a deny at PERTINENT always caps never takes effect at its own level."""
    findings = lint(load_snapshot(policy_copy("lint_findings")), TODAY)
    [finding] = at(findings, "agencies/probation.csv", 7)
    assert finding.message == "rule is shadowed by a deny: it never grants FULL (at most EXISTS)"
    assert not is_blocking(finding)


def test_partly_capped_grant_is_not_shadowed(shipped: PolicySnapshot) -> None:
    """The MASH manager's FULL on health is capped only for sexual health, so it is not reported."""
    findings = lint(shipped, TODAY)
    assert not any("shadowed" in f.message for f in findings)


def test_protected_category_beyond_its_readers_is_a_blocking_error_at_the_granting_line(
    policy_copy: PolicyCopy,
) -> None:
    """Removing the cap for the MASH manager exposes sexual health; check names the line that grants it."""
    directory = policy_copy()
    edit(
        directory / "agencies" / "health.csv",
        "p, role:mash_manager, agency:health, cat:health.sexual_health, purpose:*, EXISTS, deny\n",
        "",
    )
    findings = lint(load_snapshot(directory), TODAY)
    exposed = [f for f in findings if "protected category health.sexual_health" in f.message]
    # The children's MASH grant, and the adults' MASH grant to MASH staff (the manager among them).
    adults = _line_of(directory / "agencies" / "health.csv", ADULTS_MASH_HEALTH)
    assert [(f.file, f.line) for f in exposed] == [("agencies/health.csv", 7), ("agencies/health.csv", adults)]
    finding, adults_finding = exposed
    assert all(is_blocking(f) for f in exposed)
    assert "disclosed at PERTINENT to mash_manager for care_act_s42_enquiry" in adults_finding.message
    assert "declared at vocabulary/record_categories.yaml:138" in finding.message
    assert "disclosed at FULL to mash_manager for s17_assessment, s47_enquiry, safeguarding_screening" in (
        finding.message
    )


def test_protected_exposure_names_the_level_actually_disclosed(policy_copy: PolicyCopy) -> None:
    """A FULL grant capped at PERTINENT by a deny is reported as disclosing PERTINENT, not FULL."""
    directory = policy_copy()
    edit(
        directory / "agencies" / "health.csv",
        "p, role:mash_manager, agency:health, cat:health.sexual_health, purpose:*, EXISTS, deny\n",
        "p, role:mash_manager, agency:health, cat:health.sexual_health, purpose:*, FULL, deny\n",
    )
    findings = lint(load_snapshot(directory), TODAY)
    finding, adults_finding = [f for f in findings if "protected category health.sexual_health" in f.message]
    assert (finding.file, finding.line) == ("agencies/health.csv", 7)
    assert "is disclosed at PERTINENT to mash_manager for s17_assessment" in finding.message
    adults = _line_of(directory / "agencies" / "health.csv", ADULTS_MASH_HEALTH)
    assert (adults_finding.file, adults_finding.line) == ("agencies/health.csv", adults)
    assert "is disclosed at PERTINENT to mash_manager for care_act_s42_enquiry" in adults_finding.message


def test_shipped_policy_never_lets_existence_name_a_protected_service(shipped: PolicySnapshot) -> None:
    """No role that sees every other category of an agency with content learns existence from a protected one."""
    for (role, purpose), per_agency in shipped.index.by_query.items():
        for agency, decisions in per_agency.items():
            levels = {c: d.level for c, d in decisions.items()}
            protected = [c for c in levels if c in shipped.protected_categories]
            if not any(levels[c] is DisclosureLevel.EXISTS for c in protected):
                continue
            if all(role in shipped.record_categories[c].protected_readers for c in protected):
                continue
            others = [lv for c, lv in levels.items() if c not in shipped.protected_categories]
            assert DisclosureLevel.EXISTS in others, (role, purpose, agency)


def test_existence_naming_a_protected_service_is_a_blocking_error_naming_the_roles(
    policy_copy: PolicyCopy,
) -> None:
    """Capping sexual health at PERTINENT for a MASH manager who sees all else of health is refused, per grant."""
    directory = policy_copy()
    edit(
        directory / "agencies" / "health.csv",
        "p, role:mash_manager, agency:health, cat:health.sexual_health, purpose:*, EXISTS, deny\n",
        "p, role:mash_manager, agency:health, cat:health.sexual_health, purpose:*, PERTINENT, deny\n",
    )
    findings = [f for f in lint(load_snapshot(directory), TODAY) if f.message.startswith("existence names")]
    adults = _line_of(directory / "agencies" / "health.csv", ADULTS_MASH_HEALTH)
    assert [(f.file, f.line) for f in findings] == [("agencies/health.csv", 7), ("agencies/health.csv", adults)]
    finding, adults_finding = findings
    assert is_blocking(finding)
    assert is_blocking(adults_finding)
    assert "protected category health.sexual_health" in finding.message
    assert "(mash_manager for s17_assessment, s47_enquiry, safeguarding_screening)" in finding.message
    assert "(mash_manager for care_act_s42_enquiry)" in adults_finding.message


def test_existence_of_a_protected_category_is_fine_beside_other_existence_only_categories(
    policy_copy: PolicyCopy,
) -> None:
    """A police officer who knows only of most health records at EXISTS may know of sexual health at EXISTS too."""
    directory = policy_copy()
    findings = lint(load_snapshot(directory), TODAY)
    assert not [f for f in findings if f.message.startswith("existence names")]
    shipped = load_snapshot(directory)
    assert shipped.decide("police_officer", "s47_enquiry", "health", "health.sexual_health").level is (
        DisclosureLevel.EXISTS
    )


def test_existence_from_a_protected_category_alone_is_a_blocking_error(policy_copy: PolicyCopy) -> None:
    """A role that knows of nothing else at housing may not learn existence from refuges alone."""
    directory = policy_copy()
    number = append(
        directory / "agencies" / "housing.csv",
        "p, role:housing_officer, agency:housing, cat:housing.refuge, purpose:housing_management, EXISTS, allow\n",
    )
    findings = [f for f in lint(load_snapshot(directory), TODAY) if f.message.startswith("existence names")]
    assert [(f.file, f.line) for f in findings] == [("agencies/housing.csv", number)]
    assert "(housing_officer for housing_management)" in findings[0].message


def test_field_category_without_redaction_rule_is_reported(policy_copy: PolicyCopy) -> None:
    """A field category no redaction rule covers is reported where the category that holds it is declared."""
    directory = policy_copy()
    edit(
        directory / "vocabulary" / "field_categories.yaml",
        "field_categories:\n",
        'field_categories:\n  record.tattoo:\n    description: "a distinguishing mark"\n',
    )
    edit(
        directory / "vocabulary" / "record_categories.yaml",
        "      arrest_date: record.date\n",
        "      arrest_date: record.date\n      marks: record.tattoo\n",
    )
    findings = lint(load_snapshot(directory), TODAY)
    [gap] = [f for f in findings if "record.tattoo" in f.message]
    assert gap.file == "vocabulary/record_categories.yaml"
    assert "police holds record.tattoo (field marks of police.arrest)" in gap.message


def test_role_no_certificate_may_assert_is_reported(policy_copy: PolicyCopy) -> None:
    """A declared role that no binding lists is reported at its declaration."""
    directory = policy_copy()
    edit(
        directory / "bindings.yaml",
        "[mash_researcher_probation, probation_officer]",
        "[mash_researcher_probation]",
    )
    findings = lint(load_snapshot(directory), TODAY)
    [finding] = [f for f in findings if "probation_officer" in f.message]
    assert finding.file == "vocabulary/roles.yaml"
    assert finding.message.startswith("no certificate may assert role 'probation_officer'")


def test_purpose_without_legal_basis_is_reported(policy_copy: PolicyCopy) -> None:
    """A citable purpose with no legal basis is reported at its declaration."""
    directory = policy_copy()
    line = append(
        directory / "vocabulary" / "purposes.yaml",
        "  case_review:\n    parent: safeguarding\n    description: Reviewing a closed case.\n",
    )
    findings = lint(load_snapshot(directory), TODAY)
    assert [f.message[:40] for f in at(findings, "vocabulary/purposes.yaml", line)] == [
        "purpose 'case_review' has no legal basis"
    ]


@pytest.mark.parametrize(("today", "within"), [(date(2027, 12, 10), 30), (date(2027, 11, 15), 60)])
def test_agreement_expiring_within_sixty_or_thirty_days_is_a_warning_naming_it(today: date, within: int) -> None:
    """An agreement ending within 60 days, then within 30 days, is a warning naming it and the nearer threshold."""
    from policy_helpers import SHIPPED

    snapshot = load_snapshot(SHIPPED)
    soon = [f for f in lint(snapshot, today) if "expires on 2027-12-31" in f.message]
    assert {f.message.split("'")[1] for f in soon} == {
        "mash-isa-2026",
        "early-help-isa-2026",
        "housing-partnership-2026",
        "adult-safeguarding-isa-2026",
        "mash-analysis-isa-2026",
    }
    assert all(f"within {within} days" in f.message for f in soon)
    assert all(f.file == "agreements.yaml" and not is_blocking(f) for f in soon)
    assert not [f for f in lint(snapshot, date(2027, 10, 1)) if "expires" in f.message]


def test_after_expiry_the_lines_it_covered_are_not_errors_and_the_warning_names_it() -> None:
    """The day after the agreements end, the shipped policy has no blocking finding; each ended agreement is named."""
    from policy_helpers import SHIPPED

    findings = lint(load_snapshot(SHIPPED), date(2028, 1, 2))
    assert not [f for f in findings if is_blocking(f)]
    ended = {f.message.split("'")[1] for f in findings if "expired on" in f.message}
    assert {"mash-isa-2026", "early-help-isa-2026", "housing-partnership-2026", "adult-safeguarding-isa-2026"} <= ended


def test_expiring_agreements_lists_those_ending_soon_but_not_those_ended() -> None:
    """`expiring_agreements` gives the agreements ending within 60 days with their last day, for health reports."""
    from policy_helpers import SHIPPED

    snapshot = load_snapshot(SHIPPED)
    assert expiring_agreements(snapshot, date(2027, 11, 15)) == {
        "mash-isa-2026": date(2027, 12, 31),
        "early-help-isa-2026": date(2027, 12, 31),
        "housing-partnership-2026": date(2027, 12, 31),
        "adult-safeguarding-isa-2026": date(2027, 12, 31),
        "mash-analysis-isa-2026": date(2027, 12, 31),
    }
    assert expiring_agreements(snapshot, date(2026, 11, 26)) == {}


SUB_CATEGORY = """  health.sexual_health_notes:
    parent: health.sexual_health
    description: Clinic notes of sexual-health attendances.
    kind: event
    record_type: sexual_health_note
    fields:
      clinic: service.name
      notes: record.detail
"""


def with_sub_category(policy_copy: PolicyCopy, extra: str = "") -> Path:
    """A copy of the shipped policy with a sub-category under sexual health (plus `extra` keys on it)."""
    directory = policy_copy()
    edit(
        directory / "vocabulary" / "record_categories.yaml",
        "      notes: record.detail\n\n  # csc",
        "      notes: record.detail\n" + SUB_CATEGORY + extra + "\n  # csc",
    )
    return directory


def test_category_below_a_protected_one_is_protected_with_its_readers(policy_copy: PolicyCopy) -> None:
    """A sub-category of a protected category inherits the protection and the readers."""
    snapshot = load_snapshot(with_sub_category(policy_copy))
    notes = snapshot.record_categories["health.sexual_health_notes"]
    assert notes.protected
    assert notes.protected_readers == ("mash_researcher_health",)
    assert "health.sexual_health_notes" in snapshot.protected_categories
    assert {"health.sexual_health", "housing.refuge"} <= snapshot.protected_categories


def test_grant_on_a_sub_category_of_a_protected_one_is_a_blocking_error(policy_copy: PolicyCopy) -> None:
    """Granting an outsider FULL on a child of sexual health is refused like a grant on sexual health."""
    directory = with_sub_category(policy_copy)
    edit(
        directory / "vocabulary" / "roles.yaml",
        "  # Neither: they never see records.",
        "  camhs_worker:\n    agency: health\n    inside_mash: false\n    description: A CAMHS practitioner.\n\n"
        "  # Neither: they never see records.",
    )
    edit(directory / "bindings.yaml", "health_visitor]", "health_visitor, camhs_worker]")
    append(
        directory / "agencies" / "health.csv",
        "p, role:camhs_worker, agency:health, cat:health.sexual_health_notes, purpose:safeguarding, FULL, allow\n",
    )
    findings = lint(load_snapshot(directory), TODAY)
    exposed = [f for f in findings if "protected category health.sexual_health_notes" in f.message]
    assert any("FULL to camhs_worker" in f.message for f in exposed)
    assert all(is_blocking(f) for f in exposed)


def test_sub_category_cannot_widen_or_drop_the_protection_above_it(policy_copy: PolicyCopy) -> None:
    """A child of a protected category may not say `protected: false` nor add readers of its own."""
    directory = with_sub_category(
        policy_copy, "    protected: false\n    readers: [mash_researcher_health, mash_manager]\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_snapshot(directory)
    messages = [f.message for f in caught.value.findings]
    assert any("sits under protected 'health.sexual_health'" in m for m in messages)
    assert any("reader 'mash_manager' of 'health.sexual_health_notes'" in m for m in messages)


def test_roles_that_never_see_records_are_marked(shipped: PolicySnapshot) -> None:
    """The auditor and the policy administrator are declared as roles that never see records."""
    assert not shipped.roles["auditor"].sees_records
    assert not shipped.roles["policy_admin"].sees_records
    assert shipped.roles["social_worker"].sees_records


def test_grant_to_a_role_that_never_sees_records_is_a_blocking_error(policy_copy: PolicyCopy) -> None:
    """An allow line giving the auditor anything is refused at its line."""
    directory = policy_copy()
    line = append(
        directory / "agencies" / "probation.csv",
        "p, role:auditor, agency:probation, cat:probation, purpose:safeguarding, FULL, allow\n",
    )
    [finding] = [f for f in lint(load_snapshot(directory), TODAY) if "must never see records" in f.message]
    assert (finding.file, finding.line) == ("agencies/probation.csv", line)
    assert is_blocking(finding)
    assert "FULL to auditor" in finding.message


def test_grant_reaching_such_a_role_through_a_group_is_a_blocking_error(policy_copy: PolicyCopy) -> None:
    """Putting the policy administrator in a group that is granted EXISTS is refused at the group's line."""
    directory = policy_copy()
    edit(
        directory / "vocabulary" / "roles.yaml",
        "    sees_records: false\n    description: May ask",
        "    sees_records: false\n    member_of: [operational]\n    description: May ask",
    )
    findings = [f for f in lint(load_snapshot(directory), TODAY) if "must never see records" in f.message]
    assert findings
    assert all(is_blocking(f) for f in findings)
    assert any("EXISTS to policy_admin (through operational)" in f.message for f in findings)


def test_the_mash_agreement_does_not_cover_early_help(shipped: PolicySnapshot) -> None:
    """Early help runs only under its own agreement, although it sits under safeguarding."""
    on = date(2026, 6, 1)
    assert not shipped.agreement_allows("mash-isa-2026", "csc", "csc.case", "early_help", on)
    assert shipped.agreement_allows("early-help-isa-2026", "csc", "csc.case", "early_help", on)
    for purpose in ("safeguarding_screening", "s47_enquiry", "s17_assessment"):
        assert shipped.agreement_allows("mash-isa-2026", "police", "police.crime", purpose, on)


def test_early_help_grant_beyond_the_early_help_agreement_is_refused_at_request_time(policy_copy: PolicyCopy) -> None:
    """Granting homelessness records for early help, which only the ended 2024 agreement covered, is a warning naming
    it: no request can cite an agreement in force that covers it, so the line grants nothing."""
    directory = policy_copy()
    line = append(
        directory / "agencies" / "housing.csv",
        "p, role:early_help_worker, agency:housing, cat:housing.homelessness, purpose:early_help, PERTINENT, allow\n",
    )
    [finding] = at(lint(load_snapshot(directory), TODAY), "agencies/housing.csv", line)
    assert not is_blocking(finding)
    assert "rule relies on ended agreement 'mash-isa-2024' only" in finding.message
    assert "early_help_worker (csc) seeing housing.homelessness for early_help" in finding.message
