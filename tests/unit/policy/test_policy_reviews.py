"""Review lines: the level they hold back, what an approval may release, and how the IG tools show them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from policy_helpers import SHIPPED, PolicyCopy, append, edit

from gateway.cli.main import main
from gateway.cli.policy_cmd import CLEAN, FINDINGS, UNLOADABLE
from gateway.domain import DisclosureLevel
from gateway.policy.snapshot import load_snapshot

REVIEW_LINE = (
    "p, role:mash_researcher_police, agency:health, cat:health.mental_health, "
    "purpose:safeguarding_screening, PERTINENT, review"
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["policy", *argv])
    return code, capsys.readouterr().out


def test_a_review_line_holds_its_level_back_and_offers_it_after_review() -> None:
    """The shipped review line leaves the police researcher EXISTS now and PERTINENT once health approve."""
    decision = load_snapshot(SHIPPED).decide(
        "mash_researcher_police", "safeguarding_screening", "health", "health.mental_health"
    )
    assert decision.level is DisclosureLevel.EXISTS
    assert decision.review is DisclosureLevel.PERTINENT
    assert decision.reviewed_by
    assert decision.reviewed_by[0].startswith("agencies/health.csv:")
    assert decision.denied_by == ()  # a review line is not reported as a deny


def test_a_deny_caps_what_an_approval_may_release(policy_copy: PolicyCopy) -> None:
    """A deny at PERTINENT under a review line leaves nothing for a reviewer to approve."""
    directory = policy_copy()
    append(
        directory / "agencies" / "health.csv",
        "p, role:mash_researcher_police, agency:health, cat:health.mental_health, "
        "purpose:safeguarding_screening, PERTINENT, deny\n",
    )
    decision = load_snapshot(directory).decide(
        "mash_researcher_police", "safeguarding_screening", "health", "health.mental_health"
    )
    assert decision.level is DisclosureLevel.EXISTS
    assert decision.review is DisclosureLevel.NONE


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (REVIEW_LINE.replace("role:mash_researcher_police", "role:*"), "'role:*' is only allowed in deny lines"),
        (REVIEW_LINE.replace("purpose:safeguarding_screening", "purpose:*"), "'purpose:*' is only allowed"),
        (REVIEW_LINE.replace(", review", ", reveiw"), "the effect must be allow, deny or review"),
    ],
)
def test_a_malformed_review_line_is_refused_at_its_line(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy, line: str, message: str
) -> None:
    """A review line with a wildcard role or purpose, or a misspelt effect, is an error at its line."""
    directory = policy_copy()
    number = append(directory / "agencies" / "health.csv", line + "\n")
    code, out = run(capsys, "check", str(directory), "--today", "2026-11-26")
    assert code in (FINDINGS, UNLOADABLE)
    assert any(f"agencies/health.csv:{number}:" in ln and message in ln for ln in out.splitlines())


def test_check_blocks_a_review_line_no_role_can_decide(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy
) -> None:
    """Without a `reviews: first` role for the agency, a review line is a blocking error at its line."""
    directory = policy_copy()
    edit(directory / "vocabulary" / "roles.yaml", "    reviews: first\n  health_caldicott", "  health_caldicott")
    code, out = run(capsys, "check", str(directory), "--today", "2026-11-26")
    assert code == FINDINGS
    assert "no role reviews for health" in out
    assert "0 error(s)" not in out


def test_check_warns_of_a_review_line_that_never_offers_more(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy
) -> None:
    """A review line that a deny caps wherever it matches is a warning: no approval could release anything."""
    directory = policy_copy()
    number = append(
        directory / "agencies" / "health.csv",
        "p, role:mash_manager, agency:health, cat:health.sexual_health, purpose:s47_enquiry, PERTINENT, review\n",
    )
    _code, out = run(capsys, "check", str(directory), "--today", "2026-11-26")
    assert f"agencies/health.csv:{number}: warning: review line never offers PERTINENT" in out


def test_explain_names_the_reviewing_agency_and_its_roles(capsys: pytest.CaptureFixture[str]) -> None:
    """explain shows the level now, the level after review, the review line and who reviews."""
    code, out = run(
        capsys, "explain", str(SHIPPED), "--role", "mash_researcher_police", "--purpose",
        "safeguarding_screening", "--agency", "health", "--category", "health.mental_health",
    )
    assert code == CLEAN
    assert "health.mental_health for safeguarding_screening: EXISTS" in out
    assert "up to PERTINENT once health approves" in out
    assert "reviewed by health: health_designated_professional; after escalation also health_caldicott_guardian" in out
    assert "granted by" not in out


def test_diff_marks_a_change_from_allow_to_review_and_back(
    capsys: pytest.CaptureFixture[str], policy_copy: PolicyCopy
) -> None:
    """Adding a review line is narrower (EXISTS now, PERTINENT after review); removing it is wider."""
    directory = policy_copy()
    edit(directory / "agencies" / "health.csv", REVIEW_LINE + "\n", "")
    code, out = run(capsys, "diff", str(SHIPPED), str(directory))
    assert code == FINDINGS
    assert "1 change(s): 1 wider, 0 narrower" in out
    assert "EXISTS, PERTINENT after review" in out
    code, out = run(capsys, "diff", str(directory), str(SHIPPED))
    assert "1 change(s): 0 wider, 1 narrower" in out


def test_matrix_shows_a_cell_under_review_distinctly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The table shows the reviewed level in lower case; the CSV has review and reviewed_by columns."""
    code, out = run(
        capsys, "matrix", str(SHIPPED), "--role", "mash_researcher_police", "--purpose", "safeguarding_screening"
    )
    assert code == CLEAN
    row = next(line for line in out.splitlines() if line.startswith("│ mash_researcher_police"))
    assert "PPPpPP·" in row
    target = tmp_path / "matrix.csv"
    run(capsys, "matrix", str(SHIPPED), "--csv", str(target), "--role", "mash_researcher_police")
    cells = {(r["purpose"], r["category"]): r for r in csv.DictReader(target.open())}
    cell = cells[("safeguarding_screening", "health.mental_health")]
    assert (cell["level"], cell["review"]) == ("EXISTS", "PERTINENT")
    assert cell["reviewed_by"].startswith("agencies/health.csv:")
    assert cells[("s47_enquiry", "health.mental_health")]["review"] == ""
