"""The referral store conformance suite: SQLite and PostgreSQL run the same tests."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from referral_backends import CONCERN, FAMILY_NAME, NHS_NUMBER, T0, ReferralBackend, make_referral, step
from store_backends import postgres_url

from gateway.audit.sealing import SealingError
from gateway.keyring import Keyring
from gateway.workflow.referral import Action, NoticeKind, Notification, State, VersionConflict
from gateway.workflow.store import QueueFilter, ReferralNotFound, ReferralStoreError

RING = Keyring.generate("k1")


def _sqlite_sql(path: Path) -> Any:
    def run(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(path) as conn:
            return conn.execute(sql, params).fetchall()
    return run


def _postgres_sql(url: str) -> Any:
    def run(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s").encode(), params)
            return cur.fetchall() if cur.description else []
    return run


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReferralBackend]:
    """Each SQL referral store in turn, empty; every handle the test opened is closed afterwards."""
    if request.param == "sqlite":
        path = tmp_path / "referrals.sqlite"
        chosen = ReferralBackend("sqlite", f"sqlite:///{path}", RING, _sqlite_sql(path))
    else:
        url = postgres_url(request.getfixturevalue("postgres_schema"))
        chosen = ReferralBackend("postgres", url, RING, _postgres_sql(url))
    yield chosen
    for store in chosen.opened:
        await store.close()


async def _created(store: Any, n: int, **overrides: Any) -> Any:
    referral = make_referral(n, **overrides)
    await store.create(referral, [step(referral, Action.SUBMIT, None)])
    return referral


async def test_a_created_referral_reads_back_exactly(backend: ReferralBackend) -> None:
    """Every field, the sealed content included, comes back as it was stored."""
    store = await backend.open()
    referral = make_referral(1, rating="red", research_due=T0 + timedelta(hours=4),
                             agencies_answered=("health", "police"))
    await store.create(referral, [step(referral, Action.SUBMIT, None)])
    assert await store.get("ref-0001") == referral


async def test_identifiers_and_concern_are_not_stored_in_clear(backend: ReferralBackend) -> None:
    """Nothing at rest holds a name, an NHS number or the concern text."""
    store = await backend.open()
    await _created(store, 1)
    raw = repr(backend.sql("SELECT * FROM referrals", ()) + backend.sql("SELECT * FROM referral_history", ()))
    for secret in (FAMILY_NAME, NHS_NUMBER, CONCERN, "Kai", "2017-03-14"):
        assert secret not in raw


async def test_old_referrals_still_open_after_the_sealing_key_is_rotated(backend: ReferralBackend) -> None:
    """A referral sealed under k1 opens with a ring whose active key is k2; new ones are sealed under k2."""
    first = await backend.open()
    old = await _created(first, 1)
    rotated = RING.rotated("k2")
    second = await backend.open(rotated)
    assert await second.get(old.referral_id) == old
    await _created(second, 2)
    (sealed,) = backend.sql("SELECT sealed FROM referrals WHERE referral_id = ?", ("ref-0002",))
    assert sealed[0].startswith("k2:")


async def test_a_referral_sealed_under_a_discarded_key_does_not_open(backend: ReferralBackend) -> None:
    """Content sealed with a key no longer in the ring raises SealingError, not garbage."""
    store = await backend.open()
    await _created(store, 1)
    stranger = await backend.open(Keyring.generate("k9"))
    with pytest.raises(SealingError):
        await stranger.get("ref-0001")


async def test_sealed_content_moved_to_another_referral_does_not_open(backend: ReferralBackend) -> None:
    """The seal is bound to the referral id: copying one referral's content onto another is detected."""
    store = await backend.open()
    await _created(store, 1)
    await _created(store, 2)
    (sealed,) = backend.sql("SELECT sealed FROM referrals WHERE referral_id = ?", ("ref-0001",))
    backend.sql("UPDATE referrals SET sealed = ? WHERE referral_id = ?", (sealed[0], "ref-0002"))
    with pytest.raises(SealingError):
        await store.get("ref-0002")


