"""HubService servicer: translate, delegate to the query service. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.api.calls import Call
from gateway.api.convert import answer_to_proto, query_from_proto, screen_from_proto, screen_to_proto
from gateway.domain import SystemClock
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.service.query import Prepare, QueryService
from gateway.service.validation import QueryCommand
from gateway.workflow.research import ResearchLink

_SUBJECT_KINDS = {hub_pb.SUBJECT_KIND_UNSPECIFIED: "child", hub_pb.SUBJECT_KIND_CHILD: "child",
                  hub_pb.SUBJECT_KIND_ADULT: "adult"}
"""Unset is a child's check, as before the field; a number this gateway does not know is refused (audited)."""


class HubServicer:
    def __init__(self, service: QueryService, research: ResearchLink | None = None) -> None:
        self._service = service
        self._research = research or ResearchLink(None, SystemClock())

    async def _linked(self, request: hub_pb.QueryRequest | hub_pb.StreamQueryRequest,
                      call: Call) -> tuple[QueryCommand, Prepare | None]:
        """The command, linked to the referral if one is named, and what to check before it is answered afresh:
        the referral's state and research deadline. A retry of an answered request replays its first answer
        without that check, so a referral decided meanwhile does not turn a retry into a refusal."""
        command = query_from_proto(request)
        if not request.referral_id:
            return command, None
        command = await self._research.link(call.caller, request.referral_id, command)

        async def prepare(timeout: float | None) -> float | None:
            return await self._research.deadline(call.caller, request.referral_id, timeout)

        return command, prepare

    async def Query(self, request: hub_pb.QueryRequest, call: Call) -> hub_pb.QueryResponse:
        command, prepare = await self._linked(request, call)
        result = await self._service.query(call.caller, command, timeout=call.time_remaining(), prepare=prepare)
        if request.referral_id and not result.replayed:  # a replay disclosed nothing new: record nothing again
            await self._research.record(call.caller, request.referral_id, result.answers)
        return hub_pb.QueryResponse(
            request_id=result.request_id, policy_version=result.policy_version,
            answers=[answer_to_proto(a) for a in result.answers],
        )

    async def StreamQuery(
        self, request: hub_pb.StreamQueryRequest, call: Call
    ) -> AsyncIterator[hub_pb.StreamQueryResponse]:
        command, prepare = await self._linked(request, call)
        answers = []
        replayed = []
        async for request_id, version, answer in self._service.stream(call.caller, command,
                                                                      timeout=call.time_remaining(),
                                                                      on_replay=lambda: replayed.append(True),
                                                                      prepare=prepare):
            answers.append(answer)
            yield hub_pb.StreamQueryResponse(request_id=request_id, policy_version=version,
                                             answer=answer_to_proto(answer))
        if request.referral_id and not replayed:
            await self._research.record(call.caller, request.referral_id, answers)

    async def ScreenReferral(self, request: hub_pb.ScreenReferralRequest, call: Call) -> hub_pb.ScreenReferralResponse:
        outcome = await self._service.screen(call.caller, screen_from_proto(request), timeout=call.time_remaining(),
                                             subject_kind=_SUBJECT_KINDS.get(request.subject_kind, ""))
        return screen_to_proto(outcome)
