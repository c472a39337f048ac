"""The review store port, the row codec both SQL backends share, and choosing a backend from its URL.

A decision is a compare-and-set on the state: of two reviewers deciding at once exactly one write lands,
and the other is told which decision won.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from gateway.domain import DisclosureLevel
from gateway.review.model import Review, ReviewAlreadyDecided, ReviewNotFound, ReviewState, ReviewStoreError
from gateway.workflow.store import format_time, parse_time

PENDING = ReviewState.PENDING_REVIEW.value
COLUMNS = ("review_id", "agency", "state", "deadline", "created_at", "doc")
SELECT = ", ".join(COLUMNS)
ORDER = "ORDER BY deadline, created_at, review_id"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS reviews (review_id TEXT PRIMARY KEY, agency TEXT NOT NULL, state TEXT NOT NULL, "
    "deadline TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS reviews_pending ON reviews (state, agency, deadline, created_at)",
)


class ReviewStore(Protocol):
    """Where reviews live; they survive restarts."""

    async def create(self, reviews: Sequence[Review]) -> None:
        """Insert new pending reviews atomically; ReviewStoreError if an id exists."""
        ...

    async def get(self, review_id: str) -> Review | None: ...

    async def pending(self, agency: str, *, limit: int) -> list[Review]:
        """The agency's undecided reviews, nearest deadline (then oldest) first."""
        ...

    async def due(self, now: datetime, *, limit: int) -> list[Review]:
        """Undecided reviews of any agency whose deadline is not after `now`, nearest deadline first."""
        ...

    async def decide(self, decided: Review) -> Review:
        """Store the decision if the review is still pending; else ReviewAlreadyDecided with the winner."""
        ...

    async def close(self) -> None: ...


def to_row(review: Review) -> tuple[str, str, str, str, str, str]:
    doc = {
        "review_id": review.review_id, "request_id": review.request_id, "agency": review.agency,
        "requested": {c: lvl.name for c, lvl in review.requested.items()}, "granted": review.granted.name,
        "caller": review.caller, "user": review.user, "role": review.role,
        "requester_agency": review.requester_agency, "purpose": review.purpose, "legal_basis": review.legal_basis,
        "agreement": review.agreement, "case_reference": review.case_reference,
        "sealed_identifiers": review.sealed_identifiers, "policy_version": review.policy_version,
        "created_at": format_time(review.created_at), "deadline": format_time(review.deadline),
        "escalate_at": format_time(review.escalate_at), "referral_id": review.referral_id, "rating": review.rating,
        "state": review.state.value, "decided_by": review.decided_by, "decided_role": review.decided_role,
        "decided_at": format_time(review.decided_at),
        "approved": {c: lvl.name for c, lvl in review.approved.items()}, "reason": review.reason,
    }
    created, deadline = format_time(review.created_at), format_time(review.deadline)
    assert created is not None
    assert deadline is not None
    return (review.review_id, review.agency, review.state.value, deadline, created,
            json.dumps(doc, sort_keys=True, separators=(",", ":")))


def from_row(row: Sequence[Any]) -> Review:
    try:
        doc = json.loads(row[5])
        created, deadline = parse_time(doc["created_at"]), parse_time(doc["deadline"])
        assert created is not None
        assert deadline is not None
        return Review(
            review_id=doc["review_id"], request_id=doc["request_id"], agency=doc["agency"],
            requested={c: DisclosureLevel[v] for c, v in doc["requested"].items()},
            granted=DisclosureLevel[doc["granted"]], caller=doc["caller"], user=doc["user"], role=doc["role"],
            requester_agency=doc["requester_agency"], purpose=doc["purpose"], legal_basis=doc["legal_basis"],
            agreement=doc["agreement"], case_reference=doc["case_reference"],
            sealed_identifiers=doc["sealed_identifiers"], policy_version=doc["policy_version"],
            created_at=created, deadline=deadline, escalate_at=parse_time(doc["escalate_at"]),
            referral_id=doc["referral_id"], rating=doc["rating"], state=ReviewState(doc["state"]),
            decided_by=doc["decided_by"], decided_role=doc["decided_role"], decided_at=parse_time(doc["decided_at"]),
            approved={c: DisclosureLevel[v] for c, v in doc["approved"].items()}, reason=doc["reason"],
        )
    except (KeyError, ValueError, TypeError, AssertionError) as exc:
        raise ReviewStoreError("a stored review cannot be read") from exc


def settle(decided: Review, changed: int, winner: Sequence[Any] | None) -> Review:
    """The outcome of a compare-and-set decision: the stored decision, or the one that was there first."""
    if changed:
        return decided
    if winner is None:
        raise ReviewNotFound("no review has that id")
    raise ReviewAlreadyDecided(from_row(winner))


async def open_review_store(url: str) -> ReviewStore:
    """A store for ``sqlite:///path`` or ``postgresql://…`` (the same URLs as the audit store)."""
    if url.startswith("sqlite:"):
        from gateway.review.sqlite_store import SqliteReviewStore

        return await SqliteReviewStore.open(url)
    if url.startswith(("postgresql:", "postgres:")):
        from gateway.review.postgres_store import PostgresReviewStore

        return await PostgresReviewStore.open(url)
    raise ReviewStoreError("review store URL must start with sqlite: or postgresql:")
