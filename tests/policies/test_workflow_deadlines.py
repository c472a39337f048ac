"""Runs every deadline case in policies/tests/workflow/*.yaml against the shipped workflow.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.workflow.policy import load_workflow
from gateway.workflow.policy_tests import check_case, load_deadline_cases

POLICIES = Path(__file__).resolve().parents[2] / "policies"
CASES, UNREADABLE = load_deadline_cases(POLICIES)


def test_every_deadline_case_is_readable() -> None:
    """No case file is malformed, and there is at least one case."""
    assert UNREADABLE == []
    assert CASES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_deadline_case(case: object) -> None:
    """The shipped workflow policy gives the deadline the case expects."""
    assert check_case(load_workflow(POLICIES), case) == ""  # type: ignore[arg-type]
