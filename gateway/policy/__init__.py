"""The policy engine: purpose-based Casbin policies served from a precomputed decision index.

`load_snapshot(directory)` reads and validates a policy directory into an immutable `PolicySnapshot`;
`PolicyHolder` keeps the active one and swaps in a new one only after it has been checked, tested and
its activation audited.
"""

from __future__ import annotations

from gateway.policy.checks import is_blocking, lint
from gateway.policy.holder import PolicyHolder, PolicyWatcher, ReloadOutcome, validate
from gateway.policy.index import Decision
from gateway.policy.policy_tests import (
    PolicyTestCase,
    PolicyTestResult,
    PolicyTestSuite,
    load_test_cases,
    run_case,
    run_suite,
)
from gateway.policy.rules import Effect, PolicyLine
from gateway.policy.snapshot import MatchingLines, PolicySnapshot, load_snapshot
from gateway.policy.sources import content_hash
from gateway.policy.vocabulary import (
    Agency,
    Agreement,
    Area,
    FieldCategory,
    LegalBasis,
    Purpose,
    RecordCategory,
    Role,
    Vocabulary,
)

__all__ = [
    "Agency",
    "Agreement",
    "Area",
    "Decision",
    "Effect",
    "FieldCategory",
    "LegalBasis",
    "MatchingLines",
    "PolicyHolder",
    "PolicyLine",
    "PolicySnapshot",
    "PolicyTestCase",
    "PolicyTestResult",
    "PolicyTestSuite",
    "PolicyWatcher",
    "Purpose",
    "RecordCategory",
    "ReloadOutcome",
    "Role",
    "Vocabulary",
    "content_hash",
    "is_blocking",
    "lint",
    "load_snapshot",
    "load_test_cases",
    "run_case",
    "run_suite",
    "validate",
]
