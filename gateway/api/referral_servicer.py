"""ReferralService servicer: translate, delegate to the referral workflow. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from gateway.api.calls import Call
from gateway.api.convert import answer_to_proto
from gateway.api.referral_convert import (
    filter_from_proto,
    notification_to_proto,
    referral_to_proto,
    state_from_proto,
    submit_from_proto,
    transition_to_proto,
)
from gateway.domain import Clock
from gateway.errors import FieldViolation, InvalidRequest
from gateway.generated.mash.gateway.v1 import referral_service_pb2 as ref_pb
from gateway.service.validation import Caller
from gateway.workflow.package import PertinentInformation
from gateway.workflow.referral import Referral
from gateway.workflow.service import Decision, ReferralView, ReferralWorkflow


class ReferralServicer:
    def __init__(self, workflow: ReferralWorkflow, clock: Clock, packages: PertinentInformation) -> None:
        self._workflow = workflow
        self._clock = clock
        self._packages = packages

    def _view(self, caller: Caller, referral: Referral) -> ref_pb.Referral:
        visible = self._workflow.workflow.allows(caller.role, "view_content")
        return referral_to_proto(ReferralView(referral, visible), self._clock.now())

    async def _one(self, call: Call, step: Callable[[Caller], Awaitable[Referral]]) -> ref_pb.Referral:
        return self._view(call.caller, await step(call.caller))

    async def SubmitReferral(self, request: ref_pb.SubmitReferralRequest, call: Call) -> ref_pb.SubmitReferralResponse:
        try:
            command = submit_from_proto(request)
        except InvalidRequest as exc:
            await self._workflow.refuse(call.caller, "submit", exc)
            raise
        referral = await self._one(call, lambda c: self._workflow.submit(c, command))
        return ref_pb.SubmitReferralResponse(referral=referral)

    async def GetReferral(self, request: ref_pb.GetReferralRequest, call: Call) -> ref_pb.GetReferralResponse:
        view = await self._workflow.get(call.caller, request.referral_id)
        return ref_pb.GetReferralResponse(referral=referral_to_proto(view, self._clock.now()),
                                          history=[transition_to_proto(t) for t in view.history])

    async def ListReferrals(self, request: ref_pb.ListReferralsRequest, call: Call) -> ref_pb.ListReferralsResponse:
        now = self._clock.now()
        unknown = [FieldViolation(f"states[{i}]", "is not a referral state")
                   for i, v in enumerate(request.states) if state_from_proto(v) is None]
        if unknown:
            # The workflow audits every refusal; hand it the violation so this one is audited too.
            await self._workflow.refuse(call.caller, "list", InvalidRequest(unknown))
        try:
            where = filter_from_proto(request, now)
        except InvalidRequest as exc:
            await self._workflow.refuse(call.caller, "list", exc)
            raise
        page, token, visible = await self._workflow.queue(
            call.caller, where, page_size=request.page_size, page_token=request.page_token)
        return ref_pb.ListReferralsResponse(
            referrals=[referral_to_proto(ReferralView(r, visible), now) for r in page.referrals],
            next_page_token=token, total=page.total)

    async def MarkScreened(self, request: ref_pb.MarkScreenedRequest, call: Call) -> ref_pb.MarkScreenedResponse:
        referral = await self._one(call, lambda c: self._workflow.screen(c, request.referral_id))
        return ref_pb.MarkScreenedResponse(referral=referral)

    async def RouteReferral(self, request: ref_pb.RouteReferralRequest, call: Call) -> ref_pb.RouteReferralResponse:
        referral = await self._one(call, lambda c: self._workflow.route(
            c, request.referral_id, request.team, request.worker))
        return ref_pb.RouteReferralResponse(referral=referral)

    async def RateReferral(self, request: ref_pb.RateReferralRequest, call: Call) -> ref_pb.RateReferralResponse:
        referral = await self._one(call, lambda c: self._workflow.rate(c, request.referral_id, request.rating))
        return ref_pb.RateReferralResponse(referral=referral)

    async def StartResearch(self, request: ref_pb.StartResearchRequest, call: Call) -> ref_pb.StartResearchResponse:
        referral = await self._one(call, lambda c: self._workflow.start_research(c, request.referral_id))
        return ref_pb.StartResearchResponse(referral=referral)

    async def CompleteResearch(self, request: ref_pb.CompleteResearchRequest,
                               call: Call) -> ref_pb.CompleteResearchResponse:
        referral = await self._one(call, lambda c: self._workflow.complete_research(c, request.referral_id))
        return ref_pb.CompleteResearchResponse(referral=referral)

    async def DecideReferral(self, request: ref_pb.DecideReferralRequest, call: Call) -> ref_pb.DecideReferralResponse:
        decision = Decision(request.decision, request.reason, request.receiving_team)
        referral = await self._one(call, lambda c: self._workflow.decide(c, request.referral_id, decision))
        return ref_pb.DecideReferralResponse(referral=referral)

    async def CloseReferral(self, request: ref_pb.CloseReferralRequest, call: Call) -> ref_pb.CloseReferralResponse:
        referral = await self._one(call, lambda c: self._workflow.close(c, request.referral_id))
        return ref_pb.CloseReferralResponse(referral=referral)

    async def WithdrawReferral(self, request: ref_pb.WithdrawReferralRequest,
                               call: Call) -> ref_pb.WithdrawReferralResponse:
        referral = await self._one(call, lambda c: self._workflow.withdraw(c, request.referral_id))
        return ref_pb.WithdrawReferralResponse(referral=referral)

    async def MergeReferral(self, request: ref_pb.MergeReferralRequest, call: Call) -> ref_pb.MergeReferralResponse:
        referral = await self._one(call, lambda c: self._workflow.merge(c, request.referral_id,
                                                                        request.into_referral_id))
        return ref_pb.MergeReferralResponse(referral=referral)

    async def GetPertinentInformation(self, request: ref_pb.GetPertinentInformationRequest,
                                      call: Call) -> ref_pb.GetPertinentInformationResponse:
        result = await self._packages.package(call.caller, request.referral_id, timeout=call.time_remaining())
        return ref_pb.GetPertinentInformationResponse(request_id=result.request_id,
                                                      policy_version=result.policy_version,
                                                      answers=[answer_to_proto(a) for a in result.answers])

    async def PreviewPertinentInformation(self, request: ref_pb.PreviewPertinentInformationRequest,
                                          call: Call) -> ref_pb.PreviewPertinentInformationResponse:
        shown = await self._packages.preview(call.caller, request.referral_id, request.decision,
                                             timeout=call.time_remaining())
        return ref_pb.PreviewPertinentInformationResponse(
            request_id=shown.result.request_id, policy_version=shown.result.policy_version, decision=shown.decision,
            receiving_role=shown.receiving_role, purpose=shown.purpose,
            answers=[answer_to_proto(a) for a in shown.result.answers])

    async def WatchNotifications(self, request: ref_pb.WatchNotificationsRequest,
                                 call: Call) -> AsyncIterator[ref_pb.WatchNotificationsResponse]:
        after = request.after_sequence if request.after_sequence else None
        async for notice in self._workflow.watch(call.caller, after=after):
            yield notification_to_proto(notice)

    async def AcknowledgeNotifications(self, request: ref_pb.AcknowledgeNotificationsRequest,
                                       call: Call) -> ref_pb.AcknowledgeNotificationsResponse:
        acked = await self._workflow.acknowledge(call.caller, request.up_to_sequence)
        return ref_pb.AcknowledgeNotificationsResponse(acknowledged_sequence=acked)

    async def PurgeReferrals(self, request: ref_pb.PurgeReferralsRequest,
                             call: Call) -> ref_pb.PurgeReferralsResponse:
        result = await self._workflow.purge(call.caller, dry_run=not request.confirm)
        response = ref_pb.PurgeReferralsResponse(referral_ids=result.referral_ids, dry_run=result.dry_run)
        response.cutoff.FromDatetime(result.cutoff)
        return response
