"""Review notices through the referral outbox, and review deadlines from a referral's rating, on a real SQLite
referral store with the shipped policies and a fixed clock."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.domain import DisclosureLevel, SubjectIdentifiers
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser
from gateway.policy import PolicyHolder
from gateway.review.model import Review, ReviewState
from gateway.review.notices import OutboxNotifier, RatedDeadlines
from gateway.service.reviews import ReviewEvent
from gateway.testing import FixedClock, RecordingAuditSink
from gateway.workflow.policy import WorkflowPolicy, load_workflow
from gateway.workflow.referral import Content, NoticeKind, Referral, State
from gateway.workflow.sealing import ContentSealer
from gateway.workflow.service import ReferralWorkflow
from gateway.workflow.sqlite_store import SqliteReferralStore

REQUESTER = "spiffe://mash.local/agency/police/system/case-system"
HEALTH_CONSOLE = "spiffe://mash.local/agency/health/system/review-console"
WEB_CONSOLE = "spiffe://mash.local/agency/hub/system/console"  # bound to every agency's reviewer role
HEALTH_RECEIVER = "spiffe://mash.local/agency/health/system/gp-system"
MONDAY = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


def review(**overrides: object) -> Review:
    base = Review(
        review_id="rev-1", request_id="req-1", agency="health",
        requested={"health.mental_health": DisclosureLevel.PERTINENT}, granted=DisclosureLevel.EXISTS,
        caller=REQUESTER, user="r.1", role="mash_researcher_police", requester_agency="police",
        purpose="safeguarding_screening", legal_basis="dpa_2018_sch1_para18", agreement="mash-isa-2026",
        case_reference="ref-1", sealed_identifiers="SEALED", policy_version="v1", created_at=MONDAY,
        deadline=MONDAY + timedelta(hours=24), referral_id="ref-1",
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class Rig:
    workflow: ReferralWorkflow
    store: SqliteReferralStore
    policy: WorkflowPolicy
    notifier: OutboxNotifier
    clock: FixedClock


@pytest.fixture
async def rig(tmp_path: Path, policy_dir: Path, holder: PolicyHolder) -> AsyncIterator[Rig]:
    store = await SqliteReferralStore.open(f"sqlite:///{tmp_path}/referrals.sqlite",
                                           ContentSealer(Keyring.generate("k1")))
    clock = FixedClock(MONDAY)
    policy = load_workflow(policy_dir)
    workflow = ReferralWorkflow(store=store, workflow=policy, policy=holder, audit=RecordingAuditSink(),
                                tokeniser=SubjectTokeniser(Keyring.generate("k1")), clock=clock)
    notifier = OutboxNotifier(workflow.post, lambda: holder.current, lambda: workflow.workflow.receivers, clock)
    yield Rig(workflow, store, policy, notifier, clock)
    await store.close()


def test_each_event_goes_to_the_parties_the_issue_names(rig: Rig) -> None:
    """New review: health's reviewers' certificate; decision: the requester; expiry: the requester and health
    (its receiver and its reviewers)."""
    assert rig.notifier.recipients(review(), ReviewEvent.REQUESTED) == [HEALTH_CONSOLE, WEB_CONSOLE]
    assert rig.notifier.recipients(review(), ReviewEvent.DECIDED) == [REQUESTER]
    assert rig.notifier.recipients(review(), ReviewEvent.EXPIRED) == [
        REQUESTER, HEALTH_RECEIVER, HEALTH_CONSOLE, WEB_CONSOLE]


async def test_an_offline_receiver_gets_review_notices_after_reconnecting(rig: Rig) -> None:
    """Notices are durable: written while nobody watches, read in order later, references only."""
    await rig.notifier.notify(review(), ReviewEvent.REQUESTED)
    await rig.notifier.notify(replace(review(), state=ReviewState.APPROVED), ReviewEvent.DECIDED)
    console = await rig.store.notifications(HEALTH_CONSOLE, after=0, limit=10)
    assert [(n.kind, n.review_id, n.referral_id) for n in console] == [
        (NoticeKind.REVIEW_REQUESTED, "rev-1", "ref-1")]
    mine = await rig.store.notifications(REQUESTER, after=0, limit=10)
    assert [(n.kind, n.review_id) for n in mine] == [(NoticeKind.REVIEW_DECIDED, "rev-1")]
    assert "SEALED" not in repr(console + mine)
    assert "r.1" not in repr(console + mine)


async def test_a_review_notice_wakes_a_watcher_at_once(rig: Rig) -> None:
    """A watcher of the outbox is woken by a review notice, like by a referral notice."""
    from gateway.service.validation import Caller

    watcher = rig.workflow.watch(Caller(REQUESTER, "police", "r.1", "mash_researcher_police"), after=None, poll=30)
    pending = asyncio.ensure_future(anext(watcher))
    await asyncio.sleep(0.05)
    await rig.notifier.notify(review(), ReviewEvent.EXPIRED)
    notice = await asyncio.wait_for(pending, 5)
    assert (notice.kind, notice.review_id) == (NoticeKind.REVIEW_EXPIRED, "rev-1")
    await watcher.aclose()


async def test_an_outbox_from_before_review_notices_gains_the_column(tmp_path: Path) -> None:
    """A store created by an earlier release (no review_id column) opens, keeps its notices and takes new ones."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE referral_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, recipient TEXT NOT NULL, "
                 "kind TEXT NOT NULL, referral_id TEXT NOT NULL, team TEXT NOT NULL, worker TEXT NOT NULL, "
                 "created_at TEXT NOT NULL)")
    conn.execute("INSERT INTO referral_outbox (recipient, kind, referral_id, team, worker, created_at) "
                 "VALUES ('r', 'ROUTED', 'ref-0', 't', 'w', '2026-11-30T09:30:00.000000Z')")
    conn.commit()
    conn.close()
    store = await SqliteReferralStore.open(f"sqlite:///{path}", ContentSealer(Keyring.generate("k1")))
    try:
        (old,) = await store.notifications("r", after=0, limit=10)
        assert (old.kind, old.review_id) == (NoticeKind.ROUTED, "")
        from gateway.workflow.referral import Notification
        await store.post([Notification("r", NoticeKind.REVIEW_DECIDED, "", MONDAY, review_id="rev-9")])
        assert [n.review_id for n in await store.notifications("r", after=old.seq, limit=10)] == ["rev-9"]
    finally:
        await store.close()


