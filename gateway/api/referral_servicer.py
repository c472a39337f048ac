"""ReferralService servicer: translate, delegate to the referral workflow, map errors. Nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc.aio
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.api.convert import answer_to_proto
from gateway.api.errors import ERROR_DOMAIN, errors_as_status
from gateway.api.identity import caller_from_context
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
from gateway.generated.mash.gateway.v1 import referral_service_pb2_grpc as ref_grpc
from gateway.service.validation import Caller
from gateway.workflow.package import PertinentInformation
from gateway.workflow.referral import InvalidTransition, Referral, VersionConflict
from gateway.workflow.service import Decision, ReferralView, ReferralWorkflow

Context = grpc.aio.ServicerContext[object, object]


def _status(code: int, message: str, reason: str, metadata: dict[str, str]) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
    packed = any_pb2.Any()
    packed.Pack(info)
    return status_pb2.Status(code=code, message=message, details=[packed])


@contextlib.asynccontextmanager
async def workflow_errors(context: Context) -> AsyncIterator[None]:
    """Workflow errors get their own codes (the current state travels in ErrorInfo); the rest as everywhere."""
    async with errors_as_status(context):
        try:
            yield
        except InvalidTransition as exc:
            status = _status(code_pb2.FAILED_PRECONDITION, str(exc), "INVALID_TRANSITION",
                             {"current_state": exc.current.value, "action": exc.action.value})
        except VersionConflict as exc:
            status = _status(code_pb2.ABORTED, str(exc), "VERSION_CONFLICT", {})
        else:
            return
        grpc_status = rpc_status.to_status(status)
        await context.abort(grpc_status.code, grpc_status.details, grpc_status.trailing_metadata)


class ReferralServicer(ref_grpc.ReferralServiceServicer):
    def __init__(self, workflow: ReferralWorkflow, clock: Clock, packages: PertinentInformation) -> None:
        self._workflow = workflow
        self._clock = clock
        self._packages = packages

    def _view(self, caller: Caller, referral: Referral) -> ref_pb.Referral:
        visible = self._workflow.workflow.allows(caller.role, "view_content")
        return referral_to_proto(ReferralView(referral, visible), self._clock.now())

    async def _one(self, rpc: str, context: Context,
                   step: Callable[[Caller], Awaitable[Referral]]) -> ref_pb.Referral:
        structlog.contextvars.bind_contextvars(rpc=rpc)
        caller = caller_from_context(context)
        async with workflow_errors(context):
            referral = await step(caller)
        return self._view(caller, referral)

    async def SubmitReferral(self, request: ref_pb.SubmitReferralRequest,
                             context: Context) -> ref_pb.SubmitReferralResponse:
        command = submit_from_proto(request)
        referral = await self._one("SubmitReferral", context, lambda c: self._workflow.submit(c, command))
        return ref_pb.SubmitReferralResponse(referral=referral)

    async def GetReferral(self, request: ref_pb.GetReferralRequest, context: Context) -> ref_pb.GetReferralResponse:
        structlog.contextvars.bind_contextvars(rpc="GetReferral")
        async with workflow_errors(context):
            view = await self._workflow.get(caller_from_context(context), request.referral_id)
        return ref_pb.GetReferralResponse(referral=referral_to_proto(view, self._clock.now()),
                                          history=[transition_to_proto(t) for t in view.history])

    async def ListReferrals(self, request: ref_pb.ListReferralsRequest,
                            context: Context) -> ref_pb.ListReferralsResponse:
        structlog.contextvars.bind_contextvars(rpc="ListReferrals")
        now = self._clock.now()
        caller = caller_from_context(context)
        async with workflow_errors(context):
            unknown = [FieldViolation(f"states[{i}]", "is not a referral state")
                       for i, v in enumerate(request.states) if state_from_proto(v) is None]
            if unknown:
                # The workflow audits every refusal; hand it the violation so this one is audited too.
                await self._workflow.refuse(caller, "list", InvalidRequest(unknown))
            page, token, visible = await self._workflow.queue(
                caller, filter_from_proto(request, now), page_size=request.page_size, page_token=request.page_token)
        return ref_pb.ListReferralsResponse(
            referrals=[referral_to_proto(ReferralView(r, visible), now) for r in page.referrals],
            next_page_token=token, total=page.total)

    async def MarkScreened(self, request: ref_pb.MarkScreenedRequest,
                           context: Context) -> ref_pb.MarkScreenedResponse:
        referral = await self._one("MarkScreened", context,
                                   lambda c: self._workflow.screen(c, request.referral_id))
        return ref_pb.MarkScreenedResponse(referral=referral)

    async def RouteReferral(self, request: ref_pb.RouteReferralRequest,
                            context: Context) -> ref_pb.RouteReferralResponse:
        referral = await self._one("RouteReferral", context, lambda c: self._workflow.route(
            c, request.referral_id, request.team, request.worker))
        return ref_pb.RouteReferralResponse(referral=referral)

    async def RateReferral(self, request: ref_pb.RateReferralRequest,
                           context: Context) -> ref_pb.RateReferralResponse:
        referral = await self._one("RateReferral", context,
                                   lambda c: self._workflow.rate(c, request.referral_id, request.rating))
        return ref_pb.RateReferralResponse(referral=referral)

    async def StartResearch(self, request: ref_pb.StartResearchRequest,
                            context: Context) -> ref_pb.StartResearchResponse:
        referral = await self._one("StartResearch", context,
                                   lambda c: self._workflow.start_research(c, request.referral_id))
        return ref_pb.StartResearchResponse(referral=referral)

    async def CompleteResearch(self, request: ref_pb.CompleteResearchRequest,
                               context: Context) -> ref_pb.CompleteResearchResponse:
        referral = await self._one("CompleteResearch", context,
                                   lambda c: self._workflow.complete_research(c, request.referral_id))
        return ref_pb.CompleteResearchResponse(referral=referral)

    async def DecideReferral(self, request: ref_pb.DecideReferralRequest,
                             context: Context) -> ref_pb.DecideReferralResponse:
        decision = Decision(request.decision, request.reason, request.receiving_team)
        referral = await self._one("DecideReferral", context,
                                   lambda c: self._workflow.decide(c, request.referral_id, decision))
        return ref_pb.DecideReferralResponse(referral=referral)

    async def CloseReferral(self, request: ref_pb.CloseReferralRequest,
                            context: Context) -> ref_pb.CloseReferralResponse:
        referral = await self._one("CloseReferral", context,
                                   lambda c: self._workflow.close(c, request.referral_id))
        return ref_pb.CloseReferralResponse(referral=referral)

    async def WithdrawReferral(self, request: ref_pb.WithdrawReferralRequest,
                               context: Context) -> ref_pb.WithdrawReferralResponse:
        referral = await self._one("WithdrawReferral", context,
                                   lambda c: self._workflow.withdraw(c, request.referral_id))
        return ref_pb.WithdrawReferralResponse(referral=referral)

    async def MergeReferral(self, request: ref_pb.MergeReferralRequest,
                            context: Context) -> ref_pb.MergeReferralResponse:
        referral = await self._one("MergeReferral", context, lambda c: self._workflow.merge(
            c, request.referral_id, request.into_referral_id))
        return ref_pb.MergeReferralResponse(referral=referral)

    async def GetPertinentInformation(self, request: ref_pb.GetPertinentInformationRequest,
                                      context: Context) -> ref_pb.GetPertinentInformationResponse:
        structlog.contextvars.bind_contextvars(rpc="GetPertinentInformation")
        async with workflow_errors(context):
            result = await self._packages.package(caller_from_context(context), request.referral_id,
                                                  timeout=context.time_remaining())
        return ref_pb.GetPertinentInformationResponse(request_id=result.request_id,
                                                      policy_version=result.policy_version,
                                                      answers=[answer_to_proto(a) for a in result.answers])

    async def WatchNotifications(self, request: ref_pb.WatchNotificationsRequest,
                                 context: Context) -> AsyncIterator[ref_pb.WatchNotificationsResponse]:
        structlog.contextvars.bind_contextvars(rpc="WatchNotifications")
        caller = caller_from_context(context)
        async with workflow_errors(context):
            after = request.after_sequence if request.after_sequence else None
            async for notice in self._workflow.watch(caller, after=after):
                yield notification_to_proto(notice)

    async def AcknowledgeNotifications(self, request: ref_pb.AcknowledgeNotificationsRequest,
                                       context: Context) -> ref_pb.AcknowledgeNotificationsResponse:
        structlog.contextvars.bind_contextvars(rpc="AcknowledgeNotifications")
        async with workflow_errors(context):
            acked = await self._workflow.acknowledge(caller_from_context(context), request.up_to_sequence)
        return ref_pb.AcknowledgeNotificationsResponse(acknowledged_sequence=acked)
