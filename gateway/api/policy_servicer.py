"""PolicyService servicer: translate, delegate to the policy-administration use cases."""

from __future__ import annotations

from gateway.api.calls import Call
from gateway.api.convert import finding_to_proto, level_to_proto, policy_rule_to_proto
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.service.policy_admin import PolicyAdmin


class PolicyServicer:
    def __init__(self, admin: PolicyAdmin) -> None:
        self._admin = admin

    async def GetPolicyVersion(
        self, request: policy_pb.GetPolicyVersionRequest, call: Call
    ) -> policy_pb.GetPolicyVersionResponse:
        snapshot = await self._admin.current(call.caller)
        return policy_pb.GetPolicyVersionResponse(
            policy_version=snapshot.version, policy_lines=len(snapshot.lines),
            expiring_agreements=[
                policy_pb.ExpiringAgreement(agreement=name, valid_until=day.isoformat(), days_left=left)
                for name, day, left in self._admin.expiring_agreements(snapshot)
            ])

    async def ExplainDecision(
        self, request: policy_pb.ExplainDecisionRequest, call: Call
    ) -> policy_pb.ExplainDecisionResponse:
        explained = await self._admin.explain(call.caller, request.role, request.purpose, request.agency,
                                              request.category)
        decision = explained.decision
        deciding = set(decision.allowed_by) | set(decision.denied_by)
        return policy_pb.ExplainDecisionResponse(
            policy_version=explained.policy_version, level=level_to_proto(decision.level),
            allowed_by=list(decision.allowed_by), denied_by=list(decision.denied_by),
            matching_rules=[policy_rule_to_proto(line, deciding=line.where in deciding)
                            for line in (*explained.lines.allows, *explained.lines.denies,
                                          *explained.lines.reviews)],
        )

    async def ReloadPolicy(self, request: policy_pb.ReloadPolicyRequest, call: Call) -> policy_pb.ReloadPolicyResponse:
        outcome = await self._admin.reload(call.caller)
        return policy_pb.ReloadPolicyResponse(
            activated=outcome.activated, unchanged=outcome.unchanged, policy_version=outcome.version,
            attempted_version=outcome.attempted_version, previous_version=outcome.previous_version,
            findings=[finding_to_proto(f) for f in outcome.findings],
        )
