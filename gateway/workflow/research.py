"""Research under a referral: a researcher's hub query that names a referral is linked to it.

The query runs as usual (the same policy, redaction and audit); before it, the referral's research deadline
cuts the time the agencies are given; after it, the referral records which agencies answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import structlog

from gateway.domain import AnswerStatus, Clock
from gateway.errors import FieldViolation, InvalidRequest
from gateway.service.query import AgencyOutcome
from gateway.service.validation import Caller, QueryCommand
from gateway.workflow.referral import InvalidTransition, VersionConflict
from gateway.workflow.service import ReferralWorkflow

log = structlog.get_logger("gateway.workflow.research")

MIN_AGENCY_TIMEOUT = 1.0  # seconds: an overdue referral still gets its research answered, just not slowly
_ANSWERED = (AnswerStatus.MATCH, AnswerStatus.NO_MATCH)


class ResearchLink:
    """Links hub queries to referrals for the hub servicer; without a workflow a referral id is refused."""

    def __init__(self, workflow: ReferralWorkflow | None, clock: Clock) -> None:
        self._workflow = workflow
        self._clock = clock

    async def begin(self, caller: Caller, referral_id: str, command: QueryCommand,
                    timeout: float | None) -> tuple[QueryCommand, float | None]:
        """The command with the referral as its case reference, and the timeout cut by the research deadline
        (`link`, then `deadline`)."""
        linked = await self.link(caller, referral_id, command)
        return linked, await self.deadline(caller, referral_id, timeout)

    async def link(self, caller: Caller, referral_id: str, command: QueryCommand) -> QueryCommand:
        """The command with the referral as its case reference: the same for a first attempt and its retries,
        whatever the referral's state (so a retry is recognised as the same request)."""
        if self._workflow is None:
            raise InvalidRequest([FieldViolation("referral_id", "this gateway runs no referral workflow")])
        if command.case_reference not in ("", referral_id):
            exc = InvalidRequest([FieldViolation(
                "case_reference", "must be empty or the referral id when a referral id is given")])
            await self._workflow.refuse(caller, "link_research", exc)
        return replace(command, case_reference=referral_id, referral_id=referral_id)

    async def deadline(self, caller: Caller, referral_id: str, timeout: float | None) -> float | None:
        """Before a linked query is answered afresh (never before a replay of an answered one): refuse it unless
        the referral is rated or being researched and the caller may research it, else cut `timeout` to what is
        left of the research deadline."""
        assert self._workflow is not None  # link() refused the query otherwise
        due = await self._workflow.research_deadline(caller, referral_id)
        if due is not None:
            left = max(MIN_AGENCY_TIMEOUT, (due - self._clock.now()).total_seconds())
            timeout = left if timeout is None else min(timeout, left)
        return timeout

    async def record(self, caller: Caller, referral_id: str, answers: Sequence[AgencyOutcome]) -> None:
        """Which agencies answered, and which categories each disclosed (for owners who asked to be told)."""
        assert self._workflow is not None  # begin() refused the query otherwise
        answered = [a.agency for a in answers if a.status in _ANSWERED]
        disclosed = {a.agency: a.categories for a in answers if a.categories}
        for _ in range(3):
            try:
                await self._workflow.link_research(caller, referral_id, answered, disclosed)
                return
            except VersionConflict:
                continue  # someone else moved the referral meanwhile: read it again and record on top
            except InvalidTransition:
                # Decided or closed while the query ran: the answers stand (audited under the referral's
                # case reference); the refusal to link them is audited too.
                return
        log.warning("research answers not linked after repeated conflicts", referral_id=referral_id)
