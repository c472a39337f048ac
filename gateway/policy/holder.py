"""Holding the active policy snapshot and replacing it safely: validate, test, audit, then swap atomically."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import structlog

from gateway.domain import AuditEvent, AuditKind, Clock, SystemClock
from gateway.errors import Finding, GatewayError, PolicyError
from gateway.policy.checks import is_blocking, lint
from gateway.policy.policy_tests import failures_as_findings, load_test_cases, run_suite
from gateway.policy.snapshot import (
    PolicyReadError,
    PolicySnapshot,
    ensure_unchanged,
    load_copy,
    read_consistently,
)
from gateway.policy.sources import content_hash
from gateway.tasks import cancel
from gateway.workflow.policy_tests import run_deadline_tests

_log = structlog.get_logger("gateway.policy")

EventSink = Callable[[AuditEvent], Awaitable[object]]
ReleaseGate = Callable[[PolicySnapshot], tuple[Path, str, Mapping[str, str]]]
"""Production mode: given the active snapshot, the verified release to activate instead of any directory named
(its files, its version, and what the activation entry records about it); raises GatewayError to refuse."""
Requirement = Callable[[PolicySnapshot, PolicySnapshot], list[Finding]]
"""Given the active and a candidate snapshot, what (if anything) stops the candidate replacing the active one."""
_REASON_FINDINGS = 5


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What a reload did: whether a new snapshot is active, which version serves now, and why not."""

    activated: bool
    version: str  # the version active after the reload
    attempted_version: str  # content hash of the directory that was tried ("" if unreadable)
    previous_version: str
    findings: tuple[Finding, ...] = ()  # blocking problems (rejected) or warnings (activated)
    unchanged: bool = False  # the directory holds the version already active; nothing was done
    # Refused for a passing reason, not for what the policy says: a file vanished or changed while it
    # was read, or the audit log could not take the entry. The same version should be tried again.
    retry: bool = False


def validate(directory: Path, today: date) -> tuple[PolicySnapshot | None, list[Finding]]:
    """Build a snapshot and run its lint checks and policy tests; the snapshot is None if anything blocks.

    The policy and its tests come from one read of the directory, so they are always the same version.
    """
    snapshot, findings, _ = _validate(Path(directory), today)
    return snapshot, findings


def _validate(directory: Path, today: date) -> tuple[PolicySnapshot | None, list[Finding], bool]:
    """`validate`, also saying whether a refusal came from reading the files rather than from their content."""
    try:
        with read_consistently(directory) as (copy, version):
            snapshot = load_copy(copy, version, directory)
            suite = load_test_cases(copy)
            # workflow.yaml is part of the policy, so its deadline tests gate activation like the access tests.
            deadline_problems = run_deadline_tests(snapshot.workflow, copy)[1] if snapshot.workflow else []
        ensure_unchanged(directory, version)
    except PolicyReadError as exc:
        return None, list(exc.findings) or [Finding(directory.name, 0, str(exc))], True
    except PolicyError as exc:
        return None, list(exc.findings) or [Finding(directory.name, 0, str(exc))], False
    except OSError as exc:
        # Anything else the file system throws mid-load is just as passing as a vanished file.
        reason = exc.strerror or exc.__class__.__name__
        return None, [Finding(directory.name, 0, f"could not be read ({reason}); load again")], True
    findings = lint(snapshot, today)
    findings += failures_as_findings(run_suite(snapshot, suite, today=today), suite)
    findings += deadline_problems
    if any(is_blocking(f) for f in findings):
        return None, [f for f in findings if is_blocking(f)], False
    return snapshot, findings, False


