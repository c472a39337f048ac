"""`mash-gateway policy check|test|explain|diff|matrix` on the shipped policy and on broken fixtures."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest
from policy_helpers import SHIPPED, PolicyCopy, edit

from gateway.cli.main import main
from gateway.cli.policy_cmd import CLEAN, FINDINGS, UNANSWERABLE, UNLOADABLE


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["policy", *argv])
    return code, capsys.readouterr().out


def test_check_on_the_shipped_policy_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped policy checks clean, reporting only the expired agreement as a warning."""
    code, out = run(capsys, "check", str(SHIPPED), "--today", "2026-11-26")
    assert code == CLEAN
    assert "agreements.yaml:30: warning: agreement 'mash-isa-2024' expired on 2025-03-31" in out
    assert "0 error(s), 1 warning(s)" in out


def test_check_after_an_agreement_ends_is_clean_and_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`policy check --today` after the agreements end exits clean with warnings naming each, not errors."""
    code, out = run(capsys, "check", str(SHIPPED), "--today", "2028-01-02")
    assert code == CLEAN
    assert "agreement 'mash-isa-2026' expired on 2027-12-31; requests citing it are refused" in out
    assert "0 error(s)" in out


def test_check_strict_counts_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    """With --strict, the expired agreement warning makes the check fail."""
    code, _ = run(capsys, "check", str(SHIPPED), "--today", "2026-11-26", "--strict")
    assert code == FINDINGS


def test_check_reports_bad_lines_as_file_line_message(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy
) -> None:
    """Undeclared names and malformed lines are printed as file:line: message, exit 1."""
    code, out = run(capsys, "check", str(policy_copy("undeclared_names")))
    assert code == FINDINGS
    assert "agencies/police.csv:3: undeclared role 'police_sergeant'" in out
    assert "agencies/police.csv:4: rule can never match: undeclared category 'police.traffic'" in out


def test_check_reports_a_typo_and_the_protected_exposure_it_causes_in_one_run(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy
) -> None:
    """A misspelt role in the MASH manager's sexual-health cap is reported with the exposure at the granting line."""
    directory = policy_copy()
    edit(
        directory / "agencies" / "health.csv",
        "p, role:mash_manager, agency:health, cat:health.sexual_health, purpose:*, EXISTS, deny",
        "p, role:mash_manger, agency:health, cat:health.sexual_health, purpose:*, EXISTS, deny",
    )
    code, out = run(capsys, "check", str(directory), "--today", "2026-11-26")
    assert code == FINDINGS
    assert "agencies/health.csv:43: undeclared role 'mash_manger' (did you mean 'mash_manager'?)" in out
    exposure = next(line for line in out.splitlines() if line.startswith("agencies/health.csv:7: protected category"))
    assert "health.sexual_health" in exposure
    assert "disclosed at FULL to mash_manager for s17_assessment, s47_enquiry, safeguarding_screening" in exposure


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("vocabulary/purposes.yaml", "safeguarding:\n    group: true\n", "safeguarding:\n    parent: s47_enquiry\n"),
        ("vocabulary/roles.yaml", "member_of: [operational]\n  early_help", "member_of: [x]\n  early_help"),
        ("vocabulary/record_categories.yaml", "    kind: event\n", "    kind: happening\n"),
        ("agreements.yaml", "    valid_from: 2026-01-01\n", "    valid_from: soon\n"),
        ("redaction.yaml", "person.phone: drop", "person.phone: shred"),
        ("bindings.yaml", "[auditor]", "[auditor, mash_staff, 5]"),
    ],
)
def test_check_on_a_broken_vocabulary_reports_findings_and_exits_1(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy, file: str, old: str, new: str
) -> None:
    """Checking what loaded of a broken policy never crashes: the breakage is reported at its file, exit 1."""
    directory = policy_copy()
    edit(directory / file, old, new)
    code, out = run(capsys, "check", str(directory), "--today", "2026-11-26")
    assert code == FINDINGS
    assert any(line.startswith(f"{file}:") for line in out.splitlines())


