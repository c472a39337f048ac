"""Policy tests: IG officers' plain-sentence YAML cases (who, why, what -> expected level and fields)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import ValidationError

from gateway.domain import DisclosureLevel, Field, FieldDisclosure, Record
from gateway.errors import Finding
from gateway.keyring import Keyring
from gateway.policy.schemas import PolicyTestEntry, entry_findings
from gateway.policy.snapshot import PolicySnapshot
from gateway.policy.sources import LineDict, LineList, SourceError, load_yaml, policy_files
from gateway.policy.vocabulary import undeclared
from gateway.redaction import RedactionContext, Redactor

TESTS_DIR = "tests"
_TEST_SUFFIXES = (".yaml", ".yml")
_OUTCOMES = {
    "visible": FieldDisclosure.FULL,
    "redacted": FieldDisclosure.REDACTED,
    "withheld": FieldDisclosure.WITHHELD,
}


@dataclass(frozen=True, slots=True)
class PolicyTestCase:
    """One expectation: this role, for this purpose, sees this agency's category at this level."""

    file: str
    line: int
    name: str
    role: str
    purpose: str
    agency: str
    category: str
    expect: DisclosureLevel
    record: tuple[tuple[str, str], ...] = ()  # sample record: (field name, value)
    fields: tuple[tuple[str, FieldDisclosure], ...] = ()  # expected disclosure per field name
    on: date | None = None
    agreement: str = ""  # the agreement the request cites; "" judges the policy lines alone
    review: DisclosureLevel = DisclosureLevel.NONE  # the level a reviewer's approval may release
    requester: str = ""  # the asking certificate's agency (a borough's hub); "" means the role's own agency

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class PolicyTestResult:
    """The outcome of one case; `problems` is empty when it passed."""

    case: PolicyTestCase
    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class PolicyTestSuite:
    """Every case read from a policy directory's tests, plus problems that stopped a case being read."""

    cases: tuple[PolicyTestCase, ...]
    findings: tuple[Finding, ...] = field(default_factory=tuple)


def load_test_cases(directory: Path) -> PolicyTestSuite:
    """Read every tests/*.yaml file of a policy directory (no snapshot needed; names are checked when run).

    Only files the policy version covers are read, so a hidden scratch file can never decide a reload.
    """
    folder = directory / TESTS_DIR
    cases: list[PolicyTestCase] = []
    findings: list[Finding] = []
    if not folder.is_dir():
        return PolicyTestSuite((), ())
    for path in (p for p in policy_files(directory) if p.parent == folder and p.suffix in _TEST_SUFFIXES):
        rel = f"{TESTS_DIR}/{path.name}"
        try:
            doc = load_yaml(path, rel)
        except SourceError as exc:
            findings.append(exc.finding)
            continue
        items = doc.get("tests")
        if not isinstance(items, LineList):
            findings.append(Finding(rel, doc.line, "a test file holds `tests:`, a list of cases"))
            continue
        for i, item in enumerate(items):
            case = _parse_case(item, rel, items.line_of(i), findings)
            if case is not None:
                cases.append(case)
    return PolicyTestSuite(tuple(cases), tuple(findings))


def _parse_case(item: object, rel: str, line: int, findings: list[Finding]) -> PolicyTestCase | None:
    if not isinstance(item, LineDict):
        findings.append(
            Finding(rel, line, "each test is a mapping with name, role, purpose, agency, category and expect")
        )
        return None
    try:
        entry = PolicyTestEntry.model_validate(item)
    except ValidationError as exc:
        findings += entry_findings(exc, item, rel, "", PolicyTestEntry)
        return None
    expected = [(n, outcome) for key, outcome in _OUTCOMES.items() for n in getattr(entry, key)]
    if expected and entry.record is None:
        findings.append(Finding(rel, line, "visible / redacted / withheld need a sample `record`"))
        return None
    return PolicyTestCase(
        rel,
        line,
        entry.name,
        entry.role,
        entry.purpose,
        entry.agency,
        entry.category,
        entry.expect,
        tuple((k, _sample_text(v)) for k, v in entry.record.fields.items()) if entry.record else (),
        tuple(expected),
        entry.disclosed_on,
        entry.agreement,
        entry.review or DisclosureLevel.NONE,
        entry.requester,
    )


