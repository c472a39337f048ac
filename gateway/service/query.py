"""The hub query use case: validate, decide per agency × category, fan out, redact, audit, answer."""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import traceback
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

import structlog

from gateway.audit.sealing import IdentifierSealer
from gateway.domain import (
    AgencyContact,
    AnswerStatus,
    AuditEvent,
    AuditKind,
    AuditReceipt,
    Clock,
    DisclosedRecord,
    DisclosureLevel,
    FieldDisclosure,
    ManifestEntry,
    Record,
)
from gateway.errors import (
    AgencyRejected,
    AgencyTimedOut,
    AgencyUnavailable,
    GatewayError,
    InvalidRequest,
    RequestRefused,
)
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser
from gateway.redaction import RedactionContext, Redactor
from gateway.service.ports import AgencyTransport, AuditSink, LookupCommand, PolicySource, PolicyView
from gateway.service.validation import (
    INVALID,
    Caller,
    QueryCommand,
    auditable,
    check_caller,
    check_request,
    ensure_request_id,
    new_request_id,
    sealable,
)

__all__ = ["AgencyOutcome", "Caller", "QueryCommand", "QueryResult", "QueryService", "ScreenOutcome",
           "ScreenResult"]

log = structlog.get_logger("gateway.query")


@dataclass(frozen=True, slots=True)
class AgencyOutcome:
    """One agency's part of an answer, as released to the caller."""

    agency: str
    status: AnswerStatus
    level: DisclosureLevel
    records: tuple[DisclosedRecord, ...] = ()
    contact: AgencyContact | None = None
    categories: tuple[str, ...] = ()
    detail: str = ""
    receipt: AuditReceipt | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    request_id: str
    policy_version: str
    answers: tuple[AgencyOutcome, ...]


