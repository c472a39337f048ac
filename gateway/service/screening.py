"""Referral screening: is the child open to children's social care, and if so who holds the case?"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace

from gateway.domain import AgencyContact, AnswerStatus, AuditReceipt, FieldDisclosure
from gateway.errors import FieldViolation, InvalidRequest, RequestRefused
from gateway.service.admission import Admission
from gateway.service.fanout import AgencyFanout, AgencyOutcome
from gateway.service.planning import AgencyPlan, Router, plan_request
from gateway.service.ports import AuditSink, PolicyView
from gateway.service.validation import Caller, QueryCommand

SUBJECT_KINDS = ("child", "adult")
"""Whose open cases screening asks about: a child's (children's social care), an adult at risk's (adult social care)."""


class ScreenResult(enum.Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    NOT_KNOWN = "NOT_KNOWN"
    UNAVAILABLE = "UNAVAILABLE"
    WITHHELD = "WITHHELD"


@dataclass(frozen=True, slots=True)
class ScreenOutcome:
    """The screening answer as released to the caller."""

    request_id: str
    result: ScreenResult
    policy_version: str
    case_status: str = ""
    allocated_team: str = ""
    allocated_worker: str = ""
    contact: AgencyContact | None = None
    receipt: AuditReceipt | None = None
    detail: str = ""


def _covers_case_records(subject_kind: str) -> Callable[[PolicyView, QueryCommand], None]:
    def check(policy: PolicyView, command: QueryCommand) -> None:
        if subject_kind not in SUBJECT_KINDS:
            raise InvalidRequest([FieldViolation("subject_kind", "is not a subject kind this gateway knows "
                                                                 "(child or adult)")])
        case_records = policy.open_case_category_for(subject_kind)
        if not case_records:
            raise RequestRefused(
                f"the policy declares no record category for the open-case check ({subject_kind}: open_cases)",
                code="SCREENING_NOT_CONFIGURED", field="")
        agreement = policy.agreements[command.agreement]
        if not any(policy.category_within(case_records, c) for c in agreement.categories):
            raise RequestRefused(
                f"agreement {command.agreement!r} does not cover the case records screening asks for",
                code="AGREEMENT_CATEGORY", field="agreement",
            )

    return check


class Screening:
    """Asks children's social care for case records only, and reads the answer without guessing."""

    def __init__(self, *, admission: Admission, fanout: AgencyFanout, audit: AuditSink,
                 router: Router | None = None) -> None:
        self._admission = admission
        self._router = router
        self._fanout = fanout
        self._audit = audit

    async def screen(
        self, caller: Caller, command: QueryCommand, *, timeout: float | None, reused: bool = False,
        subject_kind: str = "child",
    ) -> ScreenOutcome:
        """Screen one referral; the answer is audited before it is returned (`reused`: see `Admission.admit`).

        `subject_kind` picks the check: a child's asks children's social care's open-case category, an adult
        at risk's the category the vocabulary marks `open_cases: adult` (adult social care's, as shipped).
        """
        request = await self._admission.admit(caller, replace(command, categories=()), timeout,
                                              extra_check=_covers_case_records(subject_kind), reused=reused)
        case_records = request.policy.open_case_category_for(subject_kind)
        routing = None if self._router is None else await self._router.route(request.command.subject)
        (plan,) = plan_request(request.policy, role=caller.role, purpose=request.command.purpose,
                               agreement=request.command.agreement, categories=(case_records,),
                               agencies=(request.policy.open_case_agency_for(subject_kind),), routing=routing,
                               requester=caller.agency)
        answer = await self._fanout.answer(request, plan)
        (receipt,) = await self._audit.append([answer.event])
        return replace(read_screening(answer.outcome, plan, case_records), request_id=request.request_id,
                       policy_version=request.policy.version, receipt=receipt)


def read_screening(outcome: AgencyOutcome, plan: AgencyPlan, case_records: str) -> ScreenOutcome:
    """The case-holding agency's answer (children's or adult social care) as a screening result (request id,
    version and receipt left blank).

    Only a case status released as held counts: a withheld or transformed status, or an answer about
    several people, must never be read as "not open", or a referral could go down the wrong route.
    """
    base = ScreenOutcome("", ScreenResult.WITHHELD, "", contact=outcome.contact, detail=outcome.detail)
    if outcome.status in (AnswerStatus.UNAVAILABLE, AnswerStatus.TIMED_OUT, AnswerStatus.REJECTED):
        return replace(base, result=ScreenResult.UNAVAILABLE)
    if outcome.status is AnswerStatus.NO_MATCH:
        return replace(base, result=ScreenResult.NOT_KNOWN)
    if outcome.status is AnswerStatus.WITHHELD or case_records not in plan.content:
        return replace(base, detail="policy does not allow this role to see case status for this purpose")
    if outcome.ambiguous:
        return replace(base, detail="several people known to the agency holding the case records match these "
                                    "identifiers, so no case status was released: give an NHS number or contact them")
    statuses = []
    for record in (r for r in outcome.records if r.category == case_records):
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
        return replace(base, detail="known to the agency holding the case records; the case status was not "
                                    "released to this caller: contact them")
    return replace(base, result=ScreenResult.CLOSED,
                   detail="known to the agency holding the case records, with no case record")
