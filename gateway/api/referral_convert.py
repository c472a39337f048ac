"""Referral wire messages to and from the workflow's domain objects."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.api.convert import subject_from_proto, subject_to_proto
from gateway.errors import FieldViolation, InvalidRequest
from gateway.generated.mash.gateway.v1 import referral_service_pb2 as ref_pb
from gateway.workflow.referral import NoticeKind, Notification, State, Transition
from gateway.workflow.service import ReferralView, SubmitCommand
from gateway.workflow.store import QueueFilter

_STATES = {state: ref_pb.ReferralState.Value(f"REFERRAL_STATE_{state.value}") for state in State}
_STATES_BACK = {v: k for k, v in _STATES.items()}
_NOTICES = {kind: ref_pb.NotificationKind.Value(f"NOTIFICATION_KIND_{kind.value}") for kind in NoticeKind}


def _ts(when: datetime | None) -> Timestamp | None:
    if when is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(when.astimezone(UTC))
    return ts


def _from_ts(ts: Timestamp, field: str) -> datetime:
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):  # seconds or nanos out of range
        raise InvalidRequest([FieldViolation(field, "is not a valid timestamp")]) from None


def state_from_proto(value: int) -> State | None:
    """The domain state, or None for UNSPECIFIED and numbers this gateway does not know."""
    return _STATES_BACK.get(value)  # type: ignore[call-overload, no-any-return]


def submit_from_proto(msg: ref_pb.SubmitReferralRequest) -> SubmitCommand:
    return SubmitCommand(
        mash=msg.mash, subject=subject_from_proto(msg.subject),
        household=tuple(subject_from_proto(p) for p in msg.household), concern=msg.concern,
        categories=tuple(msg.categories), borough=msg.borough,
        received_at=_from_ts(msg.received_at, "received_at") if msg.HasField("received_at") else None,
    )


def filter_from_proto(msg: ref_pb.ListReferralsRequest, now: datetime) -> QueueFilter:
    """The queue filter; unknown state numbers are dropped here and reported by the servicer."""
    return QueueFilter(
        mash=msg.mash, states=tuple(s for s in (state_from_proto(v) for v in msg.states) if s is not None),
        ratings=tuple(msg.ratings), team=msg.team, borough=msg.borough,
        due_before=_from_ts(msg.due_before, "due_before") if msg.HasField("due_before") else None,
        overdue_at=now if msg.overdue_only else None,
    )


def referral_to_proto(view: ReferralView, now: datetime) -> ref_pb.Referral:
    """A referral as the caller may see it: content only when the caller's role may see content."""
    r = view.referral
    msg = ref_pb.Referral(
        referral_id=r.referral_id, mash=r.mash, state=_STATES[r.state], version=r.version,
        source_agency=r.source_agency, referrer=r.referrer, received_at=_ts(r.received_at),
        categories=list(r.categories), borough=r.borough, screening=r.screening, team=r.team, worker=r.worker,
        routing=r.routing, rating=r.rating, research_due=_ts(r.research_due), decision_due=_ts(r.decision_due),
        research_completed_at=_ts(r.research_completed_at), agencies_answered=list(r.agencies_answered),
        decision=r.decision, decided_at=_ts(r.decided_at), merged_into=r.merged_into, due=_ts(r.due()),
        overdue=r.overdue(now),
        content_visible=view.content_visible,
    )
    if view.content_visible:
        msg.subject.CopyFrom(subject_to_proto(r.content.subject))
        msg.household.extend(subject_to_proto(p) for p in r.content.household)
        msg.concern = r.content.concern
        msg.decision_reason = r.content.decision_reason
    return msg


def transition_to_proto(t: Transition) -> ref_pb.ReferralTransition:
    return ref_pb.ReferralTransition(
        action=t.action.value,
        from_state=_STATES[t.from_state] if t.from_state else ref_pb.REFERRAL_STATE_UNSPECIFIED,
        to_state=_STATES[t.to_state], at=_ts(t.at), actor=t.actor, user=t.user, role=t.role, reason=t.reason,
        version=t.version,
    )


def notification_to_proto(n: Notification) -> ref_pb.WatchNotificationsResponse:
    return ref_pb.WatchNotificationsResponse(
        sequence=n.seq, kind=_NOTICES[n.kind], referral_id=n.referral_id, team=n.team, worker=n.worker,
        created_at=_ts(n.created_at), review_id=n.review_id,
    )
