"""Keeping the event loop free: a large answer is redacted off the loop, so other queries are answered meanwhile."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from typing import Any

import pytest
from service_helpers import make_service
from test_query_service import KAI, POLICE_RESEARCHER, SCREENING, contact, nobody, police_record

from agency_stubs.cast import NOAH_FENWICK
from gateway.domain import SubjectIdentifiers
from gateway.keyring import Keyring
from gateway.policy import PolicyHolder
from gateway.redaction import Redactor
from gateway.service.fanout import INLINE_FIELDS
from gateway.service.ports import LookupCommand, LookupResult, PersonMatch

HEAVY = tuple(police_record(record_id=f"P-{n}") for n in range(40))


async def test_a_heavy_answer_does_not_hold_up_a_light_query(
    holder: PolicyHolder, keys: dict[str, Keyring], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one query's large answer is being redacted, another query is answered in full."""
    assert sum(len(r.fields) for r in HEAVY) > INLINE_FIELDS
    loop = asyncio.get_running_loop()
    heavy_redacting = asyncio.Event()
    light_answered = threading.Event()
    original = Redactor.redact

    def redact(self: Redactor, records: Any, ctx: Any) -> Any:
        if len(records) == len(HEAVY):
            loop.call_soon_threadsafe(heavy_redacting.set)
            # On the loop this would block the light query for good; the timeout only ends such a failure.
            light_answered.wait(5)
        return original(self, records, ctx)

    monkeypatch.setattr(Redactor, "redact", redact)

    async def light_answer(agency: str) -> LookupResult:
        await heavy_redacting.wait()
        return LookupResult(agency, (PersonMatch("P2", "nhs_number", (police_record(record_id="L-1"),), False),),
                            contact(agency))

    def handler(agency: str, command: LookupCommand) -> Any:
        if agency != "police":
            return nobody(agency, command)
        if command.subject.nhs_number == KAI.nhs_number:
            return LookupResult(agency, (PersonMatch("P1", "nhs_number", HEAVY, False),), contact(agency))
        return light_answer(agency)

    service, _, _ = make_service(holder, keys, handler)
    finished: list[str] = []

    async def run(name: str, subject: SubjectIdentifiers) -> Any:
        result = await service.query(POLICE_RESEARCHER, replace(SCREENING, request_id=f"req-{name}",
                                                                subject=subject), timeout=10)
        finished.append(name)
        if name == "light":
            light_answered.set()
        return result

    heavy, light = await asyncio.gather(run("heavy", KAI), run("light", SubjectIdentifiers(
        nhs_number=NOAH_FENWICK.nhs_number)))
    assert finished == ["light", "heavy"]
    police = {a.agency: a for a in heavy.answers}["police"]
    assert len(police.records) == len(HEAVY)
    assert {a.agency: a for a in light.answers}["police"].records
