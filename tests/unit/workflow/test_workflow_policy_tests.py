"""Deadline test files: a wrong expectation or a malformed case is a finding at file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.cli.main import main as policy_main
from gateway.workflow.policy import load_workflow
from gateway.workflow.policy_tests import run_deadline_tests

CASE = """\
deadlines:
  - name: right
    mash: children
    rating: red
    step: research
    rated_at: 2026-11-30T10:00:00Z
    due: 2026-11-30T14:00:00Z
  - name: wrong
    mash: children
    rating: red
    step: research
    rated_at: 2026-11-30T10:00:00Z
    due: 2026-11-30T15:00:00Z
  - name: incomplete
    mash: children
"""


def _copy(policy_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(policy_dir, target)
    (target / "tests" / "workflow" / "mine.yaml").write_text(CASE)
    return target


def test_a_failing_and_a_malformed_case_are_reported_at_their_lines(policy_dir: Path, tmp_path: Path) -> None:
    """The wrong expectation names what it got; the incomplete case names what is missing."""
    directory = _copy(policy_dir, tmp_path)
    passed, problems = run_deadline_tests(load_workflow(directory), directory)
    mine = [p for p in problems if p.file == "tests/workflow/mine.yaml"]
    assert [p.line for p in mine] == [8, 14]
    assert "expected 2026-11-30T15:00:00+00:00, got 2026-11-30T14:00:00+00:00" in mine[0].message
    assert passed >= 1


def test_policy_test_fails_when_a_deadline_case_fails(policy_dir: Path, tmp_path: Path) -> None:
    """`policy test` exits non-zero and prints the failing case; `policy check` reports workflow.yaml mistakes."""
    directory = _copy(policy_dir, tmp_path)
    assert policy_main(["policy", "test", str(directory)]) != 0
    assert policy_main(["policy", "test", str(policy_dir)]) == 0
    text = (directory / "workflow.yaml").read_text().replace("deadlines: {research: 4, decision: 4}",
                                                             "deadlines: {research: -4}")
    (directory / "workflow.yaml").write_text(text)
    assert policy_main(["policy", "check", str(directory)]) != 0
