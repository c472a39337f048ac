"""What a review is: the request that needed it, what is held back, and the one decision that settles it."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from gateway.domain import DisclosureLevel
from gateway.errors import GatewayError, NotFound


class ReviewState(enum.Enum):
    """Where a review stands; every state but PENDING_REVIEW is final."""

    PENDING_REVIEW = "PENDING_REVIEW"
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"
    EXPIRED = "EXPIRED"  # declined automatically: not decided in time


@dataclass(frozen=True, slots=True)
class Review:
    """One agency's answer to one request, held back until a reviewer of that agency decides.

    Holds no identifier in clear: the subject travels sealed, bound to the request id.
    """

    review_id: str
    request_id: str
    agency: str  # the owning agency, whose reviewers decide
    requested: Mapping[str, DisclosureLevel]  # record category -> the level an approval may release
    granted: DisclosureLevel  # what the requester already got from this agency without review
    caller: str  # the requester's certificate identity
    user: str
    role: str
    requester_agency: str
    purpose: str
    legal_basis: str
    agreement: str
    case_reference: str
    sealed_identifiers: str
    policy_version: str
    created_at: datetime
    deadline: datetime
    escalate_at: datetime | None = None
    referral_id: str = ""
    rating: str = ""
    state: ReviewState = ReviewState.PENDING_REVIEW
    decided_by: str = ""  # the reviewer's user name; "" for an automatic decline
    decided_role: str = ""
    decided_at: datetime | None = None
    approved: Mapping[str, DisclosureLevel] = field(default_factory=dict)  # category -> level released
    reason: str = ""

    @property
    def pending(self) -> bool:
        return self.state is ReviewState.PENDING_REVIEW


class ReviewNotFound(NotFound):
    """No review has that id (or the caller may not know of it)."""


class ReviewStoreError(GatewayError):
    """The review store failed (unreachable, or refused a write for a reason other than a decided review)."""


class ReviewAlreadyDecided(GatewayError):
    """Someone else decided the review first; carries the decision that won."""

    def __init__(self, winner: Review) -> None:
        self.winner = winner
        who = f" by {winner.decided_role}" if winner.decided_role else ""
        super().__init__(f"review {winner.review_id} was already decided{who}: {winner.state.value}")