def test_check_reports_lint_findings_beside_a_broken_vocabulary(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy
) -> None:
    """A bad retention in purposes.yaml does not stop check reporting a line beyond every agreement."""
    directory = policy_copy("lint_findings")
    edit(directory / "vocabulary" / "purposes.yaml", "retention: 6 years", "retention: forever")
    code, out = run(capsys, "check", str(directory), "--today", "2026-11-26")
    assert code == FINDINGS
    assert "retention must read like" in out
    assert "agencies/probation.csv:6: rule grants more than any agreement allows" in out


def test_check_reports_lint_findings(capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy) -> None:
    """Rules beyond every agreement and shadowed rules are reported by check, exit 1."""
    code, out = run(capsys, "check", str(policy_copy("lint_findings")), "--today", "2026-11-26")
    assert code == FINDINGS
    assert "agencies/probation.csv:6: rule grants more than any agreement allows" in out
    assert "agencies/probation.csv:7: warning: rule is shadowed by a deny" in out


def test_check_cannot_load_exits_2(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy, tmp_path: Path
) -> None:
    """An unparsable file or a missing directory exits 2."""
    code, out = run(capsys, "check", str(policy_copy("syntax_error")))
    assert code == UNLOADABLE
    assert "vocabulary/roles.yaml:" in out
    assert "YAML syntax error" in out
    code, _ = run(capsys, "check", str(tmp_path / "missing"))
    assert code == UNLOADABLE


def test_check_verify_cross_checks_with_casbin(capsys: pytest.CaptureFixture[str]) -> None:
    """--verify N compares N decisions with Casbin's enforcer and finds no disagreement."""
    code, out = run(capsys, "check", str(SHIPPED), "--today", "2026-11-26", "--verify", "40")
    assert code == CLEAN
    assert "decision index gives" not in out


def test_test_runs_the_shipped_tests(capsys: pytest.CaptureFixture[str]) -> None:
    """Every shipped policy test passes."""
    code, out = run(capsys, "test", str(SHIPPED), "-v")
    assert code == CLEAN
    assert " 0 failed" in out
    assert "An early-help request citing the MASH agreement is refused" in out


def test_test_names_the_failing_case(capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy) -> None:
    """A failing case is printed at file:line with its sentence and exit 1."""
    code, out = run(capsys, "test", str(policy_copy("failing_test")))
    assert code == FINDINGS
    assert (
        "tests/zz_failing.yaml:3: A housing officer managing a tenancy sees GP registrations in full: "
        "expected FULL, got NONE" in out
    )
    assert "1 failed" in out


def test_test_cannot_load_exits_2(capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy) -> None:
    """The tests cannot run against a policy that cannot be read."""
    code, _ = run(capsys, "test", str(policy_copy("syntax_error")))
    assert code == UNLOADABLE


def test_explain_names_the_deny_that_won(capsys: pytest.CaptureFixture[str]) -> None:
    """Explain prints the level, every matching line, and which deny capped the answer."""
    code, out = run(
        capsys,
        "explain",
        str(SHIPPED),
        "--role",
        "mash_manager",
        "--purpose",
        "s47_enquiry",
        "--agency",
        "health",
        "--category",
        "health.sexual_health",
    )
    assert code == CLEAN
    assert "health.sexual_health for s47_enquiry: NONE" in out
    deny = next(line for line in out.splitlines() if "sexual_health, purpose:*, EXISTS, deny" in line)
    assert "decided" in deny
    assert "capped by deny agencies/health.csv:" in out


