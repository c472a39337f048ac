"""HubService servicer: translate, delegate to the query service, map errors. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio
import structlog

from gateway.api.convert import answer_to_proto, query_from_proto, screen_from_proto, screen_to_proto
from gateway.api.errors import errors_as_status
from gateway.api.identity import caller_from_context
from gateway.api.referral_servicer import workflow_errors
from gateway.domain import SystemClock
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2_grpc as hub_grpc
from gateway.service.query import QueryService
from gateway.service.validation import Caller, QueryCommand
from gateway.workflow.research import ResearchLink

Context = grpc.aio.ServicerContext[object, object]


class HubServicer(hub_grpc.HubServiceServicer):
    def __init__(self, service: QueryService, research: ResearchLink | None = None) -> None:
        self._service = service
        self._research = research or ResearchLink(None, SystemClock())

    async def _linked(self, caller: Caller, request: hub_pb.QueryRequest | hub_pb.StreamQueryRequest,
                      context: Context) -> tuple[QueryCommand, float | None]:
        """The command and timeout, linked to the referral (and cut by its research deadline) if one is named."""
        command, timeout = query_from_proto(request), context.time_remaining()
        if not request.referral_id:
            return command, timeout
        return await self._research.begin(caller, request.referral_id, command, timeout)

    async def Query(self, request: hub_pb.QueryRequest, context: Context) -> hub_pb.QueryResponse:
        structlog.contextvars.bind_contextvars(rpc="Query")
        async with workflow_errors(context):
            caller = caller_from_context(context)
            command, timeout = await self._linked(caller, request, context)
            result = await self._service.query(caller, command, timeout=timeout)
            if request.referral_id:
                await self._research.record(caller, request.referral_id, result.answers)
        return hub_pb.QueryResponse(
            request_id=result.request_id, policy_version=result.policy_version,
            answers=[answer_to_proto(a) for a in result.answers],
        )

    async def StreamQuery(
        self, request: hub_pb.StreamQueryRequest, context: Context
    ) -> AsyncIterator[hub_pb.StreamQueryResponse]:
        structlog.contextvars.bind_contextvars(rpc="StreamQuery")
        async with workflow_errors(context):
            caller = caller_from_context(context)
            command, timeout = await self._linked(caller, request, context)
            answers = []
            async for request_id, version, answer in self._service.stream(caller, command, timeout=timeout):
                answers.append(answer)
                yield hub_pb.StreamQueryResponse(
                    request_id=request_id, policy_version=version, answer=answer_to_proto(answer)
                )
            if request.referral_id:
                await self._research.record(caller, request.referral_id, answers)

    async def ScreenReferral(
        self, request: hub_pb.ScreenReferralRequest, context: Context
    ) -> hub_pb.ScreenReferralResponse:
        structlog.contextvars.bind_contextvars(rpc="ScreenReferral")
        async with errors_as_status(context):
            outcome = await self._service.screen(
                caller_from_context(context), screen_from_proto(request), timeout=context.time_remaining()
            )
        return screen_to_proto(outcome)
