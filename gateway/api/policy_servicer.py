"""PolicyService servicer: the active policy version and explanations for anyone bound to a role;
reload for certificates bound to policy_admin only."""

from __future__ import annotations

from pathlib import Path

import grpc.aio

from gateway.api.convert import finding_to_proto, level_to_proto, policy_rule_to_proto
from gateway.api.errors import errors_as_status
from gateway.api.identity import caller_from_context
from gateway.errors import FieldViolation, InvalidRequest
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.generated.mash.gateway.v1 import policy_service_pb2_grpc as policy_grpc
from gateway.policy import PolicyHolder
from gateway.service.access import AccessGuard

ADMIN_ROLE = "policy_admin"
Context = grpc.aio.ServicerContext


class PolicyServicer(policy_grpc.PolicyServiceServicer):
    def __init__(self, holder: PolicyHolder, policy_dir: Path, guard: AccessGuard) -> None:
        self._holder = holder
        self._policy_dir = policy_dir
        self._guard = guard

    async def GetPolicyVersion(
        self, request: policy_pb.GetPolicyVersionRequest, context: Context  # type: ignore[type-arg]
    ) -> policy_pb.GetPolicyVersionResponse:
        async with errors_as_status(context):
            await self._guard.require_any(caller_from_context(context), "GetPolicyVersion")
        snapshot = self._holder.current
        return policy_pb.GetPolicyVersionResponse(policy_version=snapshot.version, policy_lines=len(snapshot.lines))

    async def ExplainDecision(
        self, request: policy_pb.ExplainDecisionRequest, context: Context  # type: ignore[type-arg]
    ) -> policy_pb.ExplainDecisionResponse:
        snapshot = self._holder.current
        async with errors_as_status(context):
            await self._guard.require_any(caller_from_context(context), "ExplainDecision")
            violations = [
                FieldViolation(field, message)
                for field, message in snapshot.request_problems(
                    request.role, request.purpose, request.agency, request.category
                )
            ]
            if violations:
                raise InvalidRequest(violations)
        decision = snapshot.decide(request.role, request.purpose, request.agency, request.category)
        lines = snapshot.matching_lines(request.role, request.purpose, request.agency, request.category)
        deciding = set(decision.allowed_by) | set(decision.denied_by)
        return policy_pb.ExplainDecisionResponse(
            policy_version=snapshot.version, level=level_to_proto(decision.level),
            allowed_by=list(decision.allowed_by), denied_by=list(decision.denied_by),
            matching_rules=[policy_rule_to_proto(ln, deciding=ln.where in deciding)
                            for ln in (*lines.allows, *lines.denies)],
        )

    async def ReloadPolicy(
        self, request: policy_pb.ReloadPolicyRequest, context: Context  # type: ignore[type-arg]
    ) -> policy_pb.ReloadPolicyResponse:
        caller = caller_from_context(context)
        async with errors_as_status(context):
            await self._guard.require(caller, ADMIN_ROLE, "ReloadPolicy")
        outcome = await self._holder.reload(self._policy_dir, trigger="admin RPC", caller=caller.identity,
                                            user=caller.user)
        return policy_pb.ReloadPolicyResponse(
            activated=outcome.activated, unchanged=outcome.unchanged, policy_version=outcome.version,
            attempted_version=outcome.attempted_version, previous_version=outcome.previous_version,
            findings=[finding_to_proto(f) for f in outcome.findings],
        )