async def _referral(rig: Rig, referral_id: str, mash: str, rating: str) -> None:
    subject = SubjectIdentifiers(nhs_number="9434765919", given_name="Kai", family_name="Mercer",
                                 date_of_birth="2017-03-14")
    await rig.store.create(Referral(referral_id, mash, "police", "pc.1", MONDAY, Content(subject, (), "concern"),
                                    state=State.RATED if rating else State.SCREENED, version=1, rating=rating,
                                    rated_at=MONDAY if rating else None), [])


@pytest.mark.parametrize(
    ("mash", "rating", "expected"),
    [
        ("children", "red", "research 4"),  # four working hours from the request
        ("adults", "red", "research 8"),
        ("adults", "green", "decision 120"),  # no research target: the decision's
        ("children", "blue", None),  # no target at all: the agency's review_hours
        ("children", "", None),  # unrated
    ],
)
async def test_a_rated_referral_sets_the_review_deadline_in_working_hours(
        rig: Rig, mash: str, rating: str, expected: str | None) -> None:
    """The deadline is the rating's target counted on the workflow's working-hours calendar from the request."""
    await _referral(rig, "ref-7", mash, rating)
    friday_4pm = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
    got = await RatedDeadlines(rig.store, lambda: rig.policy).deadline("ref-7", friday_4pm)
    if expected is None:
        assert got == (rating, None)
        return
    step, hours = expected.split()
    assert got == (rating, rig.policy.calendar.add_working_hours(friday_4pm, float(hours)))
    assert got[1] is not None
    assert got[1] > friday_4pm + timedelta(hours=float(hours))
    assert got[1] == rig.policy.due(mash, rating, step, friday_4pm)


async def test_an_unknown_referral_leaves_the_default(rig: Rig) -> None:
    assert await RatedDeadlines(rig.store, lambda: rig.policy).deadline("ref-missing", MONDAY) == ("", None)
