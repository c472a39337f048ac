"""The SQLite review store group-commits creates: many at once share one transaction, all or none of it lands."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from test_review_store_contract import make_review

from gateway.review.model import ReviewStoreError
from gateway.review.sqlite_store import SqliteReviewStore
from gateway.review.store import SCHEMA


async def _stored(path: Path, ids: list[str]) -> set[str]:
    """The ids among `ids` another handle on the file finds stored (so committed, not only in a transaction)."""
    other = await SqliteReviewStore.open(f"sqlite:///{path}")
    try:
        return {i for i in ids if await other.get(i) is not None}
    finally:
        await other.close()


async def test_concurrent_creates_are_all_durable_in_fewer_transactions(tmp_path: Path) -> None:
    path = tmp_path / "reviews.sqlite"
    store = await SqliteReviewStore.open(f"sqlite:///{path}")
    try:
        reviews = [make_review(n) for n in range(24)]
        await asyncio.gather(*(store.create([r]) for r in reviews))
        assert store.commits < len(reviews)
        assert await _stored(path, [r.review_id for r in reviews]) == {r.review_id for r in reviews}
        await store.create([make_review(99)])  # a lone create still commits on its own
        assert await _stored(path, ["rev-0099"]) == {"rev-0099"}
    finally:
        await store.close()


async def test_a_create_whose_id_exists_fails_alone_in_its_group(tmp_path: Path) -> None:
    path = tmp_path / "reviews.sqlite"
    store = await SqliteReviewStore.open(f"sqlite:///{path}")
    try:
        await store.create([make_review(5)])
        batches = [[make_review(n), make_review(n + 100)] for n in range(10)]  # batch 5 repeats rev-0005
        results = await asyncio.gather(*(store.create(b) for b in batches), return_exceptions=True)
        failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
        assert failed == [5]
        assert isinstance(results[5], ReviewStoreError)
        ids = [r.review_id for b in batches for r in b]
        # The failing create is stored not even in part (its other review is absent); the rest all are.
        assert await _stored(path, ids) == set(ids) - {"rev-0105"}
    finally:
        await store.close()


async def test_a_failing_commit_fails_every_waiting_create_and_stores_none(tmp_path: Path) -> None:
    path = tmp_path / "reviews.sqlite"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for statement in SCHEMA:
        conn.execute(statement)
    # A review with id rev-0007 breaks a deferred foreign key: its insert succeeds, the COMMIT fails.
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE parent (id TEXT PRIMARY KEY)")
    conn.execute("CREATE TABLE child (ref TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
    conn.execute("CREATE TRIGGER poison AFTER INSERT ON reviews WHEN new.review_id = 'rev-0007' "
                 "BEGIN INSERT INTO child VALUES ('missing'); END")
    store = SqliteReviewStore(conn)
    try:
        reviews = [make_review(n) for n in range(12)]
        results = await asyncio.gather(*(store.create([r]) for r in reviews), return_exceptions=True)
        assert all(isinstance(r, ReviewStoreError) for r in results)
        assert store.commits == 0
        assert await _stored(path, [r.review_id for r in reviews]) == set()
        await store.create([make_review(20)])  # the store recovers: the next group commits
        assert await _stored(path, ["rev-0020"]) == {"rev-0020"}
    finally:
        await store.close()


async def test_a_caller_that_gives_up_does_not_undo_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "reviews.sqlite"
    store = await SqliteReviewStore.open(f"sqlite:///{path}")
    try:
        task = asyncio.ensure_future(store.create([make_review(1)]))
        others = asyncio.gather(*(store.create([make_review(n)]) for n in range(2, 6)))
        await asyncio.sleep(0)
        task.cancel()
        await others
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await store.close()
    assert await _stored(path, [f"rev-{n:04d}" for n in range(1, 6)]) == {f"rev-{n:04d}" for n in range(1, 6)}
