"""HubService servicer: translate, delegate to the query service, map errors. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio
import structlog

from gateway.api.convert import answer_to_proto, query_from_proto, screen_from_proto, screen_to_proto
from gateway.api.errors import errors_as_status
from gateway.api.identity import caller_from_context
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2_grpc as hub_grpc
from gateway.service.query import QueryService

Context = grpc.aio.ServicerContext[object, object]


class HubServicer(hub_grpc.HubServiceServicer):
    def __init__(self, service: QueryService) -> None:
        self._service = service

    async def Query(self, request: hub_pb.QueryRequest, context: Context) -> hub_pb.QueryResponse:
        structlog.contextvars.bind_contextvars(rpc="Query")
        async with errors_as_status(context):
            result = await self._service.query(
                caller_from_context(context), query_from_proto(request), timeout=context.time_remaining()
            )
        return hub_pb.QueryResponse(
            request_id=result.request_id, policy_version=result.policy_version,
            answers=[answer_to_proto(a) for a in result.answers],
        )

    async def StreamQuery(
        self, request: hub_pb.StreamQueryRequest, context: Context
    ) -> AsyncIterator[hub_pb.StreamQueryResponse]:
        structlog.contextvars.bind_contextvars(rpc="StreamQuery")
        async with errors_as_status(context):
            async for request_id, version, answer in self._service.stream(
                caller_from_context(context), query_from_proto(request), timeout=context.time_remaining()
            ):
                yield hub_pb.StreamQueryResponse(
                    request_id=request_id, policy_version=version, answer=answer_to_proto(answer)
                )

    async def ScreenReferral(
        self, request: hub_pb.ScreenReferralRequest, context: Context
    ) -> hub_pb.ScreenReferralResponse:
        structlog.contextvars.bind_contextvars(rpc="ScreenReferral")
        async with errors_as_status(context):
            outcome = await self._service.screen(
                caller_from_context(context), screen_from_proto(request), timeout=context.time_remaining()
            )
        return screen_to_proto(outcome)
