"""The query use case without a network: planning, fail-closed auditing and defence in depth."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import structlog
from service_helpers import make_service

from agency_stubs import make_record
from gateway.audit import IdentifierSealer
from gateway.domain import AgencyContact, AnswerStatus, AuditEvent, AuditKind, DisclosureLevel, SubjectIdentifiers
from gateway.errors import AgencyUnavailable, AuditUnavailable, InvalidRequest, RequestRefused
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser
from gateway.policy import PolicyHolder
from gateway.service.admission import BaseEvent
from gateway.service.occupancy import Occupancy
from gateway.service.ports import LookupCommand, LookupResult, PersonMatch
from gateway.service.query import Caller, QueryCommand, QueryService, ScreenResult
from gateway.testing import FakeAgencyTransport, FixedClock, RecordingAuditSink

KAI = SubjectIdentifiers(nhs_number="9990000018", given_name="Kai", family_name="Mercer",
                         date_of_birth="2017-05-14")
POLICE_RESEARCHER = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "r.1",
                           "mash_researcher_police")
HOUSING_OFFICER = Caller("spiffe://mash.local/agency/housing/system/housing-system", "housing", "h.1",
                         "housing_officer")
SCREENING = QueryCommand("req-1", KAI, "safeguarding_screening", "dpa_2018_sch1_para18", "mash-isa-2026",
                         "MASH-1")


def contact(agency: str) -> AgencyContact:
    return AgencyContact(agency, team=f"{agency} MASH desk")


def nobody(agency: str, command: LookupCommand) -> LookupResult:
    return LookupResult(agency, (), contact(agency))


def police_record(category: str = "police.domestic_abuse", record_id: str = "P-1"):  # type: ignore[no-untyped-def]
    values = {
        "police.domestic_abuse": {"incident_date": "2026-09-01", "dash_risk": "high", "child_present": "yes",
                                  "location_postcode": "E8 3PR", "perpetrator": "Dean Ashby",
                                  "narrative": "NARRATIVE-SECRET", "officer_in_case": "DC Shaw"},
        "police.marac": {"referral_date": "2026-09-02", "risk_level": "high", "victim": "Jodie Mercer",
                         "actions": "safety plan"},
    }[category]
    return make_record(category, record_id, datetime(2026, 9, 1, tzinfo=UTC), "An incident.", values)


async def test_every_agency_answer_is_audited_with_tokens_and_sealed_identifiers_only(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """One disclosure entry per agency, carrying subject tokens and sealed identifiers, never raw ones."""
    service, _, sink = make_service(holder, keys, nobody)
    result = await service.query(POLICE_RESEARCHER, SCREENING, timeout=5)
    holders = sum(a.holds_records for a in holder.current.agencies.values())  # seven, adult social care included
    assert [o.status for o in result.answers] == [AnswerStatus.NO_MATCH] * holders
    assert [e.kind for e in sink.events] == [AuditKind.DISCLOSURE] * holders
    for event in sink.events:
        assert event.subject_tokens
        assert all(t.startswith(("nhs:", "ndob:")) for t in event.subject_tokens)
        assert event.sealed_identifiers.startswith("k1:")
        text = repr(event)
        assert all(v not in text for v in (KAI.nhs_number, KAI.family_name, KAI.date_of_birth))


async def test_a_refusal_is_audited_before_it_is_raised(holder: PolicyHolder, keys: dict[str, Keyring]) -> None:
    """An invalid request leaves exactly one refusal entry and never reaches the transport."""
    service, transport, sink = make_service(holder, keys, nobody)
    bad = QueryCommand("req-2", KAI, "", "dpa_2018_sch1_para18", "mash-isa-2026", "MASH-1")
    with pytest.raises(InvalidRequest, match="purpose"):
        await service.query(POLICE_RESEARCHER, bad, timeout=5)
    assert [(e.kind, e.status) for e in sink.events] == [(AuditKind.REFUSAL, "INVALID_ARGUMENT")]
    assert transport.calls == []


async def test_a_refusal_that_cannot_be_audited_becomes_unavailable(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """If even the refusal cannot be recorded the caller is told the service is unavailable."""
    service, _, sink = make_service(holder, keys, nobody)
    sink.fail = True
    wrong_role = Caller(POLICE_RESEARCHER.identity, "police", "r.1", "mash_manager")
    with pytest.raises(AuditUnavailable):
        await service.query(wrong_role, SCREENING, timeout=5)


async def test_no_answer_is_released_when_the_audit_store_fails(holder: PolicyHolder, keys: dict[str, Keyring]) -> None:
    """Fail closed: agencies answered, but the audit append failed, so the call raises and returns nothing."""
    def answer(agency: str, command: LookupCommand) -> LookupResult:
        records = (police_record(),) if agency == "police" else ()
        return LookupResult(agency, (PersonMatch("P1", "nhs_number", records, False),), contact(agency))

    service, transport, sink = make_service(holder, keys, answer)
    sink.fail = True
    with pytest.raises(AuditUnavailable):
        await service.query(POLICE_RESEARCHER, SCREENING, timeout=5)
    assert transport.calls, "agencies were asked"


async def test_records_outside_the_requested_categories_are_dropped(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """A node that returns a category it was not asked for cannot cause a disclosure."""
    def answer(agency: str, command: LookupCommand) -> LookupResult:
        if agency != "police":
            return nobody(agency, command)
        extra = police_record("police.marac", "P-EXTRA")
        return LookupResult(agency, (PersonMatch("P1", "nhs_number", (police_record(), extra), False),),
                            contact(agency))

    only_da = QueryCommand("req-3", KAI, "safeguarding_screening", "dpa_2018_sch1_para18", "mash-isa-2026",
                           "MASH-1", categories=("police.domestic_abuse",))
    service, transport, _ = make_service(holder, keys, answer)
    result = await service.query(POLICE_RESEARCHER, only_da, timeout=5)
    police = next(o for o in result.answers if o.agency == "police")
    assert [r.record_id for r in police.records] == ["P-1"]
    asked = next(c for a, c, _ in transport.calls if a == "police")
    assert asked.categories == ("police.domestic_abuse",)


async def test_agencies_with_nothing_disclosable_are_withheld_and_not_asked(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """Under the housing agreement only housing is asked; every other agency is WITHHELD, uncontacted."""
    service, transport, _ = make_service(holder, keys, nobody)
    command = QueryCommand("req-4", KAI, "housing_management", "uk_gdpr_6_1_e", "housing-partnership-2026", "H-1")
    result = await service.query(HOUSING_OFFICER, command, timeout=5)
    statuses = {o.agency: o.status for o in result.answers}
    assert statuses.pop("housing") is AnswerStatus.NO_MATCH
    assert set(statuses.values()) == {AnswerStatus.WITHHELD}
    assert [a for a, _, _ in transport.calls] == ["housing"]
    assert set(transport.calls[0][1].categories) <= {"housing.tenancy", "housing.arrears", "housing.asb"}


async def test_a_person_known_only_outside_the_allowed_categories_is_no_match(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """A match with no records in the allowed categories does not reveal that the agency knows the person."""
    def answer(agency: str, command: LookupCommand) -> LookupResult:
        return LookupResult(agency, (PersonMatch("X1", "nhs_number", (), False),), contact(agency))

    service, _, _ = make_service(holder, keys, answer)
    result = await service.query(POLICE_RESEARCHER, SCREENING, timeout=5)
    assert {o.status for o in result.answers} == {AnswerStatus.NO_MATCH}
    assert all(o.contact is None and not o.records for o in result.answers)


async def test_an_unreachable_agency_is_unavailable_and_the_rest_still_answer(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """Transport failures become that agency's status; the query itself succeeds."""
    def answer(agency: str, command: LookupCommand) -> LookupResult:
        if agency == "probation":
            raise AgencyUnavailable("down")
        return nobody(agency, command)

    service, _, sink = make_service(holder, keys, answer)
    result = await service.query(POLICE_RESEARCHER, SCREENING, timeout=5)
    statuses = {o.agency: o.status for o in result.answers}
    assert statuses["probation"] is AnswerStatus.UNAVAILABLE
    assert [e.status for e in sink.events if e.agency == "probation"] == ["UNAVAILABLE"]


