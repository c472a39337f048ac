"""Deadline tests for workflow.yaml (`policies/tests/workflow/*.yaml`): rated at a time, due at a time.

Like the IG officers' access tests, each case is plain YAML and a failure points at its file:line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.errors import Finding
from gateway.policy.sources import LineDict, LineList, SourceError, load_yaml
from gateway.workflow.calendar import CalendarError
from gateway.workflow.policy import WorkflowPolicy

TESTS_DIR = "tests/workflow"
_KEYS = ("name", "mash", "rating", "step", "rated_at", "due")


@dataclass(frozen=True, slots=True)
class DeadlineCase:
    name: str
    file: str
    line: int
    mash: str
    rating: str
    step: str
    rated_at: datetime
    due: datetime | None


def _instant(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError("not a time")


def load_deadline_cases(directory: Path) -> tuple[list[DeadlineCase], list[Finding]]:
    """Every case of `tests/workflow/*.yaml`, and a finding for each one that cannot be read."""
    cases: list[DeadlineCase] = []
    findings: list[Finding] = []
    for path in sorted((directory / TESTS_DIR).glob("*.yaml")):
        rel = f"{TESTS_DIR}/{path.name}"
        try:
            doc = load_yaml(path, rel)
        except SourceError as exc:
            findings.append(exc.finding)
            continue
        items = doc.get("deadlines")
        if not isinstance(items, LineList):
            findings.append(Finding(rel, doc.line, "a deadline test file holds `deadlines:`, a list of cases"))
            continue
        for i, item in enumerate(items):
            line = items.line_of(i)
            if not isinstance(item, LineDict) or any(k not in item for k in _KEYS):
                findings.append(Finding(rel, line, f"each case needs {', '.join(_KEYS)}"))
                continue
            try:
                rated = _instant(item["rated_at"])
                due = None if item["due"] in (None, "none") else _instant(item["due"])
            except ValueError:
                findings.append(Finding(rel, line, "rated_at and due must be ISO 8601 times (due may be none)"))
                continue
            assert rated is not None
            cases.append(DeadlineCase(str(item["name"]), rel, line, str(item["mash"]), str(item["rating"]),
                                      str(item["step"]), rated, due))
    return cases, findings


def check_case(policy: WorkflowPolicy, case: DeadlineCase) -> str:
    """Why the case fails, or "" when the policy gives the expected deadline."""
    return evaluate_case(policy, case)[1]


def evaluate_case(policy: WorkflowPolicy, case: DeadlineCase) -> tuple[str, str]:
    """(the deadline the policy gives, in words; why the case fails, or "" when it passes)."""
    mash = policy.mashes.get(case.mash)
    if mash is None or case.rating not in mash.ratings:
        return "", f"no rating {case.rating!r} in MASH {case.mash!r}"
    try:
        got = policy.due(case.mash, case.rating, case.step, case.rated_at)
    except CalendarError as exc:
        return "", str(exc)
    said = got.isoformat() if got else "none"
    if got != case.due:
        return said, f"{case.name}: expected {case.due.isoformat() if case.due else 'none'}, got {said}"
    return said, ""


def run_deadline_tests(policy: WorkflowPolicy, directory: Path) -> tuple[int, list[Finding]]:
    """How many cases passed, and a finding for each that failed or could not be read."""
    cases, findings = load_deadline_cases(directory)
    passed = 0
    for case in cases:
        problem = check_case(policy, case)
        if problem:
            findings.append(Finding(case.file, case.line, problem))
        else:
            passed += 1
    return passed, sorted(findings, key=lambda f: (f.file, f.line))