def test_explain_with_no_matching_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A request no line matches is explained as nothing granted by default."""
    code, out = run(
        capsys,
        "explain",
        str(SHIPPED),
        "--role",
        "auditor",
        "--purpose",
        "s47_enquiry",
        "--agency",
        "police",
        "--category",
        "police.crime",
    )
    assert code == CLEAN
    assert "NONE" in out
    assert "nothing is granted by default" in out


def test_explain_rejects_undeclared_names(capsys: pytest.CaptureFixture[str]) -> None:
    """An undeclared name is reported and exits 2: there is no request to explain."""
    code, out = run(
        capsys,
        "explain",
        str(SHIPPED),
        "--role",
        "janitor",
        "--purpose",
        "s47_enquiry",
        "--agency",
        "police",
        "--category",
        "police.crime",
    )
    assert code == UNANSWERABLE
    assert "undeclared role 'janitor'" in out


def test_diff_of_identical_directories_is_empty(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy
) -> None:
    """Two copies of the same policy differ in nothing."""
    code, out = run(capsys, "diff", str(SHIPPED), str(policy_copy()))
    assert code == CLEAN
    assert "no effective access changes" in out


def test_diff_lists_each_changed_cell_grouped(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy
) -> None:
    """A widened and a narrowed rule show up as old -> new per role and purpose, exit 1."""
    code, out = run(capsys, "diff", str(SHIPPED), str(policy_copy("widened")))
    assert code == FINDINGS
    assert "housing_officer for s47_enquiry" in out
    assert "police_officer for s47_enquiry" in out
    attendance = next(
        line for line in out.splitlines() if "education.attendance" in line and "EXISTS" in line
    )
    assert attendance.index("EXISTS") < attendance.index("PERTINENT")
    enrolment = [line for line in out.splitlines() if "education.enrolment" in line]
    assert any("PERTINENT" in line and "NONE" in line for line in enrolment)
    # housing_officer gains attendance for s47_enquiry only (child_protection); police_officer loses
    # enrolment under the three statutory safeguarding purposes (it had nothing for early help or
    # housing management).
    assert "4 change(s): 1 wider, 3 narrower" in out


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_diff_between_git_revisions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`diff HEAD~1:policies HEAD:policies` reads both revisions from git."""
    repo = tmp_path / "repo"
    shutil.copytree(SHIPPED, repo / "policies")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "add", "policies")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "one")
    shutil.copytree(Path(__file__).parent / "fixtures" / "widened", repo / "policies", dirs_exist_ok=True)
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-am", "two")
    monkeypatch.chdir(repo)
    code, out = run(capsys, "diff", "HEAD~1:policies", "HEAD:policies")
    assert code == FINDINGS
    assert "4 change(s): 1 wider, 3 narrower" in out
    code, out = run(capsys, "diff", "no-such-rev:policies", "HEAD:policies")
    assert code == UNLOADABLE
    assert "git could not read it" in out