async def test_each_agency_call_gets_the_callers_remaining_time_less_the_audit_margin(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """The deadline handed to each agency never exceeds what the caller has left."""
    service, transport, _ = make_service(holder, keys, nobody)
    await service.query(POLICE_RESEARCHER, SCREENING, timeout=2.0)
    assert transport.calls
    assert all(0 < timeout <= 2.0 - 0.1 for _, _, timeout in transport.calls)


async def test_a_role_not_bound_to_the_certificate_is_refused(holder: PolicyHolder, keys: dict[str, Keyring]) -> None:
    """Roles come from the caller binding file: anything else is refused with ROLE_NOT_BOUND."""
    service, _, sink = make_service(holder, keys, nobody)
    caller = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "r.1", "social_worker")
    with pytest.raises(RequestRefused) as refused:
        await service.query(caller, SCREENING, timeout=5)
    assert refused.value.code == "ROLE_NOT_BOUND"
    assert sink.events[0].kind is AuditKind.REFUSAL


async def test_an_existence_only_decision_asks_for_existence_and_returns_no_content(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """Where policy grants EXISTS, the node is asked only whether records exist, and only the contact returns."""
    def answer(agency: str, command: LookupCommand) -> LookupResult:
        known = bool(command.existence_categories)
        return LookupResult(agency, (PersonMatch("X1", "nhs_number", (), known),), contact(agency))

    service, transport, _ = make_service(holder, keys, answer)
    police_officer = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "pc.1",
                            "police_officer")
    result = await service.query(police_officer, SCREENING, timeout=5)
    exists_only = [o for o in result.answers if o.level is DisclosureLevel.EXISTS]
    assert exists_only, "the shipped policy grants some agency EXISTS only to a police officer"
    for outcome in exists_only:
        asked = next(c for a, c, _ in transport.calls if a == outcome.agency)
        assert asked.categories == ()
        assert outcome.status is AnswerStatus.MATCH
        assert outcome.records == ()
        assert outcome.contact is not None


