"""The SQLite referral store group-commits posted notices: posts that arrive together share one transaction,
each returns only once committed, and a failing commit fails every post in it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from referral_backends import T0

from gateway.keyring import Keyring
from gateway.workflow.referral import NoticeKind, Notification
from gateway.workflow.schema import SQLITE
from gateway.workflow.sealing import ContentSealer
from gateway.workflow.sqlite_store import SqliteReferralStore
from gateway.workflow.store import ReferralStoreError

SEALER = ContentSealer(Keyring.generate("k1"))
RECIPIENT = "spiffe://mash.local/agency/health/system/reviewers"


def _notices(n: int) -> list[Notification]:
    """Two notices of one post, told apart by their review id."""
    return [Notification(RECIPIENT, NoticeKind.OWNER_NOTICE, "", T0, review_id=f"rev-{n:04d}-{part}")
            for part in ("a", "b")]


async def _stored(path: Path) -> list[str]:
    """The review ids another handle on the file reads from the outbox, in sequence order."""
    other = await SqliteReferralStore.open(f"sqlite:///{path}", SEALER)
    try:
        return [n.review_id for n in await other.notifications(RECIPIENT, after=0, limit=1000)]
    finally:
        await other.close()


async def test_concurrent_posts_are_all_durable_in_fewer_transactions_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "referrals.sqlite"
    store = await SqliteReferralStore.open(f"sqlite:///{path}", SEALER)
    try:
        await asyncio.gather(*(store.post(_notices(n)) for n in range(24)))
        assert store.post_commits < 24, "concurrent posts should share transactions"
        stored = await _stored(path)
        assert sorted(stored) == sorted(n.review_id for i in range(24) for n in _notices(i))
        for i in range(24):  # a post's notices stay together and in its own order
            at = stored.index(f"rev-{i:04d}-a")
            assert stored[at + 1] == f"rev-{i:04d}-b"
        commits = store.post_commits
        await store.post(_notices(99))  # a lone post still commits on its own
        assert store.post_commits == commits + 1
        await store.post([])  # nothing to post: no transaction
        assert store.post_commits == commits + 1
        assert (await _stored(path))[-2:] == ["rev-0099-a", "rev-0099-b"]
    finally:
        await store.close()


async def test_a_failing_commit_fails_every_waiting_post_and_stores_none(tmp_path: Path) -> None:
    path = tmp_path / "referrals.sqlite"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for statement in SQLITE:
        conn.execute(statement)
    # A notice for review rev-0007 breaks a deferred foreign key: its insert succeeds, the COMMIT fails.
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE parent (id TEXT PRIMARY KEY)")
    conn.execute("CREATE TABLE child (ref TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
    conn.execute("CREATE TRIGGER poison AFTER INSERT ON referral_outbox WHEN new.review_id = 'rev-0007-a' "
                 "BEGIN INSERT INTO child VALUES ('missing'); END")
    store = SqliteReferralStore(conn, SEALER)
    try:
        results = await asyncio.gather(*(store.post(_notices(n)) for n in range(12)), return_exceptions=True)
        # All twelve were waiting together, so they share the poisoned transaction: every one fails.
        assert all(isinstance(r, ReferralStoreError) for r in results), results
        assert store.post_commits == 0
        assert await _stored(path) == []
        await store.post(_notices(20))  # the store recovers: the next group commits
        assert (await _stored(path))[-2:] == ["rev-0020-a", "rev-0020-b"]
    finally:
        await store.close()


async def test_a_caller_that_gives_up_does_not_undo_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "referrals.sqlite"
    store = await SqliteReferralStore.open(f"sqlite:///{path}", SEALER)
    try:
        task = asyncio.ensure_future(store.post(_notices(1)))
        others = asyncio.gather(*(store.post(_notices(n)) for n in range(2, 6)))
        await asyncio.sleep(0)
        task.cancel()
        await others
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await store.close()
    assert len(await _stored(path)) == 10