async def test_a_second_referral_with_the_same_id_is_refused(backend: ReferralBackend) -> None:
    """Creating an existing id fails and leaves the first referral and its history alone."""
    store = await backend.open()
    first = await _created(store, 1)
    with pytest.raises(ReferralStoreError):
        await _created(store, 1, referrer="someone.else")
    assert await store.get("ref-0001") == first
    assert len(await store.history("ref-0001")) == 1


async def test_a_missing_referral_is_not_found(backend: ReferralBackend) -> None:
    """get and update name a referral that does not exist: ReferralNotFound; history is empty."""
    store = await backend.open()
    with pytest.raises(ReferralNotFound):
        await store.get("ref-9999")
    ghost = make_referral(9999, version=2)
    with pytest.raises(ReferralNotFound):
        await store.update(ghost, step(ghost, Action.SCREEN, State.RECEIVED))
    assert await store.history("ref-9999") == []


async def test_updates_keep_the_whole_history_in_order(backend: ReferralBackend) -> None:
    """Each accepted update adds one history entry with who, role, when, from, to and the reason."""
    store = await backend.open()
    referral = await _created(store, 1)
    screened = replace(referral, state=State.SCREENED, version=2, screening="NOT_KNOWN")
    await store.update(screened, step(screened, Action.SCREEN, State.RECEIVED, reason="screening=NOT_KNOWN"))
    rated = replace(screened, state=State.RATED, version=3, rating="red", decision_due=T0 + timedelta(hours=4))
    await store.update(rated, step(rated, Action.RATE, State.SCREENED, reason="rating=red"))
    history = await store.history("ref-0001")
    assert [(h.action, h.from_state, h.to_state, h.version) for h in history] == [
        (Action.SUBMIT, None, State.RECEIVED, 1),
        (Action.SCREEN, State.RECEIVED, State.SCREENED, 2),
        (Action.RATE, State.SCREENED, State.RATED, 3),
    ]
    assert history[2].reason == "rating=red"
    assert history[2].role == "mash_manager"
    assert await store.get("ref-0001") == rated


async def test_an_update_from_a_stale_version_is_a_conflict_and_changes_nothing(backend: ReferralBackend) -> None:
    """Writing version 2 twice: the second is VersionConflict; its notices never reach the outbox."""
    store = await backend.open()
    referral = await _created(store, 1)
    first = replace(referral, state=State.SCREENED, version=2)
    await store.update(first, step(first, Action.SCREEN, State.RECEIVED))
    second = replace(referral, state=State.ROUTED, version=2, team="north-team")
    notice = Notification("spiffe://x/csc", NoticeKind.ROUTED, "ref-0001", T0, team="north-team")
    with pytest.raises(VersionConflict):
        await store.update(second, step(second, Action.ROUTE, State.RECEIVED), [notice])
    assert (await store.get("ref-0001")).state is State.SCREENED
    assert len(await store.history("ref-0001")) == 2
    assert await store.notifications("spiffe://x/csc", after=0, limit=10) == []