async def test_a_fault_while_processing_one_agency_withholds_only_that_agency(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """A malformed answer that breaks processing fails closed for that agency; the others still answer."""
    broken = make_record("police.domestic_abuse", "P-BAD", datetime(2026, 9, 1, tzinfo=UTC), "x",
                         {"incident_date": "2026-09-01", "dash_risk": "high", "child_present": "yes",
                          "location_postcode": "E8 3PR", "perpetrator": "SECRET-PERSON", "narrative": "SECRET",
                          "officer_in_case": "DC Shaw"})
    object.__setattr__(broken, "fields", None)  # not iterable: redaction cannot process it

    def answer(agency: str, command: LookupCommand) -> LookupResult:
        records = (broken,) if agency == "police" else ()
        return LookupResult(agency, (PersonMatch("P1", "nhs_number", records, bool(records)),), contact(agency))

    service, _, sink = make_service(holder, keys, answer)
    result = await service.query(POLICE_RESEARCHER, SCREENING, timeout=5)
    police = next(o for o in result.answers if o.agency == "police")
    assert police.status is AnswerStatus.UNAVAILABLE
    assert police.records == ()
    assert len(sink.events) == sum(a.holds_records for a in holder.current.agencies.values())


async def test_a_refusal_records_no_caller_text_that_failed_validation(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """Free text that fails validation (it may be personal data, or huge) never reaches the audit entry."""
    service, _, sink = make_service(holder, keys, nobody)
    leaky = "Kai Mercer 9990000018"
    caller = Caller(POLICE_RESEARCHER.identity, "police", leaky, leaky)
    command = QueryCommand(leaky, KAI, leaky, leaky, leaky, leaky + "A" * 100_000)
    with structlog.testing.capture_logs() as captured, pytest.raises(InvalidRequest) as refused:
        await service.query(caller, command, timeout=5)
    (event,) = sink.events
    assert event.kind is AuditKind.REFUSAL
    assert "Mercer" not in repr(event)
    assert "Mercer" not in repr(captured)
    assert "Mercer" not in str(refused.value)
    assert (event.user, event.role, event.purpose, event.case_reference) == (
        "<invalid>", "<undeclared>", "<undeclared>", "<invalid>")
    assert event.request_id.startswith("req-")
    assert event.details["request_id"] == "<invalid>"
    assert event.subject_tokens, "the refusal can still be found by subject access"


async def test_a_callers_deadline_is_capped(holder: PolicyHolder, keys: dict[str, Keyring]) -> None:
    """A caller cannot hold agency calls open longer than the gateway's maximum."""
    service, transport, _ = make_service(holder, keys, nobody)
    await service.query(POLICE_RESEARCHER, SCREENING, timeout=3600)
    assert all(timeout <= 30 for _, _, timeout in transport.calls)


async def test_an_existence_flag_for_categories_not_asked_about_is_ignored(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """A node claiming 'known' when asked no existence question cannot turn NO_MATCH into MATCH."""
    def answer(agency: str, command: LookupCommand) -> LookupResult:
        return LookupResult(agency, (PersonMatch("X1", "nhs_number", (), True),), contact(agency))

    service, transport, _ = make_service(holder, keys, answer)
    result = await service.query(POLICE_RESEARCHER, SCREENING, timeout=5)
    checked = 0
    for outcome in result.answers:
        asked = next((c for a, c, _ in transport.calls if a == outcome.agency), None)
        if asked is not None and not asked.existence_categories:
            assert outcome.status is AnswerStatus.NO_MATCH, outcome.agency
            checked += 1
    assert checked, "some agency was asked for content only"


def _csc_case(status_fields: dict[str, str]):  # type: ignore[no-untyped-def]
    values = {"case_status": "open", "legal_status": "child_in_need", "allocated_team": "Team 2",
              "allocated_worker": "S. Okafor", "opened": "2026-01-05", **status_fields}
    record = make_record("csc.case", "C-1", datetime(2026, 1, 5, tzinfo=UTC), "Open case.", values)
    if "case_status" not in status_fields or status_fields["case_status"] != "<absent>":
        return record
    return replace(record, fields=tuple(f for f in record.fields if f.name != "case_status"))


MANAGER = Caller("spiffe://mash.local/agency/hub/system/mash-console", "hub", "m.1", "mash_manager")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, ScreenResult.OPEN), ({"case_status": "Open "}, ScreenResult.OPEN),
     ({"case_status": "closed"}, ScreenResult.CLOSED), ({"case_status": "<absent>"}, ScreenResult.WITHHELD)],
    ids=["open", "open in other case", "closed", "status not released"],
)
async def test_screening_reads_only_a_case_status_released_as_held(
    holder: PolicyHolder, keys: dict[str, Keyring], fields: dict[str, str], expected: ScreenResult
) -> None:
    """OPEN or CLOSED only from a status released in full; a missing status is never read as 'not open'."""
    def answer(agency: str, command: LookupCommand) -> LookupResult:
        return LookupResult(agency, (PersonMatch("C1", "nhs_number", (_csc_case(fields),), False),),
                            contact(agency))

    service, _, _ = make_service(holder, keys, answer)
    outcome = await service.screen(MANAGER, SCREENING, timeout=5)
    assert outcome.result is expected
    if expected is ScreenResult.OPEN:
        assert (outcome.allocated_team, outcome.allocated_worker) == ("Team 2", "S. Okafor")


