"""Oversized requests are refused cheaply, with a small error and a small permanent refusal entry."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from service_helpers import make_service

from gateway.audit import encode_event
from gateway.domain import AgencyContact, AuditEvent, AuditKind, SubjectIdentifiers
from gateway.errors import InvalidRequest
from gateway.keyring import Keyring
from gateway.policy import PolicyHolder
from gateway.service.admission import MAX_REASON
from gateway.service.ports import LookupCommand, LookupResult
from gateway.service.query import Caller, QueryCommand
from gateway.service.validation import MAX_CATEGORIES

KAI = SubjectIdentifiers(nhs_number="9990000018", given_name="Kai", family_name="Mercer",
                         date_of_birth="2017-05-14")
RESEARCHER = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "r.1", "mash_researcher_police")
SCREENING = QueryCommand("req-l", KAI, "safeguarding_screening", "dpa_2018_sch1_para18", "mash-isa-2026", "MASH-1")
MAX_REFUSAL_ENTRY = 4096


def never(agency: str, command: LookupCommand) -> LookupResult:
    raise AssertionError("an invalid request must not reach any agency")


async def refusal(
    holder: PolicyHolder, keys: dict[str, Keyring], command: QueryCommand
) -> tuple[InvalidRequest, AuditEvent]:
    """Run the command expecting INVALID_ARGUMENT; the error and its one refusal entry, checked for size."""
    service, _, sink = make_service(holder, keys, never)
    with pytest.raises(InvalidRequest) as caught:
        await service.query(RESEARCHER, command, timeout=5)
    (event,) = sink.events
    assert (event.kind, event.status) == (AuditKind.REFUSAL, "INVALID_ARGUMENT")
    assert len(event.reason) <= MAX_REASON
    assert len(encode_event(event)) < MAX_REFUSAL_ENTRY
    return caught.value, event


async def test_unknown_categories_are_listed_a_few_and_the_rest_counted(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """Sixty unknown categories give five indexed violations and one that counts the other fifty-five."""
    command = replace(SCREENING, categories=tuple(f"nope.{i}" for i in range(60)))
    error, _ = await refusal(holder, keys, command)
    fields = [v.field for v in error.violations]
    assert fields == [f"categories[{i}]" for i in range(5)] + ["categories"]
    assert "55 more" in error.violations[-1].description


async def test_too_many_categories_are_refused_in_one_violation_without_reading_them(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """A 69 kB list of long category names is one violation, and its refusal entry stays a few hundred bytes."""
    command = replace(SCREENING, categories=tuple(f"x{i:04d}" + "y" * 220 for i in range(300)))
    error, _ = await refusal(holder, keys, command)
    assert [v.field for v in error.violations] == ["categories"]
    assert str(MAX_CATEGORIES) in error.violations[0].description


async def test_the_category_cap_admits_a_list_of_every_known_category(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """The cap is above the vocabulary: asking for every declared category one by one is accepted."""
    categories = tuple(holder.current.record_categories)
    assert len(categories) <= MAX_CATEGORIES
    service, _, sink = make_service(holder, keys, lambda a, c: LookupResult(a, (), AgencyContact(a)))
    await service.query(RESEARCHER, replace(SCREENING, categories=categories), timeout=5)
    assert {e.kind for e in sink.events} == {AuditKind.DISCLOSURE}


async def test_a_megabyte_name_is_refused_without_normalising_it(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """A name of a million U+FDFA (eighteen characters each under NFKC) is refused at once, still tokenised by
    NHS number, and nothing of it is sealed into the log."""
    huge = replace(KAI, given_name="\ufdfa" * 1_000_000)
    started = time.perf_counter()
    error, event = await refusal(holder, keys, replace(SCREENING, subject=huge))
    assert time.perf_counter() - started < 0.5
    assert [v.field for v in error.violations] == ["subject.given_name"]
    assert [t.split(":")[0] for t in event.subject_tokens] == ["nhs"]
    assert event.sealed_identifiers == ""
