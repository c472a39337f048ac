"""The pertinent-information package: what a decided referral's receiving role may see about its subject.

It is gathered as a direct hub query by the receiver itself (its certificate, its role, the decision's
purpose), so the same policy and redaction apply and nothing more than that role may see is released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.errors import FieldViolation, InvalidRequest, RequestRefused
from gateway.service.query import QueryResult
from gateway.service.validation import Caller, QueryCommand
from gateway.workflow.policy import PackageBasis
from gateway.workflow.referral import Action, InvalidTransition, Referral, State
from gateway.workflow.service import ReferralWorkflow
from gateway.workflow.store import ReferralNotFound, ReferralStore
from gateway.workflow.validation import check_referral_id


class HubQuery(Protocol):
    """The hub's query use case (QueryService.query)."""

    async def query(self, caller: Caller, command: QueryCommand, *, timeout: float | None) -> QueryResult: ...


@dataclass(frozen=True, slots=True)
class Preview:
    """What a decision's receiving role would get: the decision, that role, the package's purpose, the answers."""

    decision: str
    receiving_role: str
    purpose: str
    result: QueryResult


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
        # The hub query checks the certificate may assert the role, the agreement, and audits every answer.
        return await self._hub.query(caller, _command(referral, rules.package), timeout=timeout)

    async def preview(self, caller: Caller, referral_id: str, decision: str, *, timeout: float | None) -> Preview:
        """For MASH staff who may see the referral's content: the package the receiving role of `decision` (or of
        the recorded decision) would get, asked and redacted as that role, audited as a preview by the caller."""
        referral = await self._workflow.load(caller, "preview_package", referral_id, "view_content")
        try:
            if referral.state in (State.WITHDRAWN, State.MERGED):
                raise InvalidTransition(referral_id, Action.DECIDE, referral.state,
                                        "a withdrawn or merged referral sends no package")
            chosen = decision or referral.decision
            if not chosen:
                raise InvalidRequest([FieldViolation("decision", "is required: the referral has no decision yet")])
            rules = self._workflow.workflow.mashes[referral.mash].decisions.get(chosen)
            if rules is None:
                raise InvalidRequest([FieldViolation("decision", "is not a decision of this referral's MASH")])
            if rules.package is None or not rules.receiving_role:
                raise InvalidRequest([FieldViolation("decision", "sends no pertinent-information package")])
        except (InvalidRequest, InvalidTransition) as exc:
            await self._workflow.audit_refusal(caller, "preview_package", referral_id, exc)
            raise
        receiver = Caller(identity=caller.identity, agency=self._workflow.role_agency(rules.receiving_role),
                          user=caller.user, role=rules.receiving_role, previewed_by=caller.role)
        result = await self._hub.query(receiver, _command(referral, rules.package), timeout=timeout)
        return Preview(chosen, rules.receiving_role, rules.package.purpose, result)


def _command(referral: Referral, basis: PackageBasis) -> QueryCommand:
    """The direct query whose answers are the package: the subject, under the decision's purpose and agreement."""
    return QueryCommand(request_id="", subject=referral.content.subject, purpose=basis.purpose,
                        legal_basis=basis.legal_basis, agreement=basis.agreement,
                        case_reference=referral.referral_id)
