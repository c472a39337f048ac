"""The referral use cases: submit (with screening on arrival), rate, research, decide, close, withdraw, merge,
read and list the queue, purge; each step checked against the workflow policy and audited before it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from gateway.domain import AuditEvent, AuditKind, Clock, SubjectIdentifiers
from gateway.errors import FieldViolation, GatewayError, InvalidRequest, RequestRefused
from gateway.linkage import SubjectTokeniser
from gateway.service.ports import AuditSink, PolicySource
from gateway.service.validation import USER_PATTERN, Caller
from gateway.workflow.policy import MashRules, WorkflowPolicy
from gateway.workflow.referral import (
    Action,
    Content,
    InvalidTransition,
    NoticeKind,
    Notification,
    Referral,
    State,
    Transition,
    VersionConflict,
    next_state,
)
from gateway.workflow.screening import OpenCase, OpenCaseCheck
from gateway.workflow.store import QueueFilter, QueuePage, ReferralStore
from gateway.workflow.validation import (
    MAX_CONCERN,
    MAX_HOUSEHOLD,
    check_name,
    check_person,
    check_referral_id,
    check_subject_fits_mash,
)

log = structlog.get_logger("gateway.workflow")

GATEWAY_ACTOR = "gateway"
MAX_PAGE = 200
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class SubmitCommand:
    """A notification to the MASH as the service layer sees it; the source agency is the caller's."""

    mash: str
    subject: SubjectIdentifiers
    concern: str
    categories: tuple[str, ...]
    household: tuple[SubjectIdentifiers, ...] = ()
    received_at: datetime | None = None  # when the source agency received it; now if not given
    borough: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    decision: str
    reason: str  # free text, sealed with the referral; never in the audit log
    receiving_team: str = ""


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a retention purge deleted (or, in a dry run, would delete) and the cutoff it applied."""

    cutoff: datetime  # referrals closed, withdrawn or merged before this instant are past retention
    referral_ids: tuple[str, ...]
    dry_run: bool


@dataclass(frozen=True, slots=True)
class ReferralView:
    """A referral as one caller may see it: without its content unless the role may see content."""

    referral: Referral
    content_visible: bool
    history: tuple[Transition, ...] = ()


def _violation(path: str, text: str) -> InvalidRequest:
    return InvalidRequest([FieldViolation(path, text)])


class ReferralWorkflow:
    """Runs every referral use case under the current main policy (roles, bindings) and workflow policy."""

    def __init__(self, *, store: ReferralStore, workflow: WorkflowPolicy | Callable[[], WorkflowPolicy],
                 policy: PolicySource, audit: AuditSink, tokeniser: SubjectTokeniser, clock: Clock,
                 screening: OpenCaseCheck | None = None,
                 on_breach: Callable[[str, str, str], None] | None = None) -> None:
        """`workflow` is the workflow policy, or (in a gateway) where to read the active one: it is part of the
        policy, so a reload replaces it together with the rest."""
        self._store = store
        self._on_breach = on_breach  # told (mash, rating, step) of each breach as it is audited
        self._current_workflow = workflow if callable(workflow) else (lambda: workflow)
        self._policy = policy
        self._audit = audit
        self._tokeniser = tokeniser
        self._clock = clock
        self._screening = screening
        self._notices_written = asyncio.Condition()

    @property
    def workflow(self) -> WorkflowPolicy:
        """The active workflow policy (read once per use case, so one step never mixes two versions)."""
        return self._current_workflow()

    # -- checks and audit ---------------------------------------------------------------------------

    def _event(self, caller: Caller, operation: str, referral_id: str, **fields: object) -> AuditEvent:
        policy = self._policy.current
        user = caller.user if USER_PATTERN.fullmatch(caller.user or "-") else "<invalid>"
        role = caller.role if caller.role in policy.roles else ("<undeclared>" if caller.role else "")
        details = {"operation": operation}
        if referral_id:
            details["referral_id"] = referral_id
        base = AuditEvent(kind=AuditKind.REFERRAL_TRANSITION, occurred_at=self._clock.now(),
                          request_id=f"wf-{uuid.uuid4().hex}", caller=caller.identity, user=user, role=role,
                          case_reference=referral_id, policy_version=policy.version, details=details)
        return replace(base, **fields)  # type: ignore[arg-type]

    async def _refuse(self, caller: Caller, operation: str, referral_id: str, exc: GatewayError) -> None:
        """Audit a refused request; the reason names fields and codes, never values."""
        if isinstance(exc, InvalidRequest):
            status, reason = "INVALID_ARGUMENT", "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
        elif isinstance(exc, RequestRefused):
            status, reason = "PERMISSION_DENIED", f"{exc.code}: {exc.reason}"
        elif isinstance(exc, InvalidTransition):
            status, reason = "FAILED_PRECONDITION", f"{exc.action.value} from {exc.current.value}"
        elif isinstance(exc, VersionConflict):
            status, reason = "ABORTED", "VERSION_CONFLICT: the referral changed since it was read"
        else:
            status, reason = "NOT_FOUND", "no such referral"
        safe_id = referral_id if not check_referral_id(referral_id) else ""
        await self._audit.append([self._event(caller, operation, safe_id, kind=AuditKind.REFUSAL, status=status,
                                              reason=reason)])
        log.info("referral request refused", operation=operation, status=status)

    async def audit_refusal(self, caller: Caller, operation: str, referral_id: str, exc: GatewayError) -> None:
        """Audit a refusal decided outside this class (e.g. by the package use case), without raising."""
        await self._refuse(caller, operation, referral_id, exc)

    async def refuse(self, caller: Caller, operation: str, exc: InvalidRequest | RequestRefused) -> None:
        """Audit and raise a refusal found at the API edge (e.g. an enum number this gateway does not know)."""
        await self._refuse(caller, operation, "", exc)
        raise exc

    def _authorise(self, caller: Caller, permission: str) -> None:
        policy = self._policy.current
        violations = []
        if not caller.user or not USER_PATTERN.fullmatch(caller.user):
            violations.append(FieldViolation("metadata.x-mash-user", "must be 1-128 characters of letters, "
                                                                     "digits and @ . _ -"))
        if not caller.role:
            violations.append(FieldViolation("metadata.x-mash-role", "the practitioner's role is required"))
        if violations:
            raise InvalidRequest(violations)
        if caller.role not in policy.roles_for(caller.identity):
            raise RequestRefused("the certificate may not assert that role", code="ROLE_NOT_BOUND",
                                 field="metadata.x-mash-role")
        if not self.workflow.allows(caller.role, permission):
            raise RequestRefused(f"role {caller.role!r} may not {permission.replace('_', ' ')} referrals",
                                 code="WORKFLOW_PERMISSION")

    async def _guarded(self, caller: Caller, operation: str, referral_id: str, permission: str,
                       violations: Sequence[FieldViolation] = ()) -> None:
        try:
            if violations:
                raise InvalidRequest(list(violations))
            self._authorise(caller, permission)
        except (InvalidRequest, RequestRefused) as exc:
            await self._refuse(caller, operation, referral_id, exc)
            raise

    def _plan(self, caller: Caller, referral: Referral, action: Action, changed: Referral, *, reason: str,
              automatic: bool, kind: AuditKind) -> tuple[Referral, Transition, AuditEvent]:
        """The referral after the step, its history entry and its audit entry (nothing written yet)."""
        now = self._clock.now()
        target = next_state(referral, action)
        new = replace(changed, state=target, version=referral.version + 1, updated_at=now)
        if target.terminal and new.closed_at is None:
            new = replace(new, closed_at=now)
        transition = Transition(
            referral_id=referral.referral_id, action=action, from_state=referral.state, to_state=target, at=now,
            actor=GATEWAY_ACTOR if automatic else caller.identity, user=caller.user, role=caller.role,
            reason=reason, version=new.version,
        )
        event = self._event(caller, action.value, referral.referral_id, kind=kind, status=target.value, reason=reason,
                            details={"operation": action.value, "referral_id": referral.referral_id,
                                     "from": referral.state.value, "to": target.value,
                                     "version": str(new.version), "automatic": str(automatic).lower()})
        return new, transition, event

    async def _move(self, caller: Caller, referral: Referral, action: Action, changed: Referral, *,
                    reason: str, notices: Sequence[Notification] = (), automatic: bool = False,
                    kind: AuditKind = AuditKind.REFERRAL_TRANSITION) -> Referral:
        """Audit the step, then store it as a compare-and-set; a lost race is audited too."""
        new, transition, event = self._plan(caller, referral, action, changed, reason=reason, automatic=automatic,
                                            kind=kind)
        target = new.state
        await self._audit.append([event])
        try:
            await self._store.update(new, transition, notices)
        except VersionConflict as exc:
            await self._refuse(caller, action.value, referral.referral_id, exc)
            raise
        await self._announce(notices)
        log.info("referral moved", referral_id=referral.referral_id, action=action.value, to=target.value)
        return new

    async def _announce(self, notices: Sequence[Notification]) -> None:
        if notices:
            async with self._notices_written:
                self._notices_written.notify_all()

    async def post(self, notices: Sequence[Notification]) -> None:
        """Put notices that announce no referral change (owner review notices) in the outbox, and wake watchers."""
        await self._store.post(notices)
        await self._announce(notices)

    async def load(self, caller: Caller, operation: str, referral_id: str, permission: str) -> Referral:
        """A referral for a use case outside this class, after the same checks as every step (refusals audited)."""
        return await self._load(caller, operation, referral_id, permission)

    def role_agency(self, role: str) -> str:
        """The agency the active policy says a role belongs to ("" for an undeclared role)."""
        declared = self._policy.current.roles.get(role)
        return declared.agency if declared is not None else ""

    async def _load(self, caller: Caller, operation: str, referral_id: str, permission: str,
                    violations: Sequence[FieldViolation] = ()) -> Referral:
        await self._guarded(caller, operation, referral_id, permission,
                            [*check_referral_id(referral_id), *violations])
        try:
            return await self._store.get(referral_id)
        except GatewayError as exc:
            await self._refuse(caller, operation, referral_id, exc)
            raise

    async def _step(self, caller: Caller, operation: str, referral: Referral, action: Action,
                    changed: Referral, *, reason: str, notices: Sequence[Notification] = ()) -> Referral:
        """A person's step: an action not allowed from the current state is refused and audited."""
        try:
            next_state(referral, action)
        except InvalidTransition as exc:
            await self._refuse(caller, operation, referral.referral_id, exc)
            raise
        return await self._move(caller, referral, action, changed, reason=reason, notices=notices)

    # -- use cases ----------------------------------------------------------------------------------

    async def submit(self, caller: Caller, command: SubmitCommand) -> Referral:
        """Take a notification in, audit it, and run the open-case check at once where the MASH does that."""
        now = self._clock.now()
        violations: list[FieldViolation] = []
        mash = self.workflow.mashes.get(command.mash)
        if not command.mash:
            violations.append(FieldViolation("mash", "is required"))
        elif mash is None:
            violations.append(FieldViolation("mash", "is not a MASH named in the workflow policy"))
        subject_violations = check_person(command.subject, "subject", now.date(), identified=True)
        violations += subject_violations
        if mash is not None and not subject_violations:
            violations += check_subject_fits_mash(command.subject.date_of_birth, mash.subject, self._today(now))
        if len(command.household) > MAX_HOUSEHOLD:
            violations.append(FieldViolation("household", f"lists more than {MAX_HOUSEHOLD} people"))
        else:
            for i, person in enumerate(command.household):
                violations += check_person(person, f"household[{i}]", now.date(), identified=False)
        if not command.concern.strip():
            violations.append(FieldViolation("concern", "is required"))
        elif len(command.concern) > MAX_CONCERN:
            violations.append(FieldViolation("concern", f"is longer than {MAX_CONCERN} characters"))
        if not command.categories:
            violations.append(FieldViolation("categories", "name at least one concern category"))
        for i, category in enumerate(command.categories):
            if category not in self.workflow.concern_categories:
                violations.append(FieldViolation(f"categories[{i}]", "is not a concern category of the policy"))
        if command.received_at is not None and command.received_at > now + _CLOCK_SKEW:
            violations.append(FieldViolation("received_at", "is in the future"))
        violations += check_name(command.borough, "borough")
        await self._guarded(caller, "submit", "", "submit", violations)
        assert mash is not None
        referral = Referral(
            referral_id=f"ref-{uuid.uuid4().hex}", mash=command.mash, source_agency=caller.agency,
            referrer=caller.user, received_at=command.received_at or now,
            content=Content(command.subject, command.household, command.concern),
            categories=tuple(command.categories), borough=command.borough, version=1, updated_at=now,
        )
        # Whether the subject's age was checked against the MASH: without a date of birth it cannot be, and the
        # MASH the submitter named stands; the history and the audit say so.
        age = "checked" if command.subject.date_of_birth else "unchecked_no_date_of_birth"
        history = [Transition(referral.referral_id, Action.SUBMIT, None, State.RECEIVED, now, caller.identity,
                              caller.user, caller.role, f"mash={mash.name}; subject_age={age}", 1)]
        events = [self._event(caller, "submit", referral.referral_id, status=State.RECEIVED.value,
                              reason=history[0].reason, subject_tokens=self._tokeniser.tokens(command.subject),
                              agency=caller.agency, categories=tuple(command.categories))]
        notices: list[Notification] = []
        if mash.screen_open_case and self._screening is not None:
            # Screened before anything is stored, so the referral is written once, already screened or
            # routed: a child open to children's services (an adult open to adult social care) reaches the
            # team holding the case without a second write.
            referral, step, event, notices = await self._screen_on_arrival(caller, referral, mash)
            history.append(step)
            events.append(event)
        await self._audit.append(events)
        await self._store.create(referral, history, notices)
        await self._announce(notices)
        log.info("referral received", referral_id=referral.referral_id, mash=mash.name, state=referral.state.value)
        return referral

    def _today(self, now: datetime) -> date:
        """The submission day where the MASH works (its calendar's time zone): the day a subject's age is taken."""
        return now.astimezone(ZoneInfo(self.workflow.calendar.timezone)).date()

    async def _screen_on_arrival(self, caller: Caller, referral: Referral, mash: MashRules) -> tuple[
            Referral, Transition, AuditEvent, list[Notification]]:
        answer = await self._screening.check(referral.content.subject,  # type: ignore[union-attr]
                                             referral_id=referral.referral_id, mash=mash)
        checked = replace(referral, screening=answer.result.value)
        reason = f"screening={answer.result.value}; screening_request={answer.request_id}"
        kind = AuditKind.REFERRAL_TRANSITION
        if answer.result is not OpenCase.OPEN:
            # Ambiguous, withheld or unreachable is never read as "not open": a person decides.
            return (*self._plan(caller, referral, Action.SCREEN, checked, reason=reason, automatic=True, kind=kind),
                    [])
        receiver = self._case_holder_receiver(mash.subject)
        routed = replace(checked, team=answer.team, worker=answer.worker, routing="automatic")
        notices = [Notification(receiver, NoticeKind.ROUTED, referral.referral_id, self._clock.now(),
                                team=answer.team, worker=answer.worker)] if receiver else []
        return (*self._plan(caller, referral, Action.ROUTE, routed, reason=reason + "; routing=automatic",
                            automatic=True, kind=kind), notices)

    def _case_holder_receiver(self, subject_kind: str) -> str:
        """The system told of a referral routed to an open case: that of the agency holding the case records
        for the subject's kind (children's social care for a child, adult social care for an adult)."""
        return self.workflow.receivers.get(self._policy.current.open_case_agency_for(subject_kind), "")

    async def screen(self, caller: Caller, referral_id: str) -> Referral:
        """A person marks a referral screened (e.g. an adults' referral, or a re-check after the node was down)."""
        referral = await self._load(caller, "screen", referral_id, "screen")
        return await self._step(caller, "screen", referral, Action.SCREEN, replace(referral, screening="MANUAL"),
                                reason="screening=manual")

    async def route(self, caller: Caller, referral_id: str, team: str, worker: str = "") -> Referral:
        """A person routes a referral to the team holding an open case (after looking at what screening found)."""
        referral = await self._load(caller, "route", referral_id, "screen",
                                    [*check_name(team, "team", required=True), *check_name(worker, "worker")])
        rules = self.workflow.mashes.get(referral.mash)
        receiver = self._case_holder_receiver(rules.subject if rules is not None else "child")
        notices = [Notification(receiver, NoticeKind.ROUTED, referral_id, self._clock.now(), team, worker)] \
            if receiver else []
        return await self._step(caller, "route", referral, Action.ROUTE,
                                replace(referral, team=team, worker=worker, routing="manual"),
                                reason="routing=manual", notices=notices)

    async def rate(self, caller: Caller, referral_id: str, rating: str) -> Referral:
        """Rate a referral; its research and decision deadlines follow from the rating in working time."""
        referral = await self._load(caller, "rate", referral_id, "rate", [] if rating else
                                    [FieldViolation("rating", "is required")])
        mash = self.workflow.mashes.get(referral.mash)
        if mash is None or rating not in mash.ratings:
            exc = _violation("rating", "is not a rating of this referral's MASH")
            await self._refuse(caller, "rate", referral_id, exc)
            raise exc
        now = self._clock.now()
        rated = replace(referral, rating=rating, rated_at=now,
                        research_due=self.workflow.due(referral.mash, rating, "research", now),
                        decision_due=self.workflow.due(referral.mash, rating, "decision", now))
        return await self._step(caller, "rate", referral, Action.RATE, rated, reason=f"rating={rating}")

    async def start_research(self, caller: Caller, referral_id: str) -> Referral:
        referral = await self._load(caller, "start_research", referral_id, "research")
        return await self._step(caller, "start_research", referral, Action.START_RESEARCH, referral,
                                reason="research=started")

    async def complete_research(self, caller: Caller, referral_id: str) -> Referral:
        referral = await self._load(caller, "complete_research", referral_id, "research")
        done = replace(referral, research_completed_at=self._clock.now())
        late = referral.research_due is not None and self._clock.now() > referral.research_due
        return await self._step(caller, "complete_research", referral, Action.COMPLETE_RESEARCH, done,
                                reason="research=complete" + ("; deadline=missed" if late else ""))

    async def decide(self, caller: Caller, referral_id: str, decision: Decision) -> Referral:
        """Record the decision and, where it has a receiving role, notify that agency's system."""
        violations = [*check_name(decision.receiving_team, "receiving_team")]
        if not decision.decision:
            violations.append(FieldViolation("decision", "is required"))
        if len(decision.reason) > MAX_CONCERN:
            violations.append(FieldViolation("reason", f"is longer than {MAX_CONCERN} characters"))
        if not decision.reason.strip():
            violations.append(FieldViolation("reason", "is required"))
        referral = await self._load(caller, "decide", referral_id, "decide", violations)
        mash_rules = self.workflow.mashes.get(referral.mash)
        rules = mash_rules.decisions.get(decision.decision) if mash_rules is not None else None
        if rules is None or (rules.receiving_role and not decision.receiving_team):
            exc = _violation("decision", "is not a decision of this referral's MASH") if rules is None else \
                _violation("receiving_team", "is required for a decision that routes the referral")
            await self._refuse(caller, "decide", referral_id, exc)
            raise exc
        now = self._clock.now()
        notices = []
        if rules.receiving_role:
            role = self._policy.current.roles.get(rules.receiving_role)
            receiver = self.workflow.receivers.get(role.agency, "") if role is not None else ""
            if receiver:
                notices.append(Notification(receiver, NoticeKind.DECISION, referral_id, now,
                                            team=decision.receiving_team))
        late = referral.decision_due is not None and now > referral.decision_due
        decided = replace(referral, decision=decision.decision, decided_at=now, team=decision.receiving_team,
                          content=replace(referral.content, decision_reason=decision.reason),
                          routing="manual" if rules.receiving_role else "")
        return await self._step(caller, "decide", referral, Action.DECIDE, decided,
                                reason=f"decision={decision.decision}" + ("; deadline=missed" if late else ""),
                                notices=notices)

    async def close(self, caller: Caller, referral_id: str) -> Referral:
        referral = await self._load(caller, "close", referral_id, "close")
        return await self._step(caller, "close", referral, Action.CLOSE, referral, reason="closed")

    async def withdraw(self, caller: Caller, referral_id: str) -> Referral:
        referral = await self._load(caller, "withdraw", referral_id, "withdraw")
        return await self._step(caller, "withdraw", referral, Action.WITHDRAW, referral, reason="withdrawn")

    async def merge(self, caller: Caller, referral_id: str, into: str) -> Referral:
        """Fold a duplicate into the referral that carries on; the survivor must be open and not itself."""
        violations = check_referral_id(into, "into_referral_id")
        if not violations and into == referral_id:
            violations = [FieldViolation("into_referral_id", "must name another referral")]
        referral = await self._load(caller, "merge", referral_id, "merge", violations)
        try:
            survivor = await self._store.get(into)
        except GatewayError as exc:
            await self._refuse(caller, "merge", referral_id, exc)
            raise
        if survivor.mash != referral.mash:  # a duplicate of a child's referral is never an adult's, and back
            exc1 = _violation("into_referral_id", "must name a referral of the same MASH")
            await self._refuse(caller, "merge", referral_id, exc1)
            raise exc1
        if survivor.state.terminal:
            exc2 = InvalidTransition(into, Action.MERGE, survivor.state, "cannot merge into a finished referral")
            await self._refuse(caller, "merge", referral_id, exc2)
            raise exc2
        return await self._step(caller, "merge", referral, Action.MERGE, replace(referral, merged_into=into),
                                reason=f"merged_into={into}")

    async def research_deadline(self, caller: Caller, referral_id: str) -> datetime | None:
        """Before a researcher's query linked to a referral: may they research it, and by when must it be done?"""
        referral = await self._load(caller, "link_research", referral_id, "research")
        if referral.state not in (State.RATED, State.RESEARCHING):
            exc = InvalidTransition(referral_id, Action.START_RESEARCH, referral.state,
                                    "research can only be linked to a referral that is rated or being researched")
            await self._refuse(caller, "link_research", referral_id, exc)
            raise exc
        return referral.research_due if referral.research_completed_at is None else None

    async def link_research(self, caller: Caller, referral_id: str, agencies: Sequence[str],
                            disclosed: Mapping[str, Sequence[str]] | None = None) -> Referral:
        """A researcher's query about the referral was answered by `agencies`: record them (starting research),
        and tell any agency that asked to know when its information in a disclosed category is shared."""
        referral = await self._load(caller, "link_research", referral_id, "research")
        if referral.state is State.RATED:
            referral = await self._move(caller, referral, Action.START_RESEARCH, referral,
                                        reason="research=started; by=query")
        if referral.state is not State.RESEARCHING:
            exc = InvalidTransition(referral_id, Action.START_RESEARCH, referral.state,
                                    "research can only be linked to a referral that is rated or being researched")
            await self._refuse(caller, "link_research", referral_id, exc)
            raise exc
        notices = self._owner_notices(referral_id, disclosed or {})
        answered = referral.with_answers(tuple(agencies))
        if answered.agencies_answered == referral.agencies_answered and not notices:
            return referral
        return await self._move(caller, referral, Action.RECORD_ANSWERS, answered, notices=notices,
                                reason="answered=" + ",".join(answered.agencies_answered))

    def _owner_notices(self, referral_id: str, disclosed: Mapping[str, Sequence[str]]) -> list[Notification]:
        notices = []
        now = self._clock.now()
        for wish in self.workflow.owner_notifications:
            shared = set(disclosed.get(wish.agency, ())) & set(wish.categories)
            receiver = self.workflow.receivers.get(wish.agency, "")
            if shared and receiver:
                notices.append(Notification(receiver, NoticeKind.OWNER_NOTICE, referral_id, now))
        return notices

    async def get(self, caller: Caller, referral_id: str) -> ReferralView:
        referral = await self._load(caller, "get", referral_id, "view")
        history = tuple(await self._store.history(referral_id))
        return ReferralView(referral, self.workflow.allows(caller.role, "view_content"), history)

    async def queue(self, caller: Caller, where: QueueFilter, *, page_size: int, page_token: str) -> \
            tuple[QueuePage, str, bool]:
        """A page of the queue, the token of the next page ("" at the end), and whether content is visible."""
        violations = []
        if where.mash and where.mash not in self.workflow.mashes:
            violations.append(FieldViolation("mash", "is not a MASH named in the workflow policy"))
        known = {r for m in self.workflow.mashes.values() for r in m.ratings}
        violations += [FieldViolation(f"ratings[{i}]", "is not a rating of the workflow policy")
                       for i, r in enumerate(where.ratings) if r not in known]
        violations += [*check_name(where.team, "team"), *check_name(where.borough, "borough")]
        if not 0 <= page_size <= MAX_PAGE:
            violations.append(FieldViolation("page_size", f"must be between 0 and {MAX_PAGE}"))
        offset = 0
        if page_token:
            if not page_token.isdigit() or len(page_token) > 9:
                violations.append(FieldViolation("page_token", "is not a token this gateway issued"))
            else:
                offset = int(page_token)
        await self._guarded(caller, "list", "", "view", violations)
        limit = page_size or 50
        page = await self._store.queue(where, limit=limit, offset=offset)
        more = offset + len(page.referrals) < page.total
        return page, str(offset + limit) if more else "", self.workflow.allows(caller.role, "view_content")

    async def record_breaches(self, *, batch: int = 200) -> int:
        """Audit, once per deadline, every referral whose running deadline has passed; how many were new.

        Run periodically by the gateway; the deadline is stored, so a breach during a restart is still seen.
        """
        now = self._clock.now()
        gateway = Caller(identity=GATEWAY_ACTOR, agency="hub", user=GATEWAY_ACTOR, role="")
        recorded, offset = 0, 0
        while True:
            page = await self._store.queue(QueueFilter(overdue_at=now), limit=batch, offset=offset)
            for referral in page.referrals:
                due = referral.due()
                if due is None or referral.breach_recorded_for == due:
                    continue
                step = "research" if referral.research_completed_at is None and referral.research_due else "decision"
                try:
                    await self._move(gateway, referral, Action.RECORD_BREACH,
                                     replace(referral, breach_recorded_for=due), automatic=True,
                                     reason=f"breach={step}; rating={referral.rating}; due={due.isoformat()}",
                                     kind=AuditKind.REFERRAL_BREACH)
                except VersionConflict:
                    continue  # moved meanwhile; the next sweep looks again
                recorded += 1
                if self._on_breach is not None:
                    self._on_breach(referral.mash, referral.rating, step)
            offset += len(page.referrals)
            if offset >= page.total or not page.referrals:
                return recorded

    async def overdue(self, *, batch: int = 200) -> dict[tuple[str, str], int]:
        """How many referrals are past their running deadline now, by MASH and rating (for the breach gauge)."""
        now = self._clock.now()
        counts: Counter[tuple[str, str]] = Counter()
        offset = 0
        while True:
            page = await self._store.queue(QueueFilter(overdue_at=now), limit=batch, offset=offset)
            counts.update((r.mash, r.rating) for r in page.referrals)
            offset += len(page.referrals)
            if offset >= page.total or not page.referrals:
                return dict(counts)

    async def purge(self, caller: Caller, *, dry_run: bool = False) -> PurgeResult:
        """Delete referrals whose retention has run out since they closed; the purge itself is audited.

        A dry run deletes nothing and is audited too (status DRY_RUN), naming what a purge would delete.
        """
        await self._guarded(caller, "purge", "", "purge")
        cutoff = self._clock.now() - timedelta(days=self.workflow.retention_days)
        # Audited before anything is deleted, like every other step: first learn what the cutoff covers (a set
        # that can only shrink, since later closures fall after it), record it, then delete.
        ids = await self._store.purge(cutoff, dry_run=True)
        done = "would be deleted (dry run: nothing was deleted)" if dry_run else "are deleted once this is recorded"
        await self._audit.append([self._event(
            caller, "purge", "", kind=AuditKind.REFERRAL_PURGE, status="DRY_RUN" if dry_run else "PURGED",
            reason=f"{len(ids)} referral(s) closed before the retention cutoff {done}",
            details={"operation": "purge", "cutoff": cutoff.isoformat(), "referral_ids": ",".join(ids),
                     "dry_run": str(dry_run).lower()})])
        if not dry_run and ids:
            ids = await self._store.purge(cutoff, dry_run=False)
        return PurgeResult(cutoff, tuple(ids), dry_run)

    async def notifications(self, caller: Caller, *, after: int | None, limit: int) -> list[Notification]:
        """The caller's certificate identity's notices after `after` (or after what it last acknowledged)."""
        start = await self._store.acknowledged(caller.identity) if after is None else after
        return await self._store.notifications(caller.identity, after=start, limit=limit)

    async def watch(self, caller: Caller, *, after: int | None, poll: float = 1.0,
                    batch: int = 100) -> AsyncIterator[Notification]:
        """The caller's notices from `after` (or its last acknowledged one) on, then new ones as they come.

        Notices written by this process wake the watcher at once; those written by another gateway process
        sharing the store are picked up within `poll` seconds.
        """
        if after is not None and after < 0:
            exc = _violation("after_sequence", "must not be negative")
            await self._refuse(caller, "watch", "", exc)
            raise exc
        if not caller.identity:
            refused = RequestRefused("an identified client certificate is needed to receive notices",
                                     code="NO_IDENTITY")
            await self._refuse(caller, "watch", "", refused)
            raise refused
        position = await self._store.acknowledged(caller.identity) if after is None else after
        while True:
            found = await self._store.notifications(caller.identity, after=position, limit=batch)
            for notice in found:
                position = notice.seq
                yield notice
            if len(found) < batch:
                async with self._notices_written:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._notices_written.wait(), poll)

    async def acknowledge(self, caller: Caller, seq: int) -> int:
        if seq < 0:
            exc = _violation("sequence", "must not be negative")
            await self._refuse(caller, "acknowledge", "", exc)
            raise exc
        return await self._store.acknowledge(caller.identity, seq)