async def test_asking_about_one_protected_category_asks_existence_across_the_agency(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """Filtering to sexual health cannot turn 'known to health' into 'known to the sexual-health service'."""
    service, transport, _ = make_service(holder, keys, nobody)
    social_worker = Caller("spiffe://mash.local/agency/csc/system/case-system", "csc", "sw.1", "social_worker")
    command = QueryCommand("req-p", KAI, "s47_enquiry", "children_act_1989_s47", "mash-isa-2026", "MASH-1",
                           categories=("health.sexual_health",))
    result = await service.query(social_worker, command, timeout=5)
    (asked,) = [c for a, c, _ in transport.calls if a == "health"]
    assert asked.categories == ()
    assert len(asked.existence_categories) > 1
    assert "health.sexual_health" not in {c for o in result.answers for c in o.categories}
    untouched = {o.agency: o for o in result.answers if o.agency != "health"}
    assert {o.status for o in untouched.values()} == {AnswerStatus.WITHHELD}
    assert all("requested" in o.detail for o in untouched.values())


async def test_oversized_identifiers_are_refused_and_not_sealed_into_the_log(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """A 100 kB 'address' is INVALID_ARGUMENT, and the permanent refusal entry does not carry it sealed."""
    service, _, sink = make_service(holder, keys, nobody)
    huge = SubjectIdentifiers(nhs_number=KAI.nhs_number, address_line="x" * 100_000)
    with pytest.raises(InvalidRequest, match=r"subject\.address_line"):
        await service.query(POLICE_RESEARCHER, replace(SCREENING, subject=huge), timeout=5)
    (event,) = sink.events
    assert event.sealed_identifiers == ""
    assert event.subject_tokens, "the refusal can still be found by NHS number"


async def test_when_several_people_match_no_records_are_released(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """Two people with the same name and date of birth: 'known', with the contact, but nobody's records."""
    def answer(agency: str, command: LookupCommand) -> LookupResult:
        if agency != "police":
            return nobody(agency, command)
        return LookupResult(agency, (
            PersonMatch("P1", "name_and_date_of_birth", (police_record(record_id="P-1"),), False),
            PersonMatch("P2", "name_and_date_of_birth", (police_record(record_id="P-2"),), False),
        ), contact(agency))

    service, _, sink = make_service(holder, keys, answer)
    by_name = replace(SCREENING, subject=SubjectIdentifiers(given_name="Kai", family_name="Mercer",
                                                            date_of_birth="2017-05-14"))
    result = await service.query(POLICE_RESEARCHER, by_name, timeout=5)
    police = next(o for o in result.answers if o.agency == "police")
    assert police.status is AnswerStatus.MATCH
    assert police.level is DisclosureLevel.EXISTS
    assert police.records == ()
    assert police.contact is not None
    assert "2 people match" in police.detail
    assert next(e for e in sink.events if e.agency == "police").level == "EXISTS"


async def test_a_querys_lookups_leave_before_its_identifiers_are_sealed_and_tokenised(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """Tokens and the sealed identifiers are needed only for the audit entries, so they are made after every
    lookup has been handed to the transport (while the agencies answer), and every entry still carries them."""
    asked_when_sealed: list[int] = []

    class WatchedSealer(IdentifierSealer):
        def seal(self, subject: SubjectIdentifiers, *, aad: bytes) -> str:
            asked_when_sealed.append(len(transport.calls))
            return super().seal(subject, aad=aad)

    async def answering_later(agency: str, command: LookupCommand) -> LookupResult:
        await asyncio.sleep(0)  # as over the network: the answer comes on a later turn of the loop
        return nobody(agency, command)

    transport = FakeAgencyTransport(answering_later)
    sink = RecordingAuditSink()
    service = QueryService(
        policy=holder, transport=transport, audit=sink, tokeniser=SubjectTokeniser(keys["token"]),
        sealer=WatchedSealer(keys["sealing"]), pseudonym_keys=keys["pseudonym"], clock=FixedClock(),
    )
    result = await service.query(POLICE_RESEARCHER, SCREENING, timeout=5)
    assert asked_when_sealed == [len(result.answers)]  # sealed once, after all seven lookups left
    sealed = {e.sealed_identifiers for e in sink.events}
    assert len(sealed) == 1
    assert next(iter(sealed)).startswith("k1:")
    assert all(e.subject_tokens for e in sink.events)


def test_a_requests_base_event_is_made_once_whichever_thread_asks_first() -> None:
    """A large answer's entry is made on a worker thread; threads asking at once share one event (one seal)."""
    made: list[int] = []
    event = AuditEvent(kind=AuditKind.DISCLOSURE, occurred_at=datetime(2026, 9, 1, tzinfo=UTC), request_id="r")

    def make() -> AuditEvent:
        made.append(1)
        time.sleep(0.01)
        return event

    base = BaseEvent(make)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: base.get(), range(8)))
    assert made == [1]
    assert all(g is event for g in got)
    assert BaseEvent(event).get() is event


class PreparingSink(RecordingAuditSink):
    """Notes which agencies' entries were prepared (encoded ahead of the append) by the time of each note."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[str] = []

    def prepare(self, event: AuditEvent) -> AuditEvent:
        self.prepared.append(event.agency)
        return event


async def test_each_agencys_entry_is_prepared_as_its_answer_arrives_not_after_the_slowest(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """While police has not answered yet, every other agency's audit entry is already encoded, so the append
    after the slowest answer has only that answer's entry left to encode. Nothing is released early: the
    answers and their receipts come back together, after the one append."""
    release = asyncio.Event()
    prepared_before_police: list[str] = []
    sink = PreparingSink()

    async def police_last(agency: str, command: LookupCommand) -> LookupResult:
        if agency == "police":
            await release.wait()
        return nobody(agency, command)

    service, _, _ = make_service(holder, keys, police_last, sink)  # type: ignore[arg-type]
    query = asyncio.ensure_future(service.query(POLICE_RESEARCHER, SCREENING, timeout=5))
    for _ in range(50):  # let the other agencies answer
        await asyncio.sleep(0)
    prepared_before_police[:] = sink.prepared
    assert sink.events == []  # nothing appended (so nothing released) while police is still out
    release.set()
    result = await query
    holders = [a.agency for a in result.answers]
    assert sorted(prepared_before_police) == sorted(a for a in holders if a != "police")
    assert sorted(sink.prepared) == sorted(holders)
    assert [e.agency for e in sink.events] == holders
    assert all(a.receipt is not None for a in result.answers)


async def test_the_transport_learns_how_many_queries_are_in_progress(
    holder: PolicyHolder, keys: dict[str, Keyring]
) -> None:
    """The occupancy counter given to the service (and to a transport that coalesces lookups under load)
    counts each query while it is answered and uncounts it after, refused or not."""
    seen: list[int] = []
    occupancy = Occupancy()

    def counting(agency: str, command: LookupCommand) -> LookupResult:
        seen.append(occupancy.active)
        return nobody(agency, command)

    transport = FakeAgencyTransport(counting)
    service = QueryService(
        policy=holder, transport=transport, audit=RecordingAuditSink(), tokeniser=SubjectTokeniser(keys["token"]),
        sealer=IdentifierSealer(keys["sealing"]), pseudonym_keys=keys["pseudonym"], clock=FixedClock(),
        occupancy=occupancy,
    )
    await service.query(POLICE_RESEARCHER, SCREENING, timeout=5)
    assert seen
    assert seen == [1] * len(seen)  # every agency asked saw exactly this one query in progress
    assert occupancy.active == 0
    with pytest.raises((RequestRefused, InvalidRequest)):
        await service.query(POLICE_RESEARCHER, replace(SCREENING, request_id="req-2", purpose="no_such_purpose"),
                            timeout=5)
    assert occupancy.active == 0
