"""HubService servicer: translate, delegate to the query service. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.api.calls import Call
from gateway.api.convert import answer_to_proto, query_from_proto, screen_from_proto, screen_to_proto
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.service.query import QueryService


class HubServicer:
    def __init__(self, service: QueryService) -> None:
        self._service = service

    async def Query(self, request: hub_pb.QueryRequest, call: Call) -> hub_pb.QueryResponse:
        result = await self._service.query(call.caller, query_from_proto(request), timeout=call.time_remaining())
        return hub_pb.QueryResponse(
            request_id=result.request_id, policy_version=result.policy_version,
            answers=[answer_to_proto(a) for a in result.answers],
        )

    async def StreamQuery(
        self, request: hub_pb.StreamQueryRequest, call: Call
    ) -> AsyncIterator[hub_pb.StreamQueryResponse]:
        async for request_id, version, answer in self._service.stream(
            call.caller, query_from_proto(request), timeout=call.time_remaining()
        ):
            yield hub_pb.StreamQueryResponse(request_id=request_id, policy_version=version,
                                             answer=answer_to_proto(answer))

    async def ScreenReferral(self, request: hub_pb.ScreenReferralRequest, call: Call) -> hub_pb.ScreenReferralResponse:
        outcome = await self._service.screen(call.caller, screen_from_proto(request), timeout=call.time_remaining())
        return screen_to_proto(outcome)