def test_matrix_table_and_csv(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The matrix prints one letter per category, and its CSV has every cell with its deciding lines."""
    code, out = run(
        capsys, "matrix", str(SHIPPED), "--purpose", "housing_management", "--role", "housing_officer"
    )
    assert code == CLEAN
    row = next(line for line in out.splitlines() if line.startswith("│ housing_officer"))
    assert "PPP··" in row  # tenancy, arrears, asb pertinent; homelessness and refuge nothing
    target = tmp_path / "matrix.csv"
    code, _ = run(capsys, "matrix", str(SHIPPED), "--csv", str(target))
    assert code == CLEAN
    rows = list(csv.DictReader(target.open()))
    # assertable roles x citable purposes x record categories (with the adults' MASH: 2 roles, 1 purpose and
    # adult social care's 4 categories; with analysis: 1 role, 2 purposes)
    assert len(rows) == 23 * 8 * 36
    cell = next(
        r
        for r in rows
        if r["role"] == "mash_manager"
        and r["purpose"] == "s47_enquiry"
        and r["category"] == "health.sexual_health"
    )
    assert cell["level"] == "NONE"
    assert cell["denied_by"].startswith("agencies/health.csv:")


def test_matrix_csv_to_an_unwritable_path_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Writing the CSV into a folder that does not exist says so and exits 2, without a traceback."""
    target = tmp_path / "no-such-folder" / "matrix.csv"
    code, out = run(capsys, "matrix", str(SHIPPED), "--csv", str(target))
    assert code == UNLOADABLE
    assert f"cannot write {target}" in out
    assert not target.exists()


@pytest.mark.parametrize(
    ("role", "purpose", "agency", "category", "expected"),
    [
        ("mash_manager", "s47_enquiry", "police", "health.sexual_health", "held by health, not by police"),
        ("operational", "s47_enquiry", "police", "police.crime", "'operational' is a group of roles"),
        ("social_worker", "child_protection", "police", "police.crime", "'child_protection' is a group"),
        ("social_worker", "s47_enquiry", "police", "police", "'police' is a group of categories"),
    ],
)
def test_explain_refuses_a_question_no_request_could_ask(
    capsys: pytest.CaptureFixture[str], role: str, purpose: str, agency: str, category: str, expected: str
) -> None:
    """A category of another agency, or a group role, purpose or category, is refused with exit 2."""
    code, out = run(
        capsys,
        "explain",
        str(SHIPPED),
        "--role",
        role,
        "--purpose",
        purpose,
        "--agency",
        agency,
        "--category",
        category,
    )
    assert code == UNANSWERABLE
    assert expected in out
    assert "nothing to explain" in out


def test_test_reports_cases_no_request_could_make(capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy) -> None:
    """Cases naming another agency's category or a group role fail with a clear reason instead of passing."""
    directory = policy_copy()
    (directory / "tests" / "vacuous.yaml").write_text(
        "tests:\n"
        "  - name: A MASH manager cannot see sexual-health records at all\n"
        "    role: mash_manager\n    purpose: s47_enquiry\n    agency: police\n"
        "    category: health.sexual_health\n    expect: NONE\n"
        "  - name: Operational staff never see more than EXISTS of domestic abuse\n"
        "    role: operational\n    purpose: child_protection\n    agency: police\n"
        "    category: police.domestic_abuse\n    expect: EXISTS\n",
        encoding="utf-8",
    )
    code, out = run(capsys, "test", str(directory))
    assert code == FINDINGS
    assert "tests/vacuous.yaml:2: A MASH manager cannot see sexual-health records at all: category" in out
    assert "held by health, not by police" in out
    assert "'operational' is a group of roles" in out
    assert "'child_protection' is a group of purposes" in out
    assert "2 failed" in out


EXPLAIN_CELL = ("--role", "social_worker", "--purpose", "s47_enquiry", "--agency", "health", "--category",
                "health.attendance")


def test_explain_under_an_agreement_in_force_gives_the_policy_level(capsys: pytest.CaptureFixture[str]) -> None:
    """`--agreement` and `--date` within its term: the level the policy lines give, and the day it applies to."""
    code, out = run(capsys, "explain", str(SHIPPED), *EXPLAIN_CELL, "--agreement", "mash-isa-2026",
                    "--date", "2027-06-01")
    assert code == CLEAN
    assert "under mash-isa-2026 on 2027-06-01: PERTINENT" in out


@pytest.mark.parametrize(("agreement", "day", "reason"), [
    ("mash-isa-2026", "2028-01-02", "agreement 'mash-isa-2026' expired on 2027-12-31"),
    ("early-help-isa-2026", "2027-01-01", "agreement 'early-help-isa-2026' does not cover purpose 's47_enquiry'"),
    ("mash-isa-2026", "2025-12-31", "agreement 'mash-isa-2026' is not in force until 2026-01-01"),
])
def test_explain_reproduces_a_refusal_by_the_agreement(capsys: pytest.CaptureFixture[str], agreement: str, day: str,
                                                        reason: str) -> None:
    """An agreement that has ended or does not cover the request gives NONE, saying why, as the gateway refuses."""
    code, out = run(capsys, "explain", str(SHIPPED), *EXPLAIN_CELL, "--agreement", agreement, "--date", day)
    assert code == CLEAN
    assert f"on {day}: NONE" in out
    assert reason in out


def test_explain_with_an_unknown_agreement_is_unanswerable(capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt agreement is a usage error naming the closest one."""
    code, out = run(capsys, "explain", str(SHIPPED), *EXPLAIN_CELL, "--agreement", "mash-isa-2025")
    assert code == UNANSWERABLE
    assert "did you mean 'mash-isa-2026'" in out
