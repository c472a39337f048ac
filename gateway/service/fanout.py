"""Asking one agency under its plan: call the node, keep only what was asked, redact, and build the audit entry."""

from __future__ import annotations

import asyncio
import hashlib
import json
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from gateway.domain import (
    AgencyContact,
    AnswerStatus,
    AuditEvent,
    AuditReceipt,
    Clock,
    DisclosedRecord,
    DisclosureLevel,
    ManifestEntry,
    Record,
)
from gateway.errors import AgencyRejected, AgencyTimedOut, AgencyUnavailable
from gateway.keyring import Keyring
from gateway.redaction import RedactionContext, Redactor
from gateway.service.admission import AdmittedRequest
from gateway.service.planning import AgencyPlan
from gateway.service.ports import AgencyTransport, LookupCommand, PolicyView

log = structlog.get_logger("gateway.fanout")

# Handing an answer to a worker thread costs a GIL hand-off and two loop wake-ups, more than redacting a
# typical answer (a few records, under 30 fields) takes; only answers with more fields than this leave
# the event loop, which bounds how long one answer can hold it (about a millisecond).
INLINE_FIELDS = 64


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
    ambiguous: bool = False  # several people matched, so nobody's records were released
    review_id: str = ""  # set when a reviewer of this agency must decide before more is released
    review_deadline: datetime | None = None


@dataclass(frozen=True, slots=True)
class AgencyAnswer:
    """An outcome and the audit entry that must be stored before the outcome is released."""

    outcome: AgencyOutcome
    event: AuditEvent


