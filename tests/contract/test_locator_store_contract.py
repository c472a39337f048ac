"""The locator index conformance suite: SQLite and PostgreSQL enrol, withdraw, look up and survive alike."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from store_backends import postgres_url

from gateway.locator.store import LocatorStore, LocatorStoreError, open_locator_store

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


@dataclass
class LocatorBackend:
    url: str
    opened: list[LocatorStore] = field(default_factory=list)

    async def open(self) -> LocatorStore:
        store = await open_locator_store(self.url)
        self.opened.append(store)
        return store


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LocatorBackend]:
    """Each SQL locator index in turn, empty; every handle the test opened is closed afterwards."""
    if request.param == "sqlite":
        chosen = LocatorBackend(f"sqlite:///{tmp_path / 'locator.sqlite'}")
    else:
        chosen = LocatorBackend(postgres_url(request.getfixturevalue("postgres_schema")))
    yield chosen
    for store in chosen.opened:
        await store.close()


def token(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()[:16]


async def test_enrolment_is_idempotent_and_counts_only_new_tokens(backend: LocatorBackend) -> None:
    """Enrolling the same tokens twice adds them once; the node's total is what it holds."""
    store = await backend.open()
    first = await store.enrol("health", "k1", [token(1), token(2), token(2)], complete=None, now=T0)
    again = await store.enrol("health", "k1", [token(2), token(3)], complete=None, now=T0)
    assert (first.changed, first.total, first.complete) == (2, 2, False)
    assert (again.changed, again.total) == (1, 3)


async def test_lookup_finds_the_nodes_holding_any_token_and_the_complete_ones(backend: LocatorBackend) -> None:
    """A lookup names every node holding one of the tokens under that key, and which nodes are complete."""
    store = await backend.open()
    await store.enrol("health", "k1", [token(1), token(2)], complete=True, now=T0)
    await store.enrol("education", "k1", [token(2)], complete=False, now=T0)
    await store.enrol("police", "k1", [token(3)], complete=True, now=T0)
    found = await store.lookup("k1", [token(2), token(9)])
    assert found.matched == {"health", "education"}
    assert found.complete == {"health", "police"}
    assert (await store.lookup("k1", [token(9)])).matched == frozenset()
    assert (await store.lookup("k2", [token(1)])).matched == frozenset()  # tokens are per key


async def test_withdraw_removes_tokens_and_withdraw_all_resets_completeness(backend: LocatorBackend) -> None:
    """Withdrawing is idempotent; withdrawing everything also marks the enrolment incomplete."""
    store = await backend.open()
    await store.enrol("csc", "k1", [token(1), token(2), token(3)], complete=True, now=T0)
    removed = await store.withdraw("csc", "k1", [token(1), token(1), token(7)], everything=False, now=T0)
    assert (removed.changed, removed.total, removed.complete) == (1, 2, True)
    assert (await store.lookup("k1", [token(1)])).matched == frozenset()
    cleared = await store.withdraw("csc", "k1", [], everything=True, now=T0)
    assert cleared.changed == 2
    state = await store.state("csc")
    assert state.under("k1") is None
    assert (await store.lookup("k1", [token(2)])).complete == frozenset()


async def test_one_nodes_changes_never_touch_another_nodes_tokens(backend: LocatorBackend) -> None:
    """Two nodes enrolling the same token each hold it; one withdrawing leaves the other's in place."""
    store = await backend.open()
    await store.enrol("health", "k1", [token(1)], complete=True, now=T0)
    await store.enrol("police", "k1", [token(1)], complete=True, now=T0)
    await store.withdraw("police", "k1", [token(1)], everything=False, now=T0)
    await store.withdraw("housing", "k1", [], everything=True, now=T0)
    assert (await store.lookup("k1", [token(1)])).matched == {"health"}
    assert (await store.state("health")).under("k1") is not None


async def test_completeness_is_kept_unless_the_node_says_otherwise(backend: LocatorBackend) -> None:
    """complete=None keeps the recorded completeness; True and False set it."""
    store = await backend.open()
    await store.enrol("health", "k1", [token(1)], complete=True, now=T0)
    assert (await store.enrol("health", "k1", [token(2)], complete=None, now=T0)).complete
    assert not (await store.enrol("health", "k1", [], complete=False, now=T0)).complete


async def test_the_index_survives_a_restart(backend: LocatorBackend) -> None:
    """What was enrolled is there after the store is closed and opened again."""
    store = await backend.open()
    await store.enrol("health", "k1", [token(n) for n in range(50)], complete=True, now=T0)
    await store.close()
    backend.opened.remove(store)
    reopened = await backend.open()
    assert (await reopened.lookup("k1", [token(49)])).matched == {"health"}
    states = await reopened.states()
    assert states["health"].under("k1") is not None
    assert states["health"].keys[0].tokens == 50
    assert states["health"].keys[0].complete


async def test_dropping_a_retired_key_removes_its_tokens_only(backend: LocatorBackend) -> None:
    """After rotation the old key's tokens and enrolments go; the new key's stay."""
    store = await backend.open()
    await store.enrol("health", "k1", [token(1), token(2)], complete=True, now=T0)
    await store.enrol("health", "k2", [token(3)], complete=True, now=T0)
    assert await store.drop_key("k1") == 2
    assert [k.key_id for k in (await store.state("health")).keys] == ["k2"]
    assert (await store.lookup("k2", [token(3)])).matched == {"health"}


async def test_concurrent_enrolments_of_one_node_keep_an_exact_count(backend: LocatorBackend) -> None:
    """Two handles enrolling overlapping tokens at once: every token once, and the count agrees."""
    one, two = await backend.open(), await backend.open()
    await asyncio.gather(
        one.enrol("health", "k1", [token(n) for n in range(0, 300)], complete=None, now=T0),
        two.enrol("health", "k1", [token(n) for n in range(200, 500)], complete=None, now=T0),
    )
    state = (await one.state("health")).under("k1")
    assert state is not None
    assert state.tokens == 500


async def test_a_lookup_of_many_tokens_is_answered_in_full(backend: LocatorBackend) -> None:
    """More tokens than one statement's parameters still find every holder."""
    store = await backend.open()
    await store.enrol("health", "k1", [token(1_999)], complete=True, now=T0)
    assert (await store.lookup("k1", [token(n) for n in range(2_000)])).matched == {"health"}


async def test_an_unknown_store_url_is_refused_with_the_stores_own_error() -> None:
    """Only sqlite: and postgresql: URLs open an index; anything else is a LocatorStoreError."""
    with pytest.raises(LocatorStoreError):
        await open_locator_store("mysql://nowhere")
