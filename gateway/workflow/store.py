"""The referral store port, the queue filter, and the row codec and SQL both SQL backends share.

Only `Content` (identifiers, household, concern text, decision reason) is personal data; it is sealed
before it reaches a backend and opened after it leaves one, so neither backend ever holds it in clear.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.errors import GatewayError, NotFound
from gateway.workflow.referral import Action, NoticeKind, Notification, Referral, State, Transition
from gateway.workflow.sealing import ContentSealer

__all__ = [
    "QueueFilter",
    "QueuePage",
    "ReferralNotFound",
    "ReferralStore",
    "ReferralStoreError",
    "open_referral_store",
]


class ReferralStoreError(GatewayError):
    """The referral store failed (unreachable, or refused a write for a reason other than a conflict)."""


class ReferralNotFound(NotFound):
    """No referral has that id (or it has been purged)."""


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """Which referrals a queue shows; every field narrows it, empty fields do not."""

    mash: str = ""
    states: tuple[State, ...] = ()  # empty: every state that is not closed, withdrawn or merged
    ratings: tuple[str, ...] = ()
    team: str = ""
    borough: str = ""
    due_before: datetime | None = None
    overdue_at: datetime | None = None  # only referrals whose running deadline is before this instant


@dataclass(frozen=True, slots=True)
class QueuePage:
    """One page of a queue, soonest deadline first, and how many referrals the whole queue holds."""

    referrals: tuple[Referral, ...]
    total: int


class ReferralStore(Protocol):
    """Where referrals and their histories live. Every change is a compare-and-set on the version."""

    async def create(self, referral: Referral, history: Sequence[Transition],
                     notifications: Sequence[Notification] = ()) -> None:
        """Insert a new referral, its first history entries (e.g. submitted, then screened) and its notices,
        atomically.

        ReferralStoreError if the id exists.
        """
        ...

    async def get(self, referral_id: str) -> Referral:
        """The referral; ReferralNotFound if there is none."""
        ...

    async def update(self, referral: Referral, transition: Transition,
                     notifications: Sequence[Notification] = ()) -> None:
        """Store `referral` (whose version is one more than the stored one), its history entry and notices.

        All or nothing: a notice is in the outbox exactly when the change it announces is stored.

        VersionConflict if the stored version is no longer `referral.version - 1`.
        """
        ...

    async def history(self, referral_id: str) -> list[Transition]:
        """Every step of the referral in order; empty if it does not exist."""
        ...

    async def queue(self, where: QueueFilter, *, limit: int, offset: int = 0) -> QueuePage:
        ...

    async def purge(self, closed_before: datetime, *, dry_run: bool = False) -> list[str]:
        """Delete referrals closed, withdrawn or merged before the instant, with their histories; their ids.

        With `dry_run` nothing is deleted: the ids are those a purge would delete now.
        """
        ...

    async def post(self, notifications: Sequence[Notification]) -> None:
        """Add notices that belong to no referral change (e.g. owner review notices) to the outbox."""
        ...

    async def notifications(self, recipient: str, *, after: int, limit: int) -> list[Notification]:
        """The recipient's notices with a sequence number above `after`, oldest first."""
        ...

    async def acknowledge(self, recipient: str, seq: int) -> int:
        """Record that the recipient has every notice up to `seq`; the acknowledged position (never lowered)."""
        ...

    async def acknowledged(self, recipient: str) -> int:
        """The highest sequence number the recipient has acknowledged (0 if none)."""
        ...

    async def close(self) -> None: ...


