"""Runs every IG officer's case in policies/tests/*.yaml as its own test, against the shipped policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.keyring import Keyring
from gateway.policy import PolicySnapshot, PolicyTestCase, load_snapshot, load_test_cases, run_case

POLICIES = Path(__file__).resolve().parents[2] / "policies"
SUITE = load_test_cases(POLICIES)


@pytest.fixture(scope="module")
def snapshot() -> PolicySnapshot:
    return load_snapshot(POLICIES)


@pytest.fixture(scope="module")
def pseudonym_keys() -> Keyring:
    return Keyring.generate()


def test_there_are_policy_cases() -> None:
    """The shipped policy comes with its plain-sentence tests."""
    assert SUITE.cases


def test_policy_test_files_are_readable() -> None:
    """Every case in the policy test files can be read; a malformed one is named here at its file:line."""
    assert not SUITE.findings, "\n".join(str(f) for f in SUITE.findings)


@pytest.mark.parametrize("case", SUITE.cases, ids=lambda c: f"{c.where} {c.name}")
def test_policy_case(case: PolicyTestCase, snapshot: PolicySnapshot, pseudonym_keys: Keyring) -> None:
    """One IG officer's expectation holds for the shipped policy (the id is its file:line and sentence)."""
    result = run_case(snapshot, case, pseudonym_keys)
    if not result.passed:
        pytest.fail(f"{case.where}: {case.name}: " + "; ".join(result.problems), pytrace=False)
