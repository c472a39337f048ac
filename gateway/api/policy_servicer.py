"""PolicyService servicer: translate, delegate to the policy-administration use cases."""

from __future__ import annotations

from datetime import date

from gateway.api.calls import Call
from gateway.api.convert import finding_to_proto, level_to_proto, policy_rule_to_proto
from gateway.audit import AuditRecord
from gateway.domain import AuditKind
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.policy import PolicySnapshot
from gateway.service.policy_admin import PolicyAdmin

MAX_CHANGES = 1000
"""The most changes one answer lists (widenings first); `total_changes` says how many there are."""


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

    async def GetVocabulary(
        self, request: policy_pb.GetVocabularyRequest, call: Call
    ) -> policy_pb.GetVocabularyResponse:
        snapshot, today = await self._admin.vocabulary(call.caller)
        return vocabulary_to_proto(snapshot, today)

    async def ListPolicyActivations(
        self, request: policy_pb.ListPolicyActivationsRequest, call: Call
    ) -> policy_pb.ListPolicyActivationsResponse:
        history = await self._admin.activations(call.caller, request.page_size)
        return policy_pb.ListPolicyActivationsResponse(
            activations=[activation_to_proto(r) for r in history.records], total_size=history.total)

    async def GetPolicyRelease(
        self, request: policy_pb.GetPolicyReleaseRequest, call: Call
    ) -> policy_pb.GetPolicyReleaseResponse:
        view = await self._admin.release(call.caller, request.release_id)
        changes = [policy_pb.ReleaseChange(
            widened=c.widened, area="level", agency=c.agency,
            text=f"{c.role} for {c.purpose}: {c.agency} {c.category} {c.old.name} -> {c.new.name}"
                 + (f" (after review: {c.old_review.name} -> {c.new_review.name})"
                    if c.old_review != c.new_review else ""))
            for c in view.levels]
        changes += [policy_pb.ReleaseChange(widened=s.widened, area=s.area, text=f"{s.subject}: {s.change}")
                    for s in view.settings]
        changes.sort(key=lambda c: (not c.widened, c.agency, c.area, c.text))
        record = view.record
        return policy_pb.GetPolicyReleaseResponse(
            release_id=record.version, base_version=view.base_version, active_version=view.active_version,
            proposed_by=record.proposed_by, proposed_at=record.proposed_at, released_by=record.released_by,
            released_at=record.released_at, summary=view.summary, changes=changes[:MAX_CHANGES],
            total_changes=len(changes),
            approvals=[policy_pb.ReleaseApproval(agency=agency, widenings=len(lines),
                                                 approved_by=sorted(view.approved.get(agency, [])))
                       for agency, lines in sorted(view.owners.items())],
            awaiting=view.awaiting)


def activation_to_proto(record: AuditRecord) -> policy_pb.PolicyActivation:
    """One policy_activation or policy_rejected entry, with the release details an activation carries."""
    event, details = record.event, record.event.details
    return policy_pb.PolicyActivation(
        index=record.index, occurred_at=event.occurred_at.isoformat(),
        activated=event.kind is AuditKind.POLICY_ACTIVATION, policy_version=event.policy_version,
        previous_version=details.get("previous_version", ""), trigger=details.get("trigger", ""),
        caller=event.caller, user=event.user, reason=event.reason, release_id=details.get("release_id", ""),
        proposed_by=details.get("proposed_by", ""), released_by=details.get("released_by", ""),
        approvers=[a for a in details.get("approvers", "").split(",") if a],
        diff_summary=details.get("diff_summary", ""))


def vocabulary_to_proto(snapshot: PolicySnapshot, today: date) -> policy_pb.GetVocabularyResponse:
    """Every declared name of `snapshot` (no personal data), lists sorted by name, agreements by end date."""
    response = policy_pb.GetVocabularyResponse(
        policy_version=snapshot.version,
        agencies=[policy_pb.VocabularyAgency(name=a.name, title=a.title, holds_records=a.holds_records, area=a.area)
                  for _, a in sorted(snapshot.agencies.items())],
        roles=[policy_pb.VocabularyRole(name=r.name, agency=r.agency, description=r.description, group=r.group,
                                        reviewer_kind=r.reviews, sees_records=r.sees_records)
               for _, r in sorted(snapshot.roles.items())],
        purposes=[policy_pb.VocabularyPurpose(name=p.name, description=p.description,
                                              legal_bases=list(p.legal_bases), group=p.group)
                  for _, p in sorted(snapshot.purposes.items())],
        record_categories=[policy_pb.VocabularyCategory(name=c.name, agency=c.agency, description=c.description,
                                                        group=c.group, protected=c.protected)
                           for _, c in sorted(snapshot.record_categories.items())],
        agreements=[policy_pb.VocabularyAgreement(
            name=a.name, title=a.title, parties=sorted(a.parties), purposes=sorted(a.purposes),
            valid_from=a.valid_from.isoformat(), valid_until=a.valid_until.isoformat(),
            days_left=(a.valid_until - today).days, cross_area=a.cross_area)
            for a in sorted(snapshot.agreements.values(), key=lambda a: (a.valid_until, a.name))],
        areas=[policy_pb.VocabularyArea(name=a.name, title=a.title) for _, a in sorted(snapshot.areas.items())],
    )
    if snapshot.workflow is not None:
        response.mashes.extend(
            policy_pb.VocabularyMash(
                name=m.name, subject=m.subject, ratings=list(m.ratings),
                decisions=[policy_pb.VocabularyDecision(name=d.name, meaning=d.meaning,
                                                        receiving_role=d.receiving_role)
                           for d in m.decisions.values()])
            for _, m in sorted(snapshot.workflow.mashes.items()))
    return response