async def test_two_concurrent_transitions_from_two_handles_lose_no_update(backend: ReferralBackend) -> None:
    """Two gateways (separate connections) move the same referral at once: exactly one wins, one conflicts."""
    a, b = await backend.open(), await backend.open()
    for n in range(1, 11):
        referral = await _created(a, n)
        rate = replace(referral, state=State.RATED, version=2, rating="red")
        withdraw = replace(referral, state=State.WITHDRAWN, version=2, closed_at=T0)
        results = await asyncio.gather(
            a.update(rate, step(rate, Action.RATE, State.RECEIVED)),
            b.update(withdraw, step(withdraw, Action.WITHDRAW, State.RECEIVED)),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["NoneType", "VersionConflict"]
        stored = await b.get(referral.referral_id)
        winner = rate if results[0] is None else withdraw
        assert stored == winner
        history = await a.history(referral.referral_id)
        assert [h.to_state for h in history] == [State.RECEIVED, winner.state]


async def test_the_queue_filters_orders_by_deadline_and_counts_the_total(backend: ReferralBackend) -> None:
    """Filters narrow, the soonest deadline comes first, undated ones last, and the total ignores paging."""
    store = await backend.open()
    await _created(store, 1, state=State.RATED, rating="amber", research_due=T0 + timedelta(hours=24))
    await _created(store, 2, state=State.RATED, rating="red", research_due=T0 + timedelta(hours=4), team="t1")
    await _created(store, 3, state=State.SCREENED)
    await _created(store, 4, state=State.CLOSED, closed_at=T0)
    await _created(store, 5, state=State.RATED, rating="red", research_due=T0 + timedelta(hours=2),
                   mash="adults", borough="south")
    everything = await store.queue(QueueFilter(), limit=10)
    assert [r.referral_id for r in everything.referrals] == ["ref-0005", "ref-0002", "ref-0001", "ref-0003"]
    assert everything.total == 4
    page = await store.queue(QueueFilter(), limit=2, offset=2)
    assert [r.referral_id for r in page.referrals] == ["ref-0001", "ref-0003"]
    assert page.total == 4
    assert (await store.queue(QueueFilter(ratings=("red",)), limit=10)).total == 2
    assert (await store.queue(QueueFilter(mash="children", ratings=("red",)), limit=10)).total == 1
    assert (await store.queue(QueueFilter(team="t1"), limit=10)).total == 1
    assert (await store.queue(QueueFilter(borough="south"), limit=10)).total == 1
    assert (await store.queue(QueueFilter(states=(State.CLOSED,)), limit=10)).total == 1
    overdue = await store.queue(QueueFilter(overdue_at=T0 + timedelta(hours=5)), limit=10)
    assert [r.referral_id for r in overdue.referrals] == ["ref-0005", "ref-0002"]
    soon = await store.queue(QueueFilter(due_before=T0 + timedelta(hours=3)), limit=10)
    assert [r.referral_id for r in soon.referrals] == ["ref-0005"]


async def test_deadlines_survive_reopening_the_store(backend: ReferralBackend) -> None:
    """A deadline is stored, not recomputed: a new process sees the same instant and the same breach."""
    store = await backend.open()
    due = T0 + timedelta(hours=24)
    await _created(store, 1, state=State.RATED, rating="amber", research_due=due, decision_due=due)
    await store.close()
    backend.opened.remove(store)
    again = await backend.open()
    referral = await again.get("ref-0001")
    assert referral.due() == due
    assert not referral.overdue(due)
    assert referral.overdue(due + timedelta(seconds=1))
    assert (await again.queue(QueueFilter(overdue_at=due + timedelta(seconds=1)), limit=5)).total == 1


async def test_purge_removes_only_referrals_closed_before_the_cutoff(backend: ReferralBackend) -> None:
    """Closed, withdrawn and merged referrals past retention go with their history; open ones stay."""
    store = await backend.open()
    await _created(store, 1, state=State.CLOSED, closed_at=T0)
    await _created(store, 2, state=State.WITHDRAWN, closed_at=T0 + timedelta(days=1))
    await _created(store, 3, state=State.MERGED, closed_at=T0 + timedelta(days=30), merged_into="ref-0001")
    await _created(store, 4, state=State.RATED)
    assert await store.purge(T0 + timedelta(days=2)) == ["ref-0001", "ref-0002"]
    for gone in ("ref-0001", "ref-0002"):
        with pytest.raises(ReferralNotFound):
            await store.get(gone)
        assert await store.history(gone) == []
    assert (await store.get("ref-0003")).state is State.MERGED
    assert await store.purge(T0 + timedelta(days=2)) == []


async def test_a_dry_run_purge_names_what_would_go_and_deletes_nothing(backend: ReferralBackend) -> None:
    """A dry run returns the ids a purge would delete; every referral and its history is still there."""
    store = await backend.open()
    await _created(store, 1, state=State.CLOSED, closed_at=T0)
    await _created(store, 2, state=State.CLOSED, closed_at=T0 + timedelta(days=30))
    await _created(store, 3, state=State.RATED)
    assert await store.purge(T0 + timedelta(days=2), dry_run=True) == ["ref-0001"]
    assert (await store.get("ref-0001")).state is State.CLOSED
    assert await store.purge(T0 + timedelta(days=2), dry_run=True) == ["ref-0001"]
    assert await store.purge(T0 + timedelta(days=2)) == ["ref-0001"]


async def test_the_outbox_keeps_notices_per_receiver_in_order_until_acknowledged(backend: ReferralBackend) -> None:
    """Notices written with a change come back in order after any position; acknowledgement never goes back."""
    store = await backend.open()
    csc, health = "spiffe://mash.local/agency/csc/system/case-system", "spiffe://mash.local/agency/health/x"
    referral = make_referral(1)
    notices = [Notification(csc, NoticeKind.ROUTED, "ref-0001", T0, team="north", worker="sw.1"),
               Notification(health, NoticeKind.OWNER_NOTICE, "ref-0001", T0)]
    await store.create(referral, [step(referral, Action.SUBMIT, None)], notices)
    later = replace(referral, state=State.ROUTED, version=2)
    await store.update(later, step(later, Action.ROUTE, State.RECEIVED),
                       [Notification(csc, NoticeKind.DECISION, "ref-0001", T0 + timedelta(hours=1))])
    mine = await store.notifications(csc, after=0, limit=10)
    assert [(n.kind, n.team, n.worker) for n in mine] == [
        (NoticeKind.ROUTED, "north", "sw.1"), (NoticeKind.DECISION, "", "")]
    assert mine[0].seq < mine[1].seq
    assert await store.notifications(csc, after=mine[0].seq, limit=10) == mine[1:]
    assert await store.notifications(csc, after=0, limit=1) == mine[:1]
    assert [n.kind for n in await store.notifications(health, after=0, limit=10)] == [NoticeKind.OWNER_NOTICE]
    assert await store.acknowledged(csc) == 0
    assert await store.acknowledge(csc, mine[1].seq) == mine[1].seq
    assert await store.acknowledge(csc, mine[0].seq) == mine[1].seq
    other = await backend.open()
    assert await other.acknowledged(csc) == mine[1].seq
    assert await other.acknowledged(health) == 0


async def test_a_referral_created_already_screened_keeps_both_steps(backend: ReferralBackend) -> None:
    """A referral screened on arrival is written once with its submit and screen steps, in order."""
    store = await backend.open()
    referral = make_referral(1, state=State.SCREENED, version=2, screening="NOT_OPEN")
    submitted = step(replace(referral, state=State.RECEIVED, version=1), Action.SUBMIT, None)
    screened = step(referral, Action.SCREEN, State.RECEIVED)
    await store.create(referral, [submitted, screened])
    assert [(h.action, h.version) for h in await store.history("ref-0001")] == [(Action.SUBMIT, 1),
                                                                                (Action.SCREEN, 2)]
    assert await store.get("ref-0001") == referral


async def test_closing_while_calls_run_never_crashes_and_later_calls_fail_cleanly(backend: ReferralBackend) -> None:
    """A close racing in-flight calls waits for them (closing a connection in use crashed SQLite once)."""
    store = await backend.open()
    for n in range(5):
        await _created(store, n)
    reads = [asyncio.create_task(store.get(f"ref-{n:04d}")) for n in range(5) for _ in range(20)]
    await asyncio.sleep(0)
    await store.close()
    outcomes = await asyncio.gather(*reads, return_exceptions=True)
    assert all(not isinstance(o, BaseException) or isinstance(o, ReferralStoreError) for o in outcomes), outcomes
    with pytest.raises(ReferralStoreError):
        await store.get("ref-0001")