def _sample_text(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def run_case(
    snapshot: PolicySnapshot,
    case: PolicyTestCase,
    pseudonym_keys: Keyring | None = None,
    today: date | None = None,
) -> PolicyTestResult:
    """Check one case against a snapshot: its level and, with a sample record, each field's fate."""
    problems = [m for _, m in snapshot.request_problems(case.role, case.purpose, case.agency, case.category)]
    if problems:
        # A case no real request could make would pass or fail vacuously; it is reported instead.
        return PolicyTestResult(case, tuple(problems))
    on = case.on or today or datetime.now(UTC).date()
    if case.agreement and case.agreement not in snapshot.agreements:
        return PolicyTestResult(case, (undeclared("agreement", case.agreement, snapshot.agreements),))
    if case.requester and case.requester not in snapshot.agencies:
        return PolicyTestResult(case, (undeclared("agency", case.requester, snapshot.agencies),))
    decision = snapshot.decide(case.role, case.purpose, case.agency, case.category)
    level = decision.level
    refusal = _agreement_refusal(snapshot, case, on) if case.agreement else ""
    if refusal:
        level = DisclosureLevel.NONE
        if case.expect is not DisclosureLevel.NONE:
            problems.append(f"expected {case.expect.name}, got NONE ({refusal})")
    elif level != case.expect:
        lines = ", ".join((*decision.allowed_by, *decision.denied_by)) or "no matching line"
        problems.append(f"expected {case.expect.name}, got {level.name} (decided by {lines})")
    if not refusal and decision.review != case.review:
        lines = ", ".join(decision.reviewed_by) or "no review line offers more"
        problems.append(f"expected review up to {case.review.name}, got {decision.review.name} ({lines})")
    if case.record:
        problems += _check_fields(snapshot, case, level, pseudonym_keys or Keyring.generate(), on)
    return PolicyTestResult(case, tuple(problems))


def _agreement_refusal(snapshot: PolicySnapshot, case: PolicyTestCase, on: date) -> str:
    """Why a request citing the case's agreement gets nothing, as the gateway would refuse it; "" if it would not."""
    agreement = snapshot.agreements[case.agreement]
    requester = _requester(snapshot, case)
    if not agreement.in_force(on):
        return f"agreement {agreement.name!r} is not in force on {on.isoformat()}"
    if not any(snapshot.purpose_within(case.purpose, p) for p in agreement.purposes):
        return f"agreement {agreement.name!r} does not cover purpose {case.purpose!r}"
    for party in (requester, case.agency):
        if party not in agreement.parties:
            return f"{party} is not a party to agreement {agreement.name!r}"
    if crossing := snapshot.area_refusal(agreement.name, requester, case.agency):
        return crossing
    if not snapshot.agreement_allows(agreement.name, case.agency, case.category, case.purpose, on):
        return f"agreement {agreement.name!r} does not cover category {case.category!r}"
    return ""


def _requester(snapshot: PolicySnapshot, case: PolicyTestCase) -> str:
    """The agency whose certificate asks: the case's `requester`, else the role's own agency."""
    return case.requester or snapshot.roles[case.role].agency


def _check_fields(
    snapshot: PolicySnapshot, case: PolicyTestCase, level: DisclosureLevel, keys: Keyring, on: date
) -> list[str]:

    category = snapshot.record_categories[case.category]
    problems: list[str] = []
    fields = []
    for name, value in case.record:
        field_category = category.fields.get(name)
        if field_category is None:
            problems.append(f"sample record field {name!r} is not a field of {case.category}")
            continue
        fields.append(Field(name, field_category, value))
    if problems:
        return problems
    assert category.kind is not None  # record categories always have a kind
    record = Record(
        case.agency,
        "sample-1",
        category.record_type,
        category.name,
        category.kind,
        datetime(on.year, on.month, on.day, tzinfo=UTC),
        "",
        tuple(fields),
    )
    role = snapshot.roles[case.role]
    ctx = RedactionContext(
        agency=case.agency,
        level=level,
        role=case.role,
        requester_agency=_requester(snapshot, case),
        inside_mash=role.inside_mash,
        disclosure_date=on,
    )
    result = Redactor(snapshot.redaction, keys).redact([record], ctx)
    got = {m.field: m.disclosure for m in result.manifest if m.field}
    # A record withheld as a whole (a protected service) hides even its field names from the manifest.
    whole = (
        FieldDisclosure.WITHHELD
        if any(not m.field and m.disclosure is FieldDisclosure.WITHHELD for m in result.manifest)
        else None
    )
    for name, want in case.fields:
        have = got.get(name, whole)
        if have is None:
            problems.append(f"field {name!r} is not in the sample record")
        elif have is not want:
            problems.append(f"field {name!r}: expected {_word(want)}, got {_word(have)}")
    return problems


def _word(disclosure: FieldDisclosure) -> str:
    return {v: k for k, v in _OUTCOMES.items()}[disclosure]


def run_suite(
    snapshot: PolicySnapshot,
    suite: PolicyTestSuite,
    pseudonym_keys: Keyring | None = None,
    today: date | None = None,
) -> tuple[PolicyTestResult, ...]:
    """Run every case of a suite against a snapshot, with one throwaway pseudonym key for all of them."""
    keys = pseudonym_keys or Keyring.generate()
    return tuple(run_case(snapshot, c, keys, today) for c in suite.cases)


def failures_as_findings(results: Sequence[PolicyTestResult], suite: PolicyTestSuite) -> list[Finding]:
    """Failed cases and unreadable cases as file:line findings."""
    found = list(suite.findings)
    for result in results:
        for problem in result.problems:
            found.append(Finding(result.case.file, result.case.line, f"{result.case.name}: {problem}"))
    return found
