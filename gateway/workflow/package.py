"""The pertinent-information package: what a decided referral's receiving role may see about its subject.

It is gathered as a direct hub query by the receiver itself (its certificate, its role, the decision's
purpose), so the same policy and redaction apply and nothing more than that role may see is released.
"""

from __future__ import annotations

from typing import Protocol

from gateway.errors import FieldViolation, InvalidRequest, RequestRefused
from gateway.service.query import QueryResult
from gateway.service.validation import Caller, QueryCommand
from gateway.workflow.referral import Action, InvalidTransition, State
from gateway.workflow.service import ReferralWorkflow
from gateway.workflow.store import ReferralNotFound, ReferralStore
from gateway.workflow.validation import check_referral_id


class HubQuery(Protocol):
    """The hub's query use case (QueryService.query)."""

    async def query(self, caller: Caller, command: QueryCommand, *, timeout: float | None) -> QueryResult: ...


class PertinentInformation:
    """Answers a receiving system's request for the package of a referral decided to its role."""

    def __init__(self, workflow: ReferralWorkflow, store: ReferralStore, hub: HubQuery) -> None:
        self._workflow = workflow
        self._store = store
        self._hub = hub

    async def package(self, caller: Caller, referral_id: str, *, timeout: float | None) -> QueryResult:
        try:
            if violations := check_referral_id(referral_id):
                raise InvalidRequest(violations)
            referral = await self._store.get(referral_id)
            if referral.state not in (State.DECIDED, State.CLOSED) or not referral.decision:
                raise InvalidTransition(referral_id, Action.DECIDE, referral.state,
                                        "the referral has no decision, so there is no package yet")
            rules = self._workflow.workflow.mashes[referral.mash].decisions.get(referral.decision)
            if rules is None or rules.package is None:
                raise InvalidRequest([FieldViolation("referral_id", "this referral's decision has no package")])
            if caller.role != rules.receiving_role:
                raise RequestRefused("only the decision's receiving role may fetch its package",
                                     code="NOT_THE_RECEIVER", field="metadata.x-mash-role")
        except (InvalidRequest, RequestRefused, InvalidTransition, ReferralNotFound) as exc:
            await self._workflow.audit_refusal(caller, "package", referral_id, exc)
            raise
        basis = rules.package
        command = QueryCommand(request_id="", subject=referral.content.subject, purpose=basis.purpose,
                               legal_basis=basis.legal_basis, agreement=basis.agreement,
                               case_reference=referral_id)
        # The hub query checks the certificate may assert the role, the agreement, and audits every answer.
        return await self._hub.query(caller, command, timeout=timeout)