def format_time(value: datetime | None) -> str | None:
    """Fixed-width UTC text, so that text order is time order in both SQL dialects."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value)  # the "Z" suffix makes it UTC; far faster than strptime


_TIMES = ("received_at", "updated_at", "rated_at", "research_due", "decision_due", "research_completed_at",
          "decided_at", "closed_at", "breach_recorded_for")
_TEXTS = ("mash", "source_agency", "referrer", "borough", "screening", "team", "worker", "routing", "rating",
          "decision", "merged_into")

COLUMNS = ("referral_id", "mash", "state", "version", "received_at", "is_open", "due_key", "closed_at", "rating",
           "team", "borough", "doc", "sealed")
NO_DEADLINE = "~"  # sorts after every time, so referrals without a running deadline come last
HISTORY_COLUMNS = ("referral_id", "version", "at", "action", "from_state", "to_state", "actor", "user_id",
                   "role", "reason")


def referral_row(referral: Referral, sealer: ContentSealer) -> tuple[Any, ...]:
    """The row for `referral`, in COLUMNS order; the content is sealed to the referral id."""
    doc: dict[str, Any] = {name: getattr(referral, name) for name in _TEXTS}
    doc.update({name: format_time(getattr(referral, name)) for name in _TIMES})
    doc["categories"] = list(referral.categories)
    doc["agencies_answered"] = list(referral.agencies_answered)
    return (
        referral.referral_id, referral.mash, referral.state.value, referral.version,
        format_time(referral.received_at), int(not referral.state.terminal),
        format_time(referral.due()) or NO_DEADLINE, format_time(referral.closed_at),
        referral.rating, referral.team, referral.borough,
        json.dumps(doc, sort_keys=True, separators=(",", ":")),
        sealer.seal(referral.content, referral_id=referral.referral_id),
    )


def referral_from_row(row: Sequence[Any], sealer: ContentSealer) -> Referral:
    """The referral a COLUMNS-ordered row holds, its content opened (SealingError if it will not open)."""
    values = dict(zip(COLUMNS, row, strict=True))
    doc = json.loads(values["doc"])
    fields: dict[str, Any] = {name: parse_time(doc.get(name)) for name in _TIMES}
    fields.update({name: str(doc.get(name, "")) for name in _TEXTS})
    return Referral(
        referral_id=values["referral_id"], state=State(values["state"]), version=int(values["version"]),
        content=sealer.open(values["sealed"], referral_id=values["referral_id"]),
        categories=tuple(doc.get("categories", ())), agencies_answered=tuple(doc.get("agencies_answered", ())),
        **fields,
    )


def history_row(t: Transition) -> tuple[Any, ...]:
    return (t.referral_id, t.version, format_time(t.at), t.action.value,
            t.from_state.value if t.from_state else None, t.to_state.value, t.actor, t.user, t.role, t.reason)


def transition_from_row(row: Sequence[Any]) -> Transition:
    v = dict(zip(HISTORY_COLUMNS, row, strict=True))
    at = parse_time(v["at"])
    assert at is not None
    return Transition(
        referral_id=v["referral_id"], action=Action(v["action"]),
        from_state=State(v["from_state"]) if v["from_state"] else None, to_state=State(v["to_state"]), at=at,
        actor=v["actor"], user=v["user_id"], role=v["role"], reason=v["reason"], version=int(v["version"]),
    )


OUTBOX_COLUMNS = ("seq", "recipient", "kind", "referral_id", "team", "worker", "created_at", "review_id")


def outbox_row(n: Notification) -> tuple[Any, ...]:
    """The row for a notice without its sequence number (the outbox assigns it)."""
    return (n.recipient, n.kind.value, n.referral_id, n.team, n.worker, format_time(n.created_at), n.review_id)


def notification_from_row(row: Sequence[Any]) -> Notification:
    v = dict(zip(OUTBOX_COLUMNS, row, strict=True))
    created = parse_time(v["created_at"])
    assert created is not None
    return Notification(recipient=v["recipient"], kind=NoticeKind(v["kind"]), referral_id=v["referral_id"],
                        created_at=created, team=v["team"], worker=v["worker"], seq=int(v["seq"]),
                        review_id=v["review_id"])


def queue_where(where: QueueFilter) -> tuple[str, list[Any]]:
    """The WHERE clause (with ``?`` placeholders) and its parameters for a queue filter."""
    clauses: list[str] = []
    params: list[Any] = []
    if where.states:
        clauses.append(f"state IN ({', '.join('?' for _ in where.states)})")
        params.extend(s.value for s in where.states)
    else:
        clauses.append("is_open = 1")
    if where.mash:
        clauses.append("mash = ?")
        params.append(where.mash)
    if where.ratings:
        clauses.append(f"rating IN ({', '.join('?' for _ in where.ratings)})")
        params.extend(where.ratings)
    if where.team:
        clauses.append("team = ?")
        params.append(where.team)
    if where.borough:
        clauses.append("borough = ?")
        params.append(where.borough)
    for before in (where.due_before, where.overdue_at):
        if before is not None:
            clauses.append("due_key < ?")
            params.append(format_time(before))
    return " AND ".join(clauses), params


SELECT_COLUMNS = ", ".join(COLUMNS)
QUEUE_ORDER = "ORDER BY due_key, received_at, referral_id"


def page_sql(clause: str) -> str:
    """A page of the queue: the order is found on the narrow index, then only the page's wide rows are read."""
    return (f"SELECT {', '.join('r.' + c for c in COLUMNS)} FROM referrals r JOIN ("  # noqa: S608 (fixed text)
            f"SELECT referral_id AS pick, due_key AS d, received_at AS rcv FROM referrals WHERE {clause} "
            f"{QUEUE_ORDER} LIMIT ? OFFSET ?) p ON r.referral_id = p.pick "
            "ORDER BY p.d, p.rcv, p.pick")
TERMINAL_STATES = tuple(s.value for s in State if s.terminal)


async def open_referral_store(url: str, sealer: ContentSealer) -> ReferralStore:
    """A store for `url`: ``sqlite:///path`` or ``postgresql://…`` (the same URLs as the audit store)."""
    if url.startswith("sqlite:"):
        from gateway.workflow.sqlite_store import SqliteReferralStore

        return await SqliteReferralStore.open(url, sealer)
    if url.startswith(("postgresql:", "postgres:")):
        from gateway.workflow.postgres_store import PostgresReferralStore

        return await PostgresReferralStore.open(url, sealer)
    raise ReferralStoreError("referral store URL must start with sqlite: or postgresql:")
