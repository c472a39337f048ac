"""The policy-service use cases: the active version and explanations for any certificate bound to a role,
reloading for certificates bound to policy_admin only; refusals are audited."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from gateway.audit import AuditRecord, AuditReview, EntryFilter
from gateway.domain import AuditKind, Clock, SystemClock
from gateway.errors import FieldViolation, Finding, InvalidRequest, NotFound, PolicyError
from gateway.policy import Decision, MatchingLines, PolicyHolder, PolicySnapshot, ReloadOutcome
from gateway.policy.checks import expiring_agreements
from gateway.policy.diff import LevelChange, PolicyChange, diff_settings, diff_snapshots
from gateway.policy.policy_tests import PolicyTestResult, load_test_cases, run_suite
from gateway.policy.release import (
    FILES,
    PROPOSAL,
    ReleaseError,
    ReleaseRecord,
    Signers,
    describe,
    release_dir,
    required_approvals,
    valid_approvals,
)
from gateway.policy.snapshot import load_snapshot, read_consistently
from gateway.service.access import AccessGuard, audited_user
from gateway.service.validation import Caller
from gateway.workflow.policy_tests import DeadlineCase, evaluate_case, load_deadline_cases

ADMIN_ROLE = "policy_admin"
AUDITOR_ROLE = "auditor"
HISTORY_ROLES = (ADMIN_ROLE, AUDITOR_ROLE)
HISTORY_KINDS = (AuditKind.POLICY_ACTIVATION.value, AuditKind.POLICY_REJECTED.value)
DEFAULT_HISTORY = 50
MAX_HISTORY = 200
_RELEASE_ID = re.compile(r"[0-9a-f]{8,64}")


@dataclass(frozen=True, slots=True)
class Explanation:
    """How the active policy decides one request cell, and every line that matched it."""

    policy_version: str
    decision: Decision
    lines: MatchingLines


@dataclass(frozen=True, slots=True)
class ActivationHistory:
    """The newest policy activations and refused changes, and how many the log held when asked."""

    records: tuple[AuditRecord, ...]
    total: int


@dataclass(frozen=True, slots=True)
class DeadlineResult:
    """One workflow deadline case: the deadline the policy gives (in words) and why it fails ("" if it passes)."""

    case: DeadlineCase
    got: str
    problem: str


@dataclass(frozen=True, slots=True)
class TestRun:
    """The shipped policy tests run against the active snapshot."""

    policy_version: str
    tests_version: str  # the version of the directory the cases were read from
    access: tuple[PolicyTestResult, ...]
    deadlines: tuple[DeadlineResult, ...]
    unreadable: tuple[Finding, ...]


@dataclass(frozen=True, slots=True)
class ReleaseView:
    """A stored release compared with the active policy: its changes, and the approvals it needs and has."""

    record: ReleaseRecord
    base_version: str
    active_version: str
    summary: str
    levels: tuple[LevelChange, ...]
    settings: tuple[PolicyChange, ...]
    owners: dict[str, list[str]]  # agency -> the widenings (▲) it must approve
    approved: dict[str, list[str]]  # agency -> its IG officers whose approvals verify

    @property
    def awaiting(self) -> list[str]:
        return sorted(agency for agency in self.owners if not self.approved.get(agency))


class PolicyAdmin:
    """Reads and reloads the active policy on behalf of a checked caller."""

    def __init__(self, holder: PolicyHolder, policy_dir: Path, guard: AccessGuard, clock: Clock | None = None,
                 review: AuditReview | None = None, releases: Path | None = None,
                 signers: Path | None = None) -> None:
        self._holder = holder
        self._policy_dir = policy_dir
        self._guard = guard
        self._clock: Clock = clock or SystemClock()
        self._review = review
        self._releases = releases
        self._signers = signers

    def expiring_agreements(self, snapshot: PolicySnapshot) -> list[tuple[str, date, int]]:
        """Agreements of `snapshot` ending within 60 days: (name, last day, days left), soonest first."""
        today = self._clock.now().date()
        ending = expiring_agreements(snapshot, today)
        return sorted(((name, day, (day - today).days) for name, day in ending.items()), key=lambda e: (e[1], e[0]))

    async def current(self, caller: Caller) -> PolicySnapshot:
        await self._guard.require_any(caller, "GetPolicyVersion")
        return self._holder.current

    async def vocabulary(self, caller: Caller) -> tuple[PolicySnapshot, date]:
        """The active snapshot, whose declared names any certificate bound to a role may read, and today's
        date (for the agreements' days left)."""
        await self._guard.require_any(caller, "GetVocabulary")
        return self._holder.current, self._clock.now().date()

    async def explain(self, caller: Caller, role: str, purpose: str, agency: str, category: str) -> Explanation:
        """The decision for one cell; a cell no request could ever name is refused, not answered NONE."""
        await self._guard.require_any(caller, "ExplainDecision")
        snapshot = self._holder.current
        problems = snapshot.request_problems(role, purpose, agency, category)
        if problems:
            await self._guard.refusals.refuse(caller, "ExplainDecision", InvalidRequest(
                [FieldViolation(field, message) for field, message in problems]))
        return Explanation(snapshot.version, snapshot.decide(role, purpose, agency, category),
                           snapshot.matching_lines(role, purpose, agency, category))

    async def reload(self, caller: Caller) -> ReloadOutcome:
        """Check, test and activate the policy directory; the outcome (either way) is audited by the holder."""
        await self._guard.require(caller, ADMIN_ROLE, "ReloadPolicy")
        return await self._holder.reload(self._policy_dir, trigger="admin RPC", caller=caller.identity,
                                         user=audited_user(caller))

    async def activations(self, caller: Caller, page_size: int) -> ActivationHistory:
        """The newest `page_size` (0: 50) policy_activation and policy_rejected entries, newest first, for a
        caller acting as policy administrator or auditor; the read is audited before anything is read."""
        rpc = "ListPolicyActivations"
        await self._require_reader(caller, rpc)
        if not 0 <= page_size <= MAX_HISTORY:
            await self._guard.refusals.refuse(caller, rpc, InvalidRequest(
                [FieldViolation("page_size", f"must be between 0 and {MAX_HISTORY}")]))
        if self._review is None:
            raise RuntimeError("this gateway was built without access to its audit log")
        as_of = await self._guard.record_access(caller, rpc, details={"read": "policy_activations"})
        size = page_size or DEFAULT_HISTORY
        found: list[AuditRecord] = []
        total = 0
        for kind in HISTORY_KINDS:
            where = EntryFilter(kind=kind)
            total += await self._review.count(where, before=as_of)
            found.extend([r async for r in self._review.list_entries(where, limit=size, before=as_of,
                                                                      newest_first=True)])
        found.sort(key=lambda r: r.index, reverse=True)
        return ActivationHistory(tuple(found[:size]), total)

    async def _require_reader(self, caller: Caller, rpc: str) -> None:
        """The caller acts as policy administrator or auditor, on a certificate bound to that role."""
        bound = self._holder.current.roles_for(caller.identity)
        role = caller.role if caller.role in HISTORY_ROLES else next(
            (r for r in HISTORY_ROLES if r in bound), ADMIN_ROLE)
        await self._guard.require(caller, role, rpc)

    async def run_tests(self, caller: Caller) -> TestRun:
        """The active policy's own tests (access and workflow deadline cases) run against it, for a caller
        acting as policy administrator or auditor. The cases are read from the directory the active policy was
        loaded from; `tests_version` says which version of it they came from."""
        await self._require_reader(caller, "RunPolicyTests")
        return await asyncio.to_thread(_run_tests, self._holder.current)

    async def release(self, caller: Caller, release_id: str) -> ReleaseView:
        """A proposed (or released) release of the store, compared with the active policy, for a policy admin."""
        rpc = "GetPolicyRelease"
        await self._guard.require(caller, ADMIN_ROLE, rpc)
        wanted = release_id.removeprefix("sha256:")
        if not _RELEASE_ID.fullmatch(wanted):
            await self._guard.refusals.refuse(caller, rpc, InvalidRequest(
                [FieldViolation("release_id", "must be sha256:<hex>, or at least 8 lower-case hex digits of it")]))
        if self._releases is None:
            raise PolicyError([], "this gateway has no policy release store (policy_releases) configured")
        return await asyncio.to_thread(self._compare, self._releases, wanted, self._holder.current)

    def _compare(self, store: Path, wanted: str, active: PolicySnapshot) -> ReleaseView:
        try:
            where = release_dir(store, wanted)
        except ReleaseError as exc:
            raise NotFound(str(exc)) from exc
        record = describe(store, where.name)
        proposal = json.loads((where / PROPOSAL).read_text(encoding="utf-8"))
        proposed = load_snapshot(where / FILES)
        owners, summary = required_approvals(active, proposed)
        levels, _ = diff_snapshots(active, proposed)
        approved = valid_approvals(store, where.name, Signers.load(self._signers)) if self._signers else {}
        return ReleaseView(record, str(proposal.get("base_version", "")), active.version, summary, tuple(levels),
                           tuple(diff_settings(active, proposed)), owners, approved)


def _run_tests(snapshot: PolicySnapshot) -> TestRun:
    with read_consistently(snapshot.directory) as (copy, version):
        suite = load_test_cases(copy)
        deadline_cases, deadline_findings = load_deadline_cases(copy) if snapshot.workflow else ([], [])
    access = run_suite(snapshot, suite)
    deadlines = tuple(DeadlineResult(case, *evaluate_case(snapshot.workflow, case))
                      for case in deadline_cases if snapshot.workflow is not None)
    return TestRun(snapshot.version, version, access, deadlines, (*suite.findings, *deadline_findings))
