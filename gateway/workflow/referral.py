"""Referrals and their life: the states, the actions that move between them, and the history each keeps."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from gateway.domain import SubjectIdentifiers
from gateway.errors import GatewayError


class State(enum.Enum):
    """Where a referral is in the MASH process."""

    RECEIVED = "RECEIVED"
    SCREENED = "SCREENED"  # screened and not open to children's social care (or left for a person)
    ROUTED = "ROUTED"  # sent straight to the team holding an open case
    RATED = "RATED"
    RESEARCHING = "RESEARCHING"
    DECIDED = "DECIDED"
    CLOSED = "CLOSED"
    WITHDRAWN = "WITHDRAWN"
    MERGED = "MERGED"  # a duplicate folded into another referral

    @property
    def terminal(self) -> bool:
        return self in (State.CLOSED, State.WITHDRAWN, State.MERGED)


class Action(enum.Enum):
    """What a person (or the gateway, for screening) does to a referral."""

    SUBMIT = "submit"
    SCREEN = "screen"
    ROUTE = "route"
    RATE = "rate"
    START_RESEARCH = "start_research"
    RECORD_BREACH = "record_breach"  # the gateway saw a running deadline pass
    RECORD_ANSWERS = "record_answers"  # a linked research query was answered by some agencies
    COMPLETE_RESEARCH = "complete_research"
    DECIDE = "decide"
    CLOSE = "close"
    WITHDRAW = "withdraw"
    MERGE = "merge"


_OPEN = frozenset(s for s in State if not s.terminal)
TRANSITIONS: dict[Action, tuple[frozenset[State], State | None]] = {
    # action: (states it may start from, state it leads to; None keeps the state)
    Action.SCREEN: (frozenset({State.RECEIVED}), State.SCREENED),
    Action.ROUTE: (frozenset({State.RECEIVED, State.SCREENED}), State.ROUTED),
    Action.RATE: (frozenset({State.SCREENED, State.RATED}), State.RATED),
    Action.START_RESEARCH: (frozenset({State.RATED}), State.RESEARCHING),
    Action.RECORD_ANSWERS: (frozenset({State.RESEARCHING}), None),
    Action.RECORD_BREACH: (frozenset({State.RECEIVED, State.SCREENED, State.RATED, State.RESEARCHING}), None),
    Action.COMPLETE_RESEARCH: (frozenset({State.RESEARCHING}), None),
    Action.DECIDE: (frozenset({State.RESEARCHING}), State.DECIDED),
    Action.CLOSE: (frozenset({State.ROUTED, State.DECIDED}), State.CLOSED),
    Action.WITHDRAW: (_OPEN, State.WITHDRAWN),
    Action.MERGE: (_OPEN, State.MERGED),
}


class InvalidTransition(GatewayError):
    """The action is not allowed from the referral's current state (FAILED_PRECONDITION)."""

    def __init__(self, referral_id: str, action: Action, current: State, why: str = "") -> None:
        self.referral_id = referral_id
        self.action = action
        self.current = current
        super().__init__(why or f"cannot {action.value.replace('_', ' ')} a referral in state {current.value}")


class VersionConflict(GatewayError):
    """Someone else changed the referral since it was read; read it again and decide again (ABORTED)."""


def next_state(referral: Referral, action: Action) -> State:
    """The state `action` leads to from the referral's state; InvalidTransition when it may not be taken."""
    sources, target = TRANSITIONS[action]
    if referral.state not in sources:
        raise InvalidTransition(referral.referral_id, action, referral.state)
    if action is Action.DECIDE and referral.research_completed_at is None:
        raise InvalidTransition(referral.referral_id, action, referral.state,
                                "research must be recorded complete before the decision")
    return referral.state if target is None else target


@dataclass(frozen=True, slots=True)
class Content:
    """The personal data of a referral; sealed at rest, never logged, never in an audit entry."""

    subject: SubjectIdentifiers
    household: tuple[SubjectIdentifiers, ...] = ()
    concern: str = ""
    decision_reason: str = ""


@dataclass(frozen=True, slots=True)
class Referral:
    """A notification to the MASH and everything decided about it. Only `content` is personal data."""

    referral_id: str
    mash: str  # which MASH (e.g. children, adults) as named in workflow.yaml
    source_agency: str
    referrer: str  # the referrer's user id at the source agency
    received_at: datetime
    content: Content
    categories: tuple[str, ...] = ()  # concern categories, e.g. domestic_abuse, neglect
    borough: str = ""
    state: State = State.RECEIVED
    version: int = 0
    updated_at: datetime | None = None
    screening: str = ""  # ScreenResult name of the open-case check, empty before it ran
    team: str = ""  # the receiving or allocated team
    worker: str = ""  # the allocated worker, when a case is open
    routing: str = ""  # "automatic" or "manual"
    rating: str = ""
    rated_at: datetime | None = None
    research_due: datetime | None = None
    decision_due: datetime | None = None
    research_completed_at: datetime | None = None
    agencies_answered: tuple[str, ...] = ()
    decision: str = ""
    decided_at: datetime | None = None
    closed_at: datetime | None = None  # also set when withdrawn or merged: retention counts from here
    merged_into: str = ""
    breach_recorded_for: datetime | None = None  # the deadline whose breach has been audited

    def due(self) -> datetime | None:
        """The next deadline still running: research until it is complete, then the decision."""
        if self.state.terminal or self.state in (State.DECIDED, State.ROUTED):
            return None
        if self.research_completed_at is None and self.research_due is not None:
            return self.research_due
        return self.decision_due

    def overdue(self, now: datetime) -> bool:
        due = self.due()
        return due is not None and now > due

    def with_answers(self, agencies: tuple[str, ...]) -> Referral:
        return replace(self, agencies_answered=tuple(sorted({*self.agencies_answered, *agencies})))


@dataclass(frozen=True, slots=True)
class Transition:
    """One step in a referral's history: who moved it, in which role, when, from where to where, and why.

    The reason is a coded summary (e.g. ``rating=red``), never free text: it goes into the audit log.
    """

    referral_id: str
    action: Action
    from_state: State | None
    to_state: State
    at: datetime
    actor: str  # certificate identity, or "gateway" for automatic steps
    user: str
    role: str
    reason: str = ""
    version: int = 0  # the referral's version after this step


class NoticeKind(enum.Enum):
    """Why a receiver is told about a referral."""

    ROUTED = "ROUTED"  # an open case's team receives a new referral
    DECISION = "DECISION"  # a receiving team has a decision and its pertinent-information package
    OWNER_NOTICE = "OWNER_NOTICE"  # an agency asked to be told when its information is disclosed
    # Owner review (see gateway.review): the notice names the review, and its referral when it has one.
    REVIEW_REQUESTED = "REVIEW_REQUESTED"  # the owning agency's reviewers have a new review
    REVIEW_DECIDED = "REVIEW_DECIDED"  # the requester's review was approved or declined
    REVIEW_EXPIRED = "REVIEW_EXPIRED"  # nobody decided in time: told to the requester and the owning agency


@dataclass(frozen=True, slots=True)
class Notification:
    """A notice for one receiver (a certificate identity). References only, never record content."""

    recipient: str
    kind: NoticeKind
    referral_id: str
    created_at: datetime
    team: str = ""
    worker: str = ""
    seq: int = 0  # assigned by the outbox; receivers acknowledge up to a sequence number
    review_id: str = ""  # set on review notices