class ScreenResult(enum.Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    NOT_KNOWN = "NOT_KNOWN"
    UNAVAILABLE = "UNAVAILABLE"
    WITHHELD = "WITHHELD"


@dataclass(frozen=True, slots=True)
class ScreenOutcome:
    request_id: str
    result: ScreenResult
    policy_version: str
    case_status: str = ""
    allocated_team: str = ""
    allocated_worker: str = ""
    contact: AgencyContact | None = None
    receipt: AuditReceipt | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _AgencyPlan:
    """What this request may learn from one agency: content of some categories, existence for the rest."""

    agency: str
    content: dict[str, DisclosureLevel]  # record category → PERTINENT or FULL, within the requested categories
    existence: tuple[str, ...]  # every other category the caller may at least know exists
    rules: tuple[str, ...]
    requested: bool = True  # False when the request's categories do not touch this agency

    @property
    def level(self) -> DisclosureLevel:
        if self.content:
            return max(self.content.values())
        return DisclosureLevel.EXISTS if self.existence else DisclosureLevel.NONE


@dataclass(frozen=True, slots=True)
class _Request:
    """A validated request pinned to one policy snapshot."""

    caller: Caller
    command: QueryCommand
    policy: PolicyView
    plans: tuple[_AgencyPlan, ...]
    tokens: tuple[str, ...]
    sealed: str
    today: date
    inside_mash: bool
    requester_agency: str
    deadline: float  # event-loop time by which every agency call must be done
    base_event: AuditEvent = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Answer:
    outcome: AgencyOutcome
    event: AuditEvent


class QueryService:
    """Runs hub queries and referral screening under the active policy snapshot."""

    def __init__(
        self,
        *,
        policy: PolicySource,
        transport: AgencyTransport,
        audit: AuditSink,
        tokeniser: SubjectTokeniser,
        sealer: IdentifierSealer,
        pseudonym_keys: Keyring,
        clock: Clock,
        agencies: Sequence[str] | None = None,  # default: the policy's record-holding agencies
        default_timeout: float = 5.0,
        max_timeout: float = 30.0,
        audit_margin: float = 0.1,
    ) -> None:
        self._policy = policy
        self._transport = transport
        self._audit = audit
        self._tokeniser = tokeniser
        self._sealer = sealer
        self._pseudonym_keys = pseudonym_keys
        self._clock = clock
        self._agencies = tuple(agencies) if agencies is not None else None
        self._default_timeout = default_timeout
        self._max_timeout = max_timeout
        self._audit_margin = audit_margin
        self._redactors: dict[str, Redactor] = {}

    # -- public use cases ---------------------------------------------------------------------------

    async def query(self, caller: Caller, command: QueryCommand, *, timeout: float | None) -> QueryResult:
        """Ask every agency at once; every answer is audited before any is returned."""
        request = await self._prepare(caller, command, timeout)
        answers = await asyncio.gather(*(self._answer(request, plan) for plan in request.plans))
        receipts = await self._audit.append([a.event for a in answers])
        outcomes = tuple(replace(a.outcome, receipt=r) for a, r in zip(answers, receipts, strict=True))
        log.info("query answered", request_id=request.command.request_id,
                 statuses={o.agency: o.status.value for o in outcomes})
        return QueryResult(request.command.request_id, request.policy.version, outcomes)

    async def stream(
        self, caller: Caller, command: QueryCommand, *, timeout: float | None
    ) -> AsyncIterator[tuple[str, str, AgencyOutcome]]:
        """Yield (request id, policy version, answer) per agency as each answers, each audited first."""
        request = await self._prepare(caller, command, timeout)
        tasks = [asyncio.ensure_future(self._answer(request, plan)) for plan in request.plans]
        try:
            for next_done in asyncio.as_completed(tasks):
                answer = await next_done
                (receipt,) = await self._audit.append([answer.event])
                yield request.command.request_id, request.policy.version, replace(answer.outcome,
                                                                                   receipt=receipt)
        finally:
            for task in tasks:
                task.cancel()

    async def screen(self, caller: Caller, command: QueryCommand, *, timeout: float | None) -> ScreenOutcome:
        """Is the child open to children's social care, and if so who holds the case?"""
        command = replace(command, categories=("csc.case",))
        request = await self._prepare(caller, command, timeout, only_agency="csc")
        (plan,) = request.plans
        answer = await self._answer(request, plan)
        (receipt,) = await self._audit.append([answer.event])
        outcome = answer.outcome
        base = ScreenOutcome(request.command.request_id, ScreenResult.WITHHELD, request.policy.version,
                             contact=outcome.contact, receipt=receipt, detail=outcome.detail)
        if outcome.status in (AnswerStatus.UNAVAILABLE, AnswerStatus.TIMED_OUT, AnswerStatus.REJECTED):
            return replace(base, result=ScreenResult.UNAVAILABLE)
        if outcome.status is AnswerStatus.NO_MATCH:
            return replace(base, result=ScreenResult.NOT_KNOWN)
        if outcome.status is AnswerStatus.WITHHELD or "csc.case" not in plan.content:
            return replace(base, result=ScreenResult.WITHHELD,
                           detail="policy does not allow this role to see case status for this purpose")
        # Only a case status released as held counts: a withheld or transformed status must never be
        # read as "not open", or a referral could go down the wrong route.
        statuses = []
        for record in (r for r in outcome.records if r.category == "csc.case"):
            held = {f.name: f for f in record.fields if f.disclosure is FieldDisclosure.FULL}
            status = held["case_status"].value.strip().casefold() if "case_status" in held else ""
            statuses.append(status)
            if status == "open":
                return replace(
                    base, result=ScreenResult.OPEN, case_status="open",
                    allocated_team=held["allocated_team"].value if "allocated_team" in held else "",
                    allocated_worker=held["allocated_worker"].value if "allocated_worker" in held else "",
                )
        if statuses and all(s == "closed" for s in statuses):
            return replace(base, result=ScreenResult.CLOSED, case_status="closed")
        if statuses:
            return replace(base, result=ScreenResult.WITHHELD,
                           detail="known to children's social care; the case status was not released to "
                                  "this caller: contact them")
        return replace(base, result=ScreenResult.CLOSED,
                       detail="known to children's social care, with no case record")

    # -- steps ----------------------------------------------------------------------------------------

    async def _prepare(
        self, caller: Caller, command: QueryCommand, timeout: float | None, only_agency: str = ""
    ) -> _Request:
        """Validate and plan; on refusal write a refusal entry first, then raise."""
        loop = asyncio.get_running_loop()
        budget = self._default_timeout if timeout is None else min(timeout, self._max_timeout)
        deadline = loop.time() + max(0.0, budget - self._audit_margin)
        policy = self._policy.current
        now = self._clock.now()
        try:
            request_id, bad_request_id = ensure_request_id(command.request_id), None
        except InvalidRequest as exc:
            request_id, bad_request_id = new_request_id(), exc
        command = replace(command, request_id=request_id)
        tokens = self._tokeniser.tokens(command.subject)
        sealed = (self._sealer.seal(command.subject, aad=request_id.encode())
                  if not command.subject.is_empty() and sealable(command.subject) else "")
        safe = auditable(policy, caller, command)
        base = AuditEvent(
            kind=AuditKind.DISCLOSURE, occurred_at=now, request_id=request_id, caller=caller.identity,
            user=safe["user"], role=safe["role"], purpose=safe["purpose"], legal_basis=safe["legal_basis"],
            agreement=safe["agreement"], case_reference=safe["case_reference"], subject_tokens=tokens,
            sealed_identifiers=sealed, policy_version=policy.version,
            details={"request_id": INVALID} if bad_request_id else {},
        )
        try:
            if bad_request_id is not None:
                raise bad_request_id
            check_caller(policy, caller)
            check_request(policy, caller, command, now.date())
        except (InvalidRequest, RequestRefused) as exc:
            await self._audit_refusal(base, exc)
            raise
        role = policy.roles[caller.role]
        plans = self._plan(policy, caller, command, now.date(), only_agency)
        return _Request(
            caller=caller, command=command, policy=policy, plans=plans, tokens=tokens, sealed=sealed,
            today=now.date(), inside_mash=role.inside_mash, requester_agency=caller.agency,
            deadline=deadline, base_event=base,
        )

    async def _audit_refusal(self, base: AuditEvent, exc: GatewayError) -> None:
        if isinstance(exc, InvalidRequest):
            status, reason = "INVALID_ARGUMENT", str(exc)
        else:
            assert isinstance(exc, RequestRefused)
            status, reason = "PERMISSION_DENIED", f"{exc.code}: {exc.reason}"
        await self._audit.append([replace(base, kind=AuditKind.REFUSAL, status=status, reason=reason)])
        log.info("request refused", request_id=base.request_id, status=status)

    def _plan(
        self, policy: PolicyView, caller: Caller, command: QueryCommand, today: date, only_agency: str
    ) -> tuple[_AgencyPlan, ...]:
        """Per agency: policy levels capped by the agreement; content only for the requested categories.

        Existence is asked about every category the caller may know of at an agency the request touches,
        never only the requested ones: otherwise a request for a single protected category (sexual
        health, a refuge) would turn "known to health" into "known to the sexual-health service".
        """
        agreement = policy.agreements[command.agreement]
        decisions = policy.decisions_for(caller.role, command.purpose)
        plans = []
        holders = [name for name, agency in policy.agencies.items() if agency.holds_records]
        for agency in self._agencies if self._agencies is not None else holders:
            if only_agency and agency != only_agency:
                continue
            cells = decisions.get(agency, {})
            touched = not command.categories or any(
                policy.category_within(c, wanted) or policy.category_within(wanted, c)
                for c in cells for wanted in command.categories
            )
            allowed: dict[str, DisclosureLevel] = {}
            rules: list[str] = []
            if touched and agency in agreement.parties:
                for category, decision in cells.items():
                    if decision.level <= DisclosureLevel.NONE:
                        continue
                    if not any(policy.category_within(category, c) for c in agreement.categories):
                        continue
                    allowed[category] = decision.level
                    rules += [f"{category}: {r}" for r in (*decision.allowed_by, *decision.denied_by)]
            content = {
                c: level for c, level in allowed.items()
                if level >= DisclosureLevel.PERTINENT
                and (not command.categories or any(policy.category_within(c, w) for w in command.categories))
            }
            existence = tuple(c for c in allowed if c not in content)
            plans.append(_AgencyPlan(agency, content, existence, tuple(rules), requested=touched))
        return tuple(plans)

    async def _answer(self, request: _Request, plan: _AgencyPlan) -> _Answer:
        """One agency's outcome and audit event; a fault of ours withholds that agency's answer, not the rest."""
        try:
            return await self._ask(request, plan)
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            # The exception's message may quote record content, so only its type and location are logged.
            log.error("internal error while answering for an agency", request_id=request.command.request_id,
                      agency=plan.agency, error_type=type(exc).__name__,
                      location=f"{where.filename}:{where.lineno}" if where else "")
            event = replace(request.base_event, agency=plan.agency, level=plan.level.name,
                            deciding_rules=plan.rules, occurred_at=self._clock.now())
            return self._finish(event, AgencyOutcome(
                plan.agency, AnswerStatus.UNAVAILABLE, plan.level,
                detail="the gateway could not process this agency's answer; nothing from it was disclosed",
            ))

    async def _ask(self, request: _Request, plan: _AgencyPlan) -> _Answer:
        """Ask one agency (if policy allows anything) and turn its answer into an outcome + audit event."""
        event = replace(request.base_event, agency=plan.agency, level=plan.level.name,
                        deciding_rules=plan.rules, occurred_at=self._clock.now())
        if plan.level <= DisclosureLevel.NONE:
            return self._finish(event, AgencyOutcome(
                plan.agency, AnswerStatus.WITHHELD, DisclosureLevel.NONE,
                detail="policy allows nothing from this agency for this role, purpose and agreement"
                if plan.requested else "none of this agency's categories was requested",
            ))
        remaining = request.deadline - asyncio.get_running_loop().time()
        command = LookupCommand(
            request_id=request.command.request_id, subject=request.command.subject,
            categories=tuple(plan.content), existence_categories=plan.existence,
            purpose=request.command.purpose, legal_basis=request.command.legal_basis,
        )
        try:
            if remaining <= 0:
                raise AgencyTimedOut("no time left before the caller's deadline")
            result = await self._transport.lookup(plan.agency, command, timeout=remaining)
        except AgencyTimedOut:
            return self._finish(event, AgencyOutcome(plan.agency, AnswerStatus.TIMED_OUT, plan.level,
                                                     detail="the agency did not answer within the deadline"))
        except AgencyUnavailable:
            return self._finish(event, AgencyOutcome(plan.agency, AnswerStatus.UNAVAILABLE, plan.level,
                                                     detail="the agency node could not be reached"))
        except AgencyRejected as exc:
            return self._finish(event, AgencyOutcome(plan.agency, AnswerStatus.REJECTED, plan.level,
                                                     detail=f"the agency node refused the lookup: {exc}"))

        allowed = set(plan.content)
        records: list[Record] = []
        dropped = 0
        known = False
        for match in result.matches:
            # Only an answer to a question we asked counts: existence in categories we did not ask about
            # is not the caller's to learn.
            known = known or (bool(plan.existence) and match.known_in_existence_categories)
            for record in match.records:
                # Defence in depth: a node that returns more than was asked must not cause a leak.
                if record.category in allowed and record.agency == plan.agency:
                    records.append(record)
                else:
                    dropped += 1
        if dropped:
            log.warning("agency returned records outside the requested categories",
                        request_id=request.command.request_id, agency=plan.agency, dropped=dropped)
        if not records and not known:
            return self._finish(event, AgencyOutcome(
                plan.agency, AnswerStatus.NO_MATCH, plan.level,
                detail="no records in the categories this caller may see",
            ))
        if len(result.matches) > 1:
            # Several people fit the identifiers (same name and date of birth): releasing their records
            # together could put one family's history in another's file. Say "known" and stop there.
            log.info("ambiguous match withheld", request_id=request.command.request_id, agency=plan.agency,
                     people=len(result.matches))
            return self._finish(event, AgencyOutcome(
                plan.agency, AnswerStatus.MATCH, DisclosureLevel.EXISTS, contact=result.contact,
                detail=f"{len(result.matches)} people match these identifiers, so no records were released; "
                       "give an NHS number or contact the agency",
            ))
        disclosed, manifest = self._redact(request, plan, records)
        return self._finish(
            replace(event, manifest=manifest),
            AgencyOutcome(
                plan.agency, AnswerStatus.MATCH, plan.level, records=disclosed, contact=result.contact,
                categories=tuple(sorted({r.category for r in disclosed})),
                detail="" if disclosed else "known to this agency; contact them for more",
            ),
        )

    def _redact(
        self, request: _Request, plan: _AgencyPlan, records: list[Record]
    ) -> tuple[tuple[DisclosedRecord, ...], tuple[ManifestEntry, ...]]:
        redactor = self._redactor(request.policy)
        out: list[DisclosedRecord] = []
        manifest: list[ManifestEntry] = []
        for level in (DisclosureLevel.FULL, DisclosureLevel.PERTINENT):
            group = [r for r in records if plan.content[r.category] == level]
            if not group:
                continue
            ctx = RedactionContext(
                agency=plan.agency, level=level, role=request.caller.role,
                requester_agency=request.requester_agency, inside_mash=request.inside_mash,
                disclosure_date=request.today,
                # Outside the MASH a pseudonym links people within one answer, never across requests,
                # so nobody can build a dictionary of pseudonyms to identities over time.
                pseudonym_scope="" if request.inside_mash else request.command.request_id,
            )
            result = redactor.redact(group, ctx)
            out += result.records
            manifest += result.manifest
        out.sort(key=lambda r: (r.occurred_at, r.record_id), reverse=True)
        return tuple(out), tuple(manifest)

    def _redactor(self, policy: PolicyView) -> Redactor:
        redactor = self._redactors.get(policy.version)
        if redactor is None:
            redactor = Redactor(policy.redaction, self._pseudonym_keys)
            self._redactors = {policy.version: redactor}  # only the active snapshot's is kept
        return redactor

    @staticmethod
    def _finish(event: AuditEvent, outcome: AgencyOutcome) -> _Answer:
        event = replace(
            event, status=outcome.status.value, level=outcome.level.name, categories=outcome.categories,
            payload_digest=payload_digest(outcome), reason=outcome.detail,
        )
        return _Answer(outcome, event)


def payload_digest(outcome: AgencyOutcome) -> str:
    """SHA-256 over a canonical encoding of exactly what the caller receives for one agency."""
    doc = {
        "agency": outcome.agency,
        "status": outcome.status.value,
        "level": outcome.level.name,
        "contact": None if outcome.contact is None else [
            outcome.contact.agency, outcome.contact.team, outcome.contact.phone, outcome.contact.email
        ],
        "records": [
            [r.record_id, r.record_type, r.category, r.kind.value, r.occurred_at, r.summary,
             [[f.name, f.category, f.value, f.disclosure.value, f.operator, f.reason] for f in r.fields],
             list(r.conditions)]
            for r in outcome.records
        ],
    }
    encoded = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()

