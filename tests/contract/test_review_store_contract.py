"""The review store conformance suite: SQLite and PostgreSQL keep, list, expire and decide reviews alike."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from store_backends import postgres_url

from gateway.domain import DisclosureLevel
from gateway.review.model import Review, ReviewAlreadyDecided, ReviewNotFound, ReviewState, ReviewStoreError
from gateway.review.store import ReviewStore, open_review_store

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@dataclass
class ReviewBackend:
    """A review store under test: how to open (another handle on) it."""

    url: str
    opened: list[ReviewStore] = field(default_factory=list)

    async def open(self) -> ReviewStore:
        store = await open_review_store(self.url)
        self.opened.append(store)
        return store


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReviewBackend]:
    """Each SQL review store in turn, empty; every handle the test opened is closed afterwards."""
    if request.param == "sqlite":
        chosen = ReviewBackend(f"sqlite:///{tmp_path / 'reviews.sqlite'}")
    else:
        chosen = ReviewBackend(postgres_url(request.getfixturevalue("postgres_schema")))
    yield chosen
    for store in chosen.opened:
        await store.close()


def make_review(n: int, **overrides: Any) -> Review:
    """Review number `n`, created `n` minutes after T0 with a deadline a day later."""
    base: dict[str, Any] = {
        "review_id": f"rev-{n:04d}", "request_id": f"req-{n:04d}", "agency": "health",
        "requested": {"health.mental_health": DisclosureLevel.PERTINENT}, "granted": DisclosureLevel.EXISTS,
        "caller": "spiffe://mash.local/agency/police/system/case-system", "user": "dc.1",
        "role": "mash_researcher_police",
        "requester_agency": "police", "purpose": "safeguarding_screening", "legal_basis": "uk_gdpr_6_1_e",
        "agreement": "mash-isa-2026", "case_reference": "CASE-1", "sealed_identifiers": "k1:c2VhbGVk",
        "policy_version": "sha256:abc", "created_at": T0 + timedelta(minutes=n),
        "deadline": T0 + timedelta(days=1, minutes=n),
    }
    base.update(overrides)
    return Review(**base)


def approved(review: Review, by: str = "dp.1", level: DisclosureLevel = DisclosureLevel.PERTINENT) -> Review:
    return dataclasses.replace(review, state=ReviewState.APPROVED, decided_by=by,
                               decided_role="health_designated_professional", decided_at=T0 + timedelta(hours=1),
                               approved=dict.fromkeys(review.requested, level))


async def test_a_review_round_trips_and_survives_reopening(backend: ReviewBackend) -> None:
    """Every field of a stored review reads back equal, also through a new handle (a restart)."""
    review = make_review(1, escalate_at=T0 + timedelta(hours=8), referral_id="ref-1", rating="red")
    store = await backend.open()
    await store.create([review])
    await store.close()
    backend.opened.remove(store)
    again = await backend.open()
    assert await again.get(review.review_id) == review
    assert await again.get("rev-none") is None


async def test_a_duplicate_id_is_refused(backend: ReviewBackend) -> None:
    """Creating a review whose id exists fails and leaves the stored one unchanged."""
    store = await backend.open()
    await store.create([make_review(1)])
    with pytest.raises(ReviewStoreError):
        await store.create([make_review(1, agency="police")])
    stored = await store.get("rev-0001")
    assert stored is not None
    assert stored.agency == "health"


async def test_pending_lists_one_agency_nearest_deadline_then_oldest_first(backend: ReviewBackend) -> None:
    """Only the agency's undecided reviews are listed, by deadline then creation time."""
    store = await backend.open()
    late = make_review(1, deadline=T0 + timedelta(days=3))
    soon = make_review(2, deadline=T0 + timedelta(hours=2))
    same_a = make_review(3, deadline=T0 + timedelta(days=2))
    same_b = make_review(4, deadline=T0 + timedelta(days=2))
    other = make_review(5, agency="police")
    done = make_review(6)
    await store.create([late, soon, same_b, same_a, other, done])
    await store.decide(approved(done))
    listed = await store.pending("health", limit=10)
    assert [r.review_id for r in listed] == ["rev-0002", "rev-0003", "rev-0004", "rev-0001"]
    assert [r.review_id for r in await store.pending("police", limit=10)] == ["rev-0005"]
    assert len(await store.pending("health", limit=2)) == 2


async def test_due_lists_undecided_reviews_past_their_deadline(backend: ReviewBackend) -> None:
    """A review is due once its deadline is reached, whatever its agency; decided ones never are."""
    store = await backend.open()
    first, second, decided = make_review(1), make_review(2), make_review(3)
    await store.create([first, second, decided])
    await store.decide(approved(decided))
    assert await store.due(first.deadline - timedelta(seconds=1), limit=10) == []
    assert [r.review_id for r in await store.due(second.deadline, limit=10)] == ["rev-0001", "rev-0002"]


async def test_two_reviewers_deciding_at_once_exactly_one_wins(backend: ReviewBackend) -> None:
    """Two handles decide the same review concurrently: one decision is stored, the other learns the winner's."""
    one, two = await backend.open(), await backend.open()
    review = make_review(1)
    await one.create([review])
    approve = approved(review, by="dp.1")
    decline = dataclasses.replace(review, state=ReviewState.DECLINED, decided_by="dp.2",
                                  decided_role="health_designated_professional", decided_at=T0, reason="no")
    results = await asyncio.gather(one.decide(approve), two.decide(decline), return_exceptions=True)
    winners = [r for r in results if isinstance(r, Review)]
    losers = [r for r in results if isinstance(r, ReviewAlreadyDecided)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert losers[0].winner == winners[0]
    assert await one.get(review.review_id) == winners[0]


async def test_a_decided_review_cannot_be_decided_again(backend: ReviewBackend) -> None:
    """A second decision after the first is refused with the first decision, which stays stored."""
    store = await backend.open()
    review = make_review(1)
    await store.create([review])
    first = await store.decide(approved(review, by="dp.1"))
    with pytest.raises(ReviewAlreadyDecided) as raised:
        await store.decide(approved(review, by="dp.2", level=DisclosureLevel.EXISTS))
    assert raised.value.winner == first
    assert await store.get(review.review_id) == first


async def test_deciding_an_unknown_review_is_not_found(backend: ReviewBackend) -> None:
    """A decision about an id nobody created is ReviewNotFound, and nothing is stored."""
    store = await backend.open()
    with pytest.raises(ReviewNotFound):
        await store.decide(approved(make_review(9)))
    assert await store.get("rev-0009") is None
