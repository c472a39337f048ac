"""Routing while no node has completed enrolment: every node is asked, and the index is not read per question."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

from gateway.domain import SubjectIdentifiers
from gateway.keyring import Keyring
from gateway.locator.core import Locator
from gateway.locator.inputs import TOKEN_BYTES
from gateway.locator.keys import LocatorKeys
from gateway.locator.store import LocatorStore, Lookup, open_locator_store
from gateway.testing import FixedClock, RecordingAuditSink

SUBJECT = SubjectIdentifiers(nhs_number="9434765919", given_name="Amelia", family_name="Hart",
                             date_of_birth="2014-03-02")


class CountingStore:
    """The real SQLite index, counting the reads routing makes."""

    def __init__(self, store: LocatorStore) -> None:
        self.store = store
        self.lookups = 0

    async def lookup(self, key_id: str, tokens: Sequence[bytes]) -> Lookup:
        self.lookups += 1
        return await self.store.lookup(key_id, tokens)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def _locator(tmp_path: Path, recheck: float) -> tuple[Locator, CountingStore]:
    store = CountingStore(await open_locator_store(f"sqlite:///{tmp_path / 'locator.sqlite'}"))
    policy = SimpleNamespace(current=SimpleNamespace(version="sha256:test"))
    locator = Locator(keys=LocatorKeys(Keyring.generate("k1")), store=store,  # type: ignore[arg-type]
                      audit=RecordingAuditSink(), policy=policy, clock=FixedClock(),
                      unenrolled_recheck=recheck)
    return locator, store


async def test_with_no_complete_enrolment_routing_asks_everyone_and_rereads_the_index_only_after_a_while(
        tmp_path: Path) -> None:
    """While no node is complete, a question asks every node (None), and the next questions within the recheck
    window do not read the index again; a node that enrols only partly changes nothing."""
    locator, store = await _locator(tmp_path, recheck=3600)
    tokens = locator.tokens_for(SUBJECT)["k1"]
    await locator.enrol("police", "police.node", "k1", tokens, complete=None)  # holds the subject, not complete
    assert await locator.route(SUBJECT) is None
    assert await locator.route(SUBJECT) is None
    assert store.lookups == 1, "routing should not read the index again while no node is complete"
    await store.store.close()


async def test_a_node_completing_enrolment_is_routed_by_from_the_next_question(tmp_path: Path) -> None:
    """Once a node completes enrolment through this locator, the very next question reads the index and skips
    the complete node that does not hold the subject."""
    locator, store = await _locator(tmp_path, recheck=3600)
    assert await locator.route(SUBJECT) is None
    await locator.enrol("health", "health.node", "k1", [b"\x01" * TOKEN_BYTES], complete=True)
    routing = await locator.route(SUBJECT)
    assert routing is not None, "a complete node must be routed by at once"
    assert routing.enrolled == frozenset({"health"})
    assert not routing.asks("health")
    assert routing.asks("police")
    assert store.lookups == 2
    await store.store.close()


async def test_after_the_recheck_window_the_index_is_read_again(tmp_path: Path) -> None:
    """With no window, every question reads the index (so a node completing through another gateway process
    is seen at most one window late)."""
    locator, store = await _locator(tmp_path, recheck=0.0)
    for _ in range(3):
        assert await locator.route(SUBJECT) is None
    assert store.lookups == 3
    await store.store.close()
