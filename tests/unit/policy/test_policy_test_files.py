"""IG officers' YAML policy tests: read with file:line, run against a snapshot, failures explained."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from policy_helpers import PolicyCopy, append

from gateway.domain import DisclosureLevel, FieldDisclosure
from gateway.policy import PolicySnapshot, content_hash, load_test_cases, run_case, run_suite
from gateway.policy.policy_tests import PolicyTestCase, failures_as_findings

SAMPLE = (("incident_date", "2026-05-20"), ("perpetrator", "Sample Person"), ("narrative", "Sample text"))


def case(**overrides: object) -> PolicyTestCase:
    base: dict[str, object] = dict(
        file="tests/x.yaml",
        line=3,
        name="A sample case",
        role="social_worker",
        purpose="s47_enquiry",
        agency="police",
        category="police.domestic_abuse",
        expect=DisclosureLevel.PERTINENT,
    )
    base.update(overrides)
    return PolicyTestCase(**base)  # type: ignore[arg-type]


def test_every_shipped_case_is_read_with_its_line(policy_copy: PolicyCopy) -> None:
    """Each case in the shipped tests carries the file and line of its `- name:` item."""
    suite = load_test_cases(policy_copy())
    assert suite.findings == ()
    assert len(suite.cases) >= 40
    first = next(c for c in suite.cases if c.file == "tests/mash_researchers.yaml")
    assert first.line == 4
    assert first.name == "The police MASH researcher sees police records in full when screening"


def test_wrong_level_names_expected_actual_and_deciding_lines(shipped: PolicySnapshot) -> None:
    """A failing level expectation says what was expected, what was granted and which lines decided."""
    result = run_case(shipped, case(expect=DisclosureLevel.FULL))
    assert not result.passed
    [problem] = result.problems
    assert problem.startswith("expected FULL, got PERTINENT (decided by agencies/police.csv:")


def test_undeclared_names_fail_the_case(shipped: PolicySnapshot) -> None:
    """A case naming an undeclared role fails with that reason instead of passing as NONE."""
    result = run_case(shipped, case(role="chief_constable", expect=DisclosureLevel.NONE))
    assert result.problems == ("undeclared role 'chief_constable'",)


def test_sample_record_fields_are_checked_through_the_redactor(shipped: PolicySnapshot) -> None:
    """Visible, redacted and withheld expectations are checked against the real redaction manifest."""
    good = case(
        record=SAMPLE,
        fields=(("incident_date", FieldDisclosure.FULL), ("perpetrator", FieldDisclosure.REDACTED)),
    )
    assert run_case(shipped, good).passed
    wrong = case(record=SAMPLE, fields=(("perpetrator", FieldDisclosure.FULL),))
    assert run_case(shipped, wrong).problems == ("field 'perpetrator': expected visible, got redacted",)
    unknown = case(record=(("shoe_size", "9"),))
    assert run_case(shipped, unknown).problems == (
        "sample record field 'shoe_size' is not a field of police.domestic_abuse",
    )


def test_malformed_cases_are_findings_at_their_line(tmp_path: Path) -> None:
    """A case missing keys, with an unknown key or a bad level is reported at file:line and not run."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "bad.yaml").write_text(
        "tests:\n"
        "  - name: No purpose given\n"
        "    role: social_worker\n"
        "    agency: police\n"
        "    category: police.crime\n"
        "    expect: FULL\n"
        "  - name: A level that does not exist\n"
        "    role: social_worker\n"
        "    purpose: s47_enquiry\n"
        "    agency: police\n"
        "    category: police.crime\n"
        "    expect: SOME\n"
        "    colour: blue\n"
    )
    suite = load_test_cases(tmp_path)
    assert suite.cases == ()
    where = sorted((f.line, f.message) for f in suite.findings)
    assert where[0][0] == 2
    assert where[0][1] == "purpose is required"
    assert (12, "expect must be NONE, EXISTS, PERTINENT or FULL") in where
    assert (13, "colour is not a known key (expected one of: name, role, purpose, agency, category, expect, "
            "record, visible, redacted, withheld, disclosed_on, agreement, review, requester)") in where


def test_failures_become_findings_naming_file_line_and_test(
    policy_copy: PolicyCopy, shipped: PolicySnapshot
) -> None:
    """A failing case turns into `file:line: name: problem`."""
    directory = policy_copy("failing_test")
    suite = load_test_cases(directory)
    results = run_suite(shipped, suite)
    [finding] = failures_as_findings([r for r in results if not r.passed], suite)
    assert str(finding).startswith(
        "tests/zz_failing.yaml:3: A housing officer managing a tenancy sees GP "
        "registrations in full: expected FULL, got NONE"
    )


def test_appending_a_case_extends_the_suite(policy_copy: PolicyCopy) -> None:
    """A new case appended to a test file is picked up with the right line."""
    directory = policy_copy()
    line = append(
        directory / "tests" / "purposes.yaml",
        "  - name: An early-help worker sees tenancy records\n"
        "    role: early_help_worker\n    purpose: early_help\n    agency: housing\n"
        "    category: housing.tenancy\n    expect: PERTINENT\n",
    )
    suite = load_test_cases(directory)
    assert any(c.line == line and c.name == "An early-help worker sees tenancy records" for c in suite.cases)


def test_hidden_test_files_are_not_read(policy_copy: PolicyCopy) -> None:
    """A dotfile in tests/ is outside the policy version, so its cases are never run."""
    directory = policy_copy()
    before = content_hash(directory)
    (directory / "tests" / ".scratch.yaml").write_text(
        "tests:\n"
        "  - name: A scratch note that contradicts the policy\n"
        "    role: auditor\n    purpose: s47_enquiry\n    agency: police\n"
        "    category: police.crime\n    expect: FULL\n",
        encoding="utf-8",
    )
    assert content_hash(directory) == before
    suite = load_test_cases(directory)
    assert suite.findings == ()
    assert all(not c.file.startswith("tests/.") for c in suite.cases)
    assert not any(c.name.startswith("A scratch note") for c in suite.cases)


def test_case_citing_an_agreement_is_judged_as_the_gateway_would(shipped: PolicySnapshot) -> None:
    """With `agreement`, a request the agreement does not cover gets NONE, and the reason is named."""
    on = date(2026, 6, 1)
    early_help = dict(
        role="early_help_worker",
        purpose="early_help",
        agency="education",
        category="education.attendance",
        on=on,
    )
    covered = case(**early_help, agreement="early-help-isa-2026", expect=DisclosureLevel.PERTINENT)
    assert run_case(shipped, covered).passed
    refused = case(**early_help, agreement="mash-isa-2026", expect=DisclosureLevel.PERTINENT)
    assert run_case(shipped, refused).problems == (
        "expected PERTINENT, got NONE (agreement 'mash-isa-2026' does not cover purpose 'early_help')",
    )
    assert run_case(shipped, case(**early_help, agreement="mash-isa-2026", expect=DisclosureLevel.NONE)).passed
    expired = case(agreement="mash-isa-2024", on=on, expect=DisclosureLevel.PERTINENT)
    assert "is not in force on 2026-06-01" in run_case(shipped, expired).problems[0]
    unknown = case(agreement="no-such-isa")
    assert run_case(shipped, unknown).problems == ("undeclared agreement 'no-such-isa'",)
