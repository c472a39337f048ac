"""The open-case check a referral gets on arrival, as a port, and its adapter over the hub's screening use case."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from gateway.domain import SubjectIdentifiers
from gateway.errors import GatewayError
from gateway.service.query import QueryService
from gateway.service.validation import Caller, QueryCommand
from gateway.workflow.policy import MashRules


class OpenCase(enum.Enum):
    """What the open-case check found. Only OPEN routes a referral; everything else waits for a person."""

    OPEN = "OPEN"
    NOT_OPEN = "NOT_OPEN"  # known and closed, or not known to the agency holding the case records
    AMBIGUOUS = "AMBIGUOUS"  # several people matched, or the status was not released
    WITHHELD = "WITHHELD"
    UNAVAILABLE = "UNAVAILABLE"  # the node did not answer, or the check itself failed


_RESULTS = {"OPEN": OpenCase.OPEN, "CLOSED": OpenCase.NOT_OPEN, "NOT_KNOWN": OpenCase.NOT_OPEN,
            "UNAVAILABLE": OpenCase.UNAVAILABLE, "AMBIGUOUS": OpenCase.AMBIGUOUS}


@dataclass(frozen=True, slots=True)
class OpenCaseAnswer:
    result: OpenCase
    team: str = ""
    worker: str = ""
    request_id: str = ""  # the screening request's id, so the audit links the two


class OpenCaseCheck(Protocol):
    """Is this person open to social care (children's for a child, adults' for an adult at risk), and who holds
    the case? `mash` is the referral's MASH: its subject kind and whom the check runs as."""

    async def check(self, subject: SubjectIdentifiers, *, referral_id: str, mash: MashRules) -> OpenCaseAnswer: ...


class HubScreening:
    """Runs the hub's own screening use case as the caller `workflow.yaml` names for the referral's MASH (so it
    is audited the same as any screening request)."""

    def __init__(self, service: QueryService, *, timeout: float = 5.0) -> None:
        self._service = service
        self._timeout = timeout

    async def check(self, subject: SubjectIdentifiers, *, referral_id: str, mash: MashRules) -> OpenCaseAnswer:
        who = mash.screening
        if who is None:  # workflow.yaml requires one for a MASH that screens; never guess a caller
            return OpenCaseAnswer(OpenCase.UNAVAILABLE)
        agency = who.acts_as.rstrip("/").split("/agency/", 1)[-1].split("/", 1)[0]
        caller = Caller(identity=who.acts_as, agency=agency, user=who.user, role=who.role)
        command = QueryCommand(request_id=f"screen-{referral_id}", subject=subject, purpose=who.purpose,
                               legal_basis=who.legal_basis, agreement=who.agreement, case_reference=referral_id)
        try:
            outcome = await self._service.screen(caller, command, timeout=self._timeout, subject_kind=mash.subject)
        except GatewayError:
            # A refused or unauditable check is not an answer: leave the referral for a person.
            return OpenCaseAnswer(OpenCase.UNAVAILABLE, request_id=command.request_id)
        # Anything not named here (withheld, or a result added later) leaves the referral for a person.
        result = _RESULTS.get(outcome.result.value, OpenCase.WITHHELD)
        if result is OpenCase.OPEN and not outcome.allocated_team:
            result = OpenCase.AMBIGUOUS  # open, but nobody to route it to: a person must look
        return OpenCaseAnswer(result, outcome.allocated_team, outcome.allocated_worker, outcome.request_id)
