"""The request-id ledger's window and memory bound (the end-to-end behaviour is in tests/api/test_request_ids.py)."""

from __future__ import annotations

from dataclasses import replace

from gateway.domain import SubjectIdentifiers
from gateway.service.request_ids import RequestLedger
from gateway.service.validation import Caller, QueryCommand

CALLER = Caller("spiffe://mash.local/agency/csc/system/case-system", "csc", "sw.1", "social_worker")
COMMAND = QueryCommand("req-1", SubjectIdentifiers(nhs_number="9990000018"), "s47_enquiry",
                       "children_act_1989_s47", "mash-isa-2026", "MASH-1")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Counter:
    def __init__(self) -> None:
        self.runs: list[bool] = []

    async def __call__(self, reused: bool) -> int:
        self.runs.append(reused)
        return len(self.runs)


async def test_a_request_id_is_remembered_for_the_window_and_then_free_again() -> None:
    """Within the window a different request under the id is marked reused; after it, it runs afresh."""
    clock = Clock()
    ledger, produce = RequestLedger(window=10.0, clock=clock), Counter()
    assert await ledger.once("query", CALLER, COMMAND, produce) == 1
    assert await ledger.once("query", CALLER, COMMAND, produce) == 1
    other = replace(COMMAND, case_reference="MASH-2")
    await ledger.once("query", CALLER, other, produce)
    clock.now = 10.0
    await ledger.once("query", CALLER, other, produce)
    assert produce.runs == [False, True, False]


async def test_the_ledger_forgets_the_oldest_ids_beyond_its_capacity() -> None:
    """Memory stays bounded: past `capacity` ids the oldest is forgotten and its retry runs again."""
    ledger, produce = RequestLedger(capacity=2, clock=Clock()), Counter()
    for i in range(3):
        await ledger.once("query", CALLER, replace(COMMAND, request_id=f"req-{i}"), produce)
    await ledger.once("query", CALLER, replace(COMMAND, request_id="req-0"), produce)
    await ledger.once("query", CALLER, replace(COMMAND, request_id="req-2"), produce)
    assert produce.runs == [False, False, False, False]


async def test_requests_without_an_id_are_never_remembered() -> None:
    """With no caller-chosen id the gateway assigns a fresh one, so every such request runs."""
    ledger, produce = RequestLedger(clock=Clock()), Counter()
    for _ in range(3):
        await ledger.once("query", CALLER, replace(COMMAND, request_id=""), produce)
    assert produce.runs == [False, False, False]