class PolicyHolder:
    """The active snapshot for the whole gateway. `current` is one attribute read; swaps are atomic."""

    def __init__(
        self,
        snapshot: PolicySnapshot,
        *,
        on_event: EventSink | None = None,
        clock: Clock | None = None,
        release_gate: ReleaseGate | None = None,
    ) -> None:
        self._current = snapshot
        self._on_event = on_event
        self._release_gate = release_gate
        self._clock: Clock = clock or SystemClock()
        self._lock = asyncio.Lock()
        self._requirements: list[Requirement] = []

    def require(self, requirement: Requirement) -> None:
        """Refuse (and audit refusing) any later reload for which `requirement` names a finding."""
        self._requirements.append(requirement)

    @classmethod
    def from_directory(
        cls,
        directory: Path,
        *,
        on_event: EventSink | None = None,
        clock: Clock | None = None,
        release_gate: ReleaseGate | None = None,
    ) -> PolicyHolder:
        """Load, check and test the first snapshot; PolicyError if it cannot serve."""
        clock = clock or SystemClock()
        snapshot, findings = validate(directory, clock.now().date())
        if snapshot is None:
            raise PolicyError(findings, f"the policy at {directory.name} cannot be activated")
        return cls(snapshot, on_event=on_event, clock=clock, release_gate=release_gate)

    @property
    def current(self) -> PolicySnapshot:
        return self._current

    @property
    def version(self) -> str:
        return self._current.version

    async def reload(
        self, directory: Path | None = None, *, trigger: str = "manual", caller: str = "", user: str = ""
    ) -> ReloadOutcome:
        """Build, check and test the policy at `directory` (default: the active one's); swap only if all pass.

        The activation is audited before the swap: if the audit entry cannot be written, the old
        snapshot stays active. A refusal is audited too and keeps the last good snapshot serving.
        """
        async with self._lock:
            directory = Path(directory) if directory is not None else self._current.directory
            previous = self._current
            expected = ""
            release: Mapping[str, str] = {}
            if self._release_gate is not None:
                # Production mode: only the verified current release is loaded, whatever directory was named.
                try:
                    gated, expected, release = await asyncio.to_thread(self._release_gate, previous)
                except (GatewayError, OSError) as exc:
                    attempted = str(getattr(exc, "version", ""))
                    return await self._refuse_release(previous, attempted, str(exc), trigger, caller, user)
                directory = gated
            try:
                attempted = await asyncio.to_thread(content_hash, directory)
            except OSError:
                attempted = ""
            if attempted and attempted == previous.version:
                return ReloadOutcome(False, previous.version, attempted, previous.version, unchanged=True)
            today = self._clock.now().date()
            snapshot, findings, unreadable = await asyncio.to_thread(_validate, directory, today)
            if snapshot is not None:
                unmet = [f for requirement in self._requirements for f in requirement(previous, snapshot)]
                if unmet:
                    snapshot, findings = None, unmet
            if snapshot is not None and expected and snapshot.version != expected:
                reason = f"release {expected}: its files changed after they were verified"
                return await self._refuse_release(previous, snapshot.version, reason, trigger, caller, user)
            base = AuditEvent(
                kind=AuditKind.POLICY_REJECTED,
                occurred_at=self._clock.now(),
                caller=caller,
                user=user,
                details={"trigger": trigger, "previous_version": previous.version},
            )
            if snapshot is None:
                reason = _summary(findings)
                audited = await self._emit(
                    AuditEvent(
                        kind=AuditKind.POLICY_REJECTED,
                        occurred_at=base.occurred_at,
                        caller=caller,
                        user=user,
                        policy_version=attempted,
                        reason=reason,
                        details={**base.details, "findings": str(len(findings))},
                    ),
                    swallow=True,
                )
                return ReloadOutcome(
                    False,
                    previous.version,
                    attempted,
                    previous.version,
                    tuple(findings),
                    retry=unreadable or not audited,
                )
            try:
                await self._emit(
                    AuditEvent(
                        kind=AuditKind.POLICY_ACTIVATION,
                        occurred_at=base.occurred_at,
                        caller=caller,
                        user=user,
                        policy_version=snapshot.version,
                        reason=f"activated {len(snapshot.lines)} policy lines",
                        details={**base.details, "warnings": str(len(findings)), **release},
                    ),
                    swallow=False,
                )
            except Exception as exc:
                note = Finding(
                    str(directory),
                    0,
                    f"the activation could not be audited ({exc.__class__.__name__});"
                    " the previous policy stays active",
                )
                return ReloadOutcome(
                    False, previous.version, snapshot.version, previous.version, (note,), retry=True
                )
            self._current = snapshot
            return ReloadOutcome(True, snapshot.version, snapshot.version, previous.version, tuple(findings))

    async def _refuse_release(
        self, previous: PolicySnapshot, attempted: str, reason: str, trigger: str, caller: str, user: str
    ) -> ReloadOutcome:
        """Audit a release refused by the release gate; the active policy keeps serving."""
        audited = await self._emit(
            AuditEvent(
                kind=AuditKind.POLICY_REJECTED,
                occurred_at=self._clock.now(),
                caller=caller,
                user=user,
                policy_version=attempted,
                reason=f"refused: {reason}",
                details={"trigger": trigger, "previous_version": previous.version},
            ),
            swallow=True,
        )
        finding = Finding("release", 0, reason)
        return ReloadOutcome(False, previous.version, attempted, previous.version, (finding,), retry=not audited)

    async def _emit(self, event: AuditEvent, *, swallow: bool) -> bool:
        """Write one audit event; False if it could not be written and `swallow` kept that quiet."""
        if self._on_event is None:
            return True
        if swallow:
            # A refusal changes nothing, so failing to audit it must not turn into a failed reload call.
            try:
                await self._on_event(event)
            except GatewayError:
                return False
        else:
            await self._on_event(event)
        return True


def _summary(findings: list[Finding]) -> str:
    text = "; ".join(str(f) for f in findings[:_REASON_FINDINGS])
    if len(findings) > _REASON_FINDINGS:
        text += f"; and {len(findings) - _REASON_FINDINGS} more"
    return f"refused: {text}"


class PolicyWatcher:
    """Polls a policy directory's content hash and reloads when it has changed and settled."""

    def __init__(
        self,
        holder: PolicyHolder,
        directory: Path,
        *,
        interval: float = 2.0,
        on_outcome: Callable[[ReloadOutcome], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the polling interval must be positive")
        self._holder = holder
        self._directory = Path(directory)
        self._interval = interval
        self._on_outcome = on_outcome
        # The last version refused for what it says (or the active one): never tried again. A version
        # refused for a passing reason (unreadable mid-change, audit log down) is not remembered.
        self._attempted = holder.version
        self._candidate = ""
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> ReloadOutcome | None:
        """One poll: reload if the content changed since the last poll and has stayed the same since."""
        try:
            seen = await asyncio.to_thread(content_hash, self._directory)
        except OSError:
            return None
        if seen == self._attempted:
            self._candidate = ""
            return None
        if seen != self._candidate:
            # Editors write files in steps; wait one more interval for the content to settle.
            self._candidate = seen
            return None
        self._candidate = ""
        outcome = await self._holder.reload(self._directory, trigger="watch")
        if not outcome.retry:
            self._attempted = seen
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        return outcome

    async def run(self) -> None:
        """Poll until cancelled; a poll that fails is logged and the next one goes ahead."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check_once()
            except Exception as exc:
                # The watcher must outlive any one bad poll, or policy changes would silently stop
                # being picked up. Only the exception's type is logged: messages may quote file content.
                _log.warning("policy watch poll failed; will poll again", error=exc.__class__.__name__)

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="policy-watcher")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