class AgencyFanout:
    """Answers one (request, agency plan) pair; a fault of ours withholds that agency's answer, not the rest."""

    def __init__(self, *, transport: AgencyTransport, pseudonym_keys: Keyring, clock: Clock) -> None:
        self._transport = transport
        self._pseudonym_keys = pseudonym_keys
        self._clock = clock
        self._redactors: dict[str, Redactor] = {}

    async def answer(self, request: AdmittedRequest, plan: AgencyPlan) -> AgencyAnswer:
        """The agency's outcome and audit event; never raises for a fault in one agency's answer."""
        # The request's event with this agency's part, made once when the outcome is known (see `finish`).
        event = _AgencyEvent(request, plan.agency, plan.rules, self._clock.now())
        try:
            return await self._ask(request, plan, event)
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            # The exception's message may quote record content, so only its type and location are logged.
            log.error("internal error while answering for an agency", request_id=request.request_id,
                      agency=plan.agency, error_type=type(exc).__name__,
                      location=f"{where.filename}:{where.lineno}" if where else "")
            return finish(event, AgencyOutcome(
                plan.agency, AnswerStatus.UNAVAILABLE, plan.level,
                detail="the gateway could not process this agency's answer; nothing from it was disclosed",
            ))

    async def _ask(self, request: AdmittedRequest, plan: AgencyPlan, event: _AgencyEvent) -> AgencyAnswer:
        if plan.level <= DisclosureLevel.NONE:
            return finish(event, AgencyOutcome(
                plan.agency, AnswerStatus.WITHHELD, DisclosureLevel.NONE,
                detail=plan.refusal or ("policy allows nothing from this agency for this role, purpose and agreement"
                                        if plan.requested else "none of this agency's categories was requested"),
            ))
        remaining = request.deadline - asyncio.get_running_loop().time()
        if not plan.asked:  # the locator: this node holds no token of the subject, so it never hears of it
            await asyncio.sleep(max(0.0, min(plan.hold, remaining)))
            return finish(event, AgencyOutcome(
                plan.agency, AnswerStatus.NO_MATCH, plan.level,
                detail="no records in the categories this caller may see"), details={"locator": "not asked"})
        command = LookupCommand(
            request_id=request.request_id, subject=request.command.subject,
            categories=tuple(plan.content), existence_categories=plan.existence,
            purpose=request.command.purpose, legal_basis=request.command.legal_basis,
        )
        try:
            if remaining <= 0:
                raise AgencyTimedOut("no time left before the caller's deadline")
            result = await self._transport.lookup(plan.agency, command, timeout=remaining)
        except AgencyTimedOut:
            return finish(event, AgencyOutcome(plan.agency, AnswerStatus.TIMED_OUT, plan.level,
                                               detail="the agency did not answer within the deadline"))
        except AgencyUnavailable:
            return finish(event, AgencyOutcome(plan.agency, AnswerStatus.UNAVAILABLE, plan.level,
                                               detail="the agency node could not be reached"))
        except AgencyRejected:
            # The transport's message may describe the node's answer; callers and the log get fixed text.
            return finish(event, AgencyOutcome(plan.agency, AnswerStatus.REJECTED, plan.level,
                                               detail="the agency node refused the lookup or sent an answer "
                                                      "the gateway could not read"))

        allowed = set(plan.content)
        records: list[Record] = []
        dropped = result.dropped
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
                        request_id=request.request_id, agency=plan.agency, dropped=dropped)
        if not records and not known:
            return finish(event, AgencyOutcome(
                plan.agency, AnswerStatus.NO_MATCH, plan.level,
                detail="no records in the categories this caller may see",
            ))
        if len(result.matches) > 1:
            # Several people fit the identifiers (same name and date of birth): releasing their records
            # together could put one family's history in another's file. Say "known" and stop there.
            log.info("ambiguous match withheld", request_id=request.request_id, agency=plan.agency,
                     people=len(result.matches))
            return finish(event, AgencyOutcome(
                plan.agency, AnswerStatus.MATCH, DisclosureLevel.EXISTS, contact=result.contact, ambiguous=True,
                detail=f"{len(result.matches)} people match these identifiers, so no records were released; "
                       "give an NHS number or contact the agency",
            ))
        if sum(len(r.fields) for r in records) <= INLINE_FIELDS:
            return self._disclose(request, plan, records, event, result.contact)
        # A large answer is redacted off the event loop, so it cannot stall unrelated calls.
        return await asyncio.to_thread(self._disclose, request, plan, records, event, result.contact)

    def _disclose(
        self, request: AdmittedRequest, plan: AgencyPlan, records: list[Record], event: _AgencyEvent,
        contact: AgencyContact,
    ) -> AgencyAnswer:
        disclosed, manifest = self._redact(request, plan, records)
        return finish(
            event,
            AgencyOutcome(
                plan.agency, AnswerStatus.MATCH, plan.level, records=disclosed, contact=contact,
                categories=tuple(sorted({r.category for r in disclosed})),
                detail="" if disclosed else "known to this agency; contact them for more",
            ),
            manifest=manifest,
        )

    def _redact(
        self, request: AdmittedRequest, plan: AgencyPlan, records: list[Record]
    ) -> tuple[tuple[DisclosedRecord, ...], tuple[ManifestEntry, ...]]:
        redactor = self._redactor(request.policy)
        out: list[DisclosedRecord] = []
        manifest: list[ManifestEntry] = []
        inside_mash = request.inside_mash
        for level in (DisclosureLevel.FULL, DisclosureLevel.PERTINENT):
            group = [r for r in records if plan.content[r.category] == level]
            if not group:
                continue
            ctx = RedactionContext(
                agency=plan.agency, level=level, role=request.caller.role,
                requester_agency=request.caller.agency, inside_mash=inside_mash,
                disclosure_date=request.today,
                # Outside the MASH a pseudonym links people within one answer, never across requests,
                # so nobody can build a dictionary of pseudonyms to identities over time.
                pseudonym_scope="" if inside_mash else request.request_id,
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


@dataclass(frozen=True, slots=True)
class _AgencyEvent:
    """What one agency's audit event takes from the request and from asking it, before the outcome."""

    request: AdmittedRequest
    agency: str
    deciding_rules: tuple[str, ...]
    occurred_at: datetime


def finish(event: _AgencyEvent, outcome: AgencyOutcome, *, details: Mapping[str, str] | None = None,
           **changes: Any) -> AgencyAnswer:
    """Pair an outcome with its audit entry, which records the digest of exactly what is released.

    The entry is the request's event with this agency's part (its area, where the partnership declares
    areas: "" if partnership-wide), the outcome, `details` added to the request's and `changes` (a
    manifest), built in one step: events are immutable, and each copy of one costs as much as building it.
    The request's own event is read here, once the outcome is known: it is made on first use (see
    `BaseEvent`), which for an agency that was asked is after its lookup has left.
    """
    request = event.request
    base = request.base_event
    if request.policy.areas or details:
        area = {"area": request.policy.area_of(event.agency)} if request.policy.areas else {}
        changes["details"] = {**base.details, **area, **(details or {})}
    return AgencyAnswer(outcome, replace(
        base, agency=event.agency, deciding_rules=event.deciding_rules, occurred_at=event.occurred_at,
        status=outcome.status.value, level=outcome.level.name, categories=outcome.categories,
        payload_digest=payload_digest(outcome), reason=outcome.detail, **changes,
    ))


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
