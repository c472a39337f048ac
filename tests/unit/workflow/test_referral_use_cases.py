"""The referral use cases on a real SQLite store, the shipped policies, a recording audit sink and a fixed clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.domain import AuditKind, SubjectIdentifiers
from gateway.errors import AuditUnavailable, InvalidRequest, RequestRefused
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser
from gateway.policy import PolicyHolder
from gateway.service.validation import Caller
from gateway.testing import FixedClock, RecordingAuditSink
from gateway.workflow.policy import MashRules, load_workflow
from gateway.workflow.referral import Action, InvalidTransition, NoticeKind, State, VersionConflict
from gateway.workflow.screening import OpenCase, OpenCaseAnswer
from gateway.workflow.sealing import ContentSealer
from gateway.workflow.service import Decision, ReferralWorkflow, SubmitCommand
from gateway.workflow.sqlite_store import SqliteReferralStore
from gateway.workflow.store import QueueFilter

CONSOLE = "spiffe://mash.local/agency/hub/system/mash-console"
MANAGER = Caller(CONSOLE, "hub", "mash.manager.1", "mash_manager")
POLICE = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "pc.1234", "police_officer")
RESEARCHER = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "r.7",
                    "mash_researcher_police")
CSC_RECEIVER = "spiffe://mash.local/agency/csc/system/case-system"
ASC_RECEIVER = "spiffe://mash.local/agency/asc/system/case-system"
NHS = "9434765919"
KAI = SubjectIdentifiers(nhs_number=NHS, given_name="Kai", family_name="Mercer", date_of_birth="2017-03-14")
MONDAY = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


@dataclass
class FakeScreening:
    """An open-case check that gives a set answer and records what it was asked."""

    answer: OpenCaseAnswer
    asked: int = 0
    kinds: list[str] = field(default_factory=list)  # the subject kind of each check (child or adult)

    async def check(self, subject: SubjectIdentifiers, *, referral_id: str, mash: MashRules) -> OpenCaseAnswer:
        self.asked += 1
        self.kinds.append(mash.subject)
        return self.answer


@dataclass
class Rig:
    workflow: ReferralWorkflow
    store: SqliteReferralStore
    sink: RecordingAuditSink
    clock: FixedClock
    screening: FakeScreening


@pytest.fixture
async def rig(tmp_path: Path, policy_dir: Path) -> AsyncIterator[Rig]:
    """A workflow whose screening finds nothing open, at Monday 09:30."""
    store = await SqliteReferralStore.open(f"sqlite:///{tmp_path}/referrals.sqlite",
                                           ContentSealer(Keyring.generate("k1")))
    clock = FixedClock(MONDAY)
    sink = RecordingAuditSink()
    screening = FakeScreening(OpenCaseAnswer(OpenCase.NOT_OPEN, request_id="screen-x"))
    holder = PolicyHolder.from_directory(policy_dir, clock=clock)
    workflow = ReferralWorkflow(store=store, workflow=load_workflow(policy_dir), policy=holder, audit=sink,
                                tokeniser=SubjectTokeniser(Keyring.generate("k1")), clock=clock,
                                screening=screening)
    yield Rig(workflow, store, sink, clock, screening)
    await store.close()


def _submit(mash: str = "children", **overrides: object) -> SubmitCommand:
    base: dict[str, object] = {"mash": mash, "subject": KAI, "concern": "Police attended a domestic incident",
                               "categories": ("domestic_abuse",), "borough": "north"}
    base.update(overrides)
    return SubmitCommand(**base)  # type: ignore[arg-type]


def _transitions(sink: RecordingAuditSink) -> list[tuple[str, str, str]]:
    return [(e.details["operation"], e.details.get("from", ""), e.status) for e in sink.events
            if e.kind is AuditKind.REFERRAL_TRANSITION]


async def test_a_child_open_to_childrens_services_is_routed_at_once(rig: Rig) -> None:
    """Screening finds an open case: routed automatically to the allocated team, with a notice for them."""
    rig.screening.answer = OpenCaseAnswer(OpenCase.OPEN, team="Family Safeguarding Team 2", worker="sw.amira",
                                          request_id="screen-1")
    referral = await rig.workflow.submit(POLICE, _submit())
    assert referral.state is State.ROUTED
    assert (referral.team, referral.worker, referral.routing) == ("Family Safeguarding Team 2", "sw.amira",
                                                                  "automatic")
    history = await rig.store.history(referral.referral_id)
    assert [(h.action, h.actor) for h in history] == [(Action.SUBMIT, POLICE.identity), (Action.ROUTE, "gateway")]
    (notice,) = await rig.store.notifications(CSC_RECEIVER, after=0, limit=10)
    assert (notice.kind, notice.referral_id, notice.team) == (NoticeKind.ROUTED, referral.referral_id,
                                                              "Family Safeguarding Team 2")
    assert _transitions(rig.sink) == [("submit", "", "RECEIVED"), ("route", "RECEIVED", "ROUTED")]
    route_entry = rig.sink.events[-1]
    assert route_entry.details["automatic"] == "true"
    assert "screen-1" in route_entry.reason


@pytest.mark.parametrize("result", [OpenCase.NOT_OPEN, OpenCase.AMBIGUOUS, OpenCase.WITHHELD,
                                    OpenCase.UNAVAILABLE])
async def test_anything_but_an_open_case_is_left_for_a_person(rig: Rig, result: OpenCase) -> None:
    """Not open, ambiguous, withheld or unreachable: screened, not routed, no notice, the finding recorded."""
    rig.screening.answer = OpenCaseAnswer(result, team="should not be used")
    referral = await rig.workflow.submit(POLICE, _submit())
    assert referral.state is State.SCREENED
    assert referral.screening == result.value
    assert not referral.team
    assert await rig.store.notifications(CSC_RECEIVER, after=0, limit=10) == []


async def test_an_adult_open_to_adult_social_care_is_routed_at_once_to_adult_social_care(rig: Rig) -> None:
    """The adults' MASH runs the adult's open-case check (not the children's); an open case goes to asc's system."""
    rig.screening.answer = OpenCaseAnswer(OpenCase.OPEN, team="Adult Safeguarding Team", worker="T. Osei",
                                          request_id="screen-a")
    adult = SubjectIdentifiers(given_name="Edith", family_name="Okafor", date_of_birth="1941-05-02")
    referral = await rig.workflow.submit(POLICE, _submit("adults", subject=adult, categories=("self_neglect",)))
    assert rig.screening.kinds == ["adult"]
    assert (referral.state, referral.team, referral.routing) == (State.ROUTED, "Adult Safeguarding Team", "automatic")
    (notice,) = await rig.store.notifications(ASC_RECEIVER, after=0, limit=10)
    assert (notice.kind, notice.referral_id) == (NoticeKind.ROUTED, referral.referral_id)
    assert await rig.store.notifications(CSC_RECEIVER, after=0, limit=10) == []


async def test_an_adults_referral_not_open_to_adult_social_care_waits_for_a_person(rig: Rig) -> None:
    """Not open (or not known) to adult social care: screened, never routed; the MASH rates it on adults' ratings."""
    adult = SubjectIdentifiers(given_name="Edith", family_name="Okafor", date_of_birth="1941-05-02")
    referral = await rig.workflow.submit(POLICE, _submit("adults", subject=adult, categories=("self_neglect",)))
    assert rig.screening.kinds == ["adult"]
    assert (referral.state, referral.screening) == (State.SCREENED, "NOT_OPEN")
    rated = await rig.workflow.rate(MANAGER, referral.referral_id, "red")
    # The adults' Red is 8 working hours (the children's is 4): from Monday 09:30 to Tuesday 09:30.
    assert rated.research_due == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    with pytest.raises(InvalidRequest):
        await rig.workflow.rate(MANAGER, referral.referral_id, "blue")  # a children's rating only


async def test_a_red_referral_goes_through_to_a_decision_and_closes(rig: Rig) -> None:
    """Rate Red, research, decide s47 (notice to the social work system), close: one audit entry per step."""
    referral = await rig.workflow.submit(POLICE, _submit())
    rated = await rig.workflow.rate(MANAGER, referral.referral_id, "red")
    assert rated.research_due == MONDAY + timedelta(hours=4)
    assert rated.decision_due == MONDAY + timedelta(hours=4)
    researching = await rig.workflow.link_research(RESEARCHER, referral.referral_id, ["police", "health"])
    assert researching.state is State.RESEARCHING
    assert researching.agencies_answered == ("health", "police")
    more = await rig.workflow.link_research(RESEARCHER, referral.referral_id, ["education", "police"])
    assert more.agencies_answered == ("education", "health", "police")
    rig.clock.advance(3600)
    await rig.workflow.complete_research(MANAGER, referral.referral_id)
    decided = await rig.workflow.decide(MANAGER, referral.referral_id, Decision(
        "s47_strategy_discussion", "Serious concerns; strategy discussion today", "Family Safeguarding Team 2"))
    assert decided.state is State.DECIDED
    assert decided.content.decision_reason.startswith("Serious concerns")
    (notice,) = await rig.store.notifications(CSC_RECEIVER, after=0, limit=10)
    assert notice.kind is NoticeKind.DECISION
    closed = await rig.workflow.close(MANAGER, referral.referral_id)
    assert closed.state is State.CLOSED
    assert closed.closed_at == rig.clock.now()
    assert [t[2] for t in _transitions(rig.sink)] == [
        "RECEIVED", "SCREENED", "RATED", "RESEARCHING", "RESEARCHING", "RESEARCHING", "RESEARCHING", "DECIDED",
        "CLOSED"]
    assert len(await rig.store.history(referral.referral_id)) == 9
    for event in rig.sink.events:
        assert "Serious concerns" not in repr(event)
        assert NHS not in repr(event)


async def test_an_invalid_step_is_refused_with_the_current_state_and_audited(rig: Rig) -> None:
    """Closing a referral that is only rated: InvalidTransition naming RATED; nothing changes."""
    referral = await rig.workflow.submit(POLICE, _submit())
    await rig.workflow.rate(MANAGER, referral.referral_id, "amber")
    with pytest.raises(InvalidTransition) as caught:
        await rig.workflow.close(MANAGER, referral.referral_id)
    assert caught.value.current is State.RATED
    refusal = rig.sink.events[-1]
    assert (refusal.kind, refusal.status) == (AuditKind.REFUSAL, "FAILED_PRECONDITION")
    assert (await rig.store.get(referral.referral_id)).state is State.RATED


async def test_bad_input_is_refused_field_by_field_without_echoing_values(rig: Rig) -> None:
    """Every bad field is named; no value appears in the error or in the audit entry."""
    bad = SubjectIdentifiers(nhs_number="12345X", given_name="Secretname\x00", date_of_birth="2999-01-01")
    with pytest.raises(InvalidRequest) as caught:
        await rig.workflow.submit(POLICE, _submit("pets", subject=bad, concern=" ", categories=("gossip",),
                                                  received_at=MONDAY + timedelta(days=1), borough="\u202e"))
    fields = {v.field for v in caught.value.violations}
    assert fields >= {"mash", "subject.nhs_number", "subject.date_of_birth", "subject.given_name", "concern",
                      "categories[0]", "received_at", "borough"}
    (entry,) = rig.sink.events
    assert (entry.kind, entry.status) == (AuditKind.REFUSAL, "INVALID_ARGUMENT")
    for value in ("12345X", "Secretname", "2999", "gossip", "pets"):
        assert value not in str(caught.value)
        assert value not in repr(entry)
    assert (await rig.store.queue(QueueFilter(), limit=10)).total == 0


@pytest.mark.parametrize("referral_id", ["", "ref-1", "'; DROP TABLE referrals; --", "ref-" + "g" * 32])
async def test_a_malformed_referral_id_is_invalid_and_not_echoed(rig: Rig, referral_id: str) -> None:
    """A missing or malformed id is INVALID_ARGUMENT on referral_id; the audit entry leaves the id out."""
    with pytest.raises(InvalidRequest) as caught:
        await rig.workflow.rate(MANAGER, referral_id, "red")
    assert [v.field for v in caught.value.violations] == ["referral_id"]
    assert rig.sink.events[-1].case_reference == ""


async def test_roles_may_only_do_what_the_workflow_policy_grants(rig: Rig) -> None:
    """A police officer may submit but not rate; a role the certificate may not assert is refused too."""
    referral = await rig.workflow.submit(POLICE, _submit())
    with pytest.raises(RequestRefused) as caught:
        await rig.workflow.rate(POLICE, referral.referral_id, "red")
    assert caught.value.code == "WORKFLOW_PERMISSION"
    impostor = Caller(POLICE.identity, "police", "pc.1234", "mash_manager")
    with pytest.raises(RequestRefused) as caught:
        await rig.workflow.rate(impostor, referral.referral_id, "red")
    assert caught.value.code == "ROLE_NOT_BOUND"
    assert [e.status for e in rig.sink.events[-2:]] == ["PERMISSION_DENIED", "PERMISSION_DENIED"]


async def test_an_amber_referral_breaches_its_deadline_on_the_clock(rig: Rig) -> None:
    """24 working hours after rating it is still in time; a minute later it is in the overdue queue."""
    referral = await rig.workflow.submit(POLICE, _submit())
    await rig.workflow.rate(MANAGER, referral.referral_id, "amber")
    due = MONDAY + timedelta(days=3)  # 24 working hours from Monday 09:30 is Thursday 09:30
    stored = await rig.store.get(referral.referral_id)
    assert stored.due() == due
    assert (await rig.store.queue(QueueFilter(overdue_at=due), limit=10)).total == 0
    rig.clock.current = due + timedelta(minutes=1)
    overdue = await rig.store.queue(QueueFilter(overdue_at=rig.clock.now()), limit=10)
    assert [r.referral_id for r in overdue.referrals] == [referral.referral_id]


async def test_the_queue_pages_and_hides_content_from_roles_that_may_not_see_it(rig: Rig) -> None:
    """Pages carry a next token and the total; researchers list referrals without their content."""
    ids = [(await rig.workflow.submit(POLICE, _submit())).referral_id for _ in range(3)]
    page, token, visible = await rig.workflow.queue(MANAGER, QueueFilter(), page_size=2, page_token="")
    assert (len(page.referrals), page.total, token, visible) == (2, 3, "2", True)
    rest, token2, _ = await rig.workflow.queue(MANAGER, QueueFilter(), page_size=2, page_token=token)
    assert {r.referral_id for r in (*page.referrals, *rest.referrals)} == set(ids)
    assert token2 == ""
    _, _, researcher_sees = await rig.workflow.queue(RESEARCHER, QueueFilter(), page_size=2, page_token="")
    assert not researcher_sees
    with pytest.raises(InvalidRequest) as caught:
        await rig.workflow.queue(MANAGER, QueueFilter(ratings=("purple",)), page_size=500, page_token="x")
    assert {v.field for v in caught.value.violations} == {"ratings[0]", "page_size", "page_token"}


async def test_merging_needs_another_open_referral(rig: Rig) -> None:
    """A duplicate merges into an open referral; not into itself, not into a finished one."""
    first = await rig.workflow.submit(POLICE, _submit())
    second = await rig.workflow.submit(POLICE, _submit())
    with pytest.raises(InvalidRequest):
        await rig.workflow.merge(MANAGER, second.referral_id, second.referral_id)
    merged = await rig.workflow.merge(MANAGER, second.referral_id, first.referral_id)
    assert (merged.state, merged.merged_into) == (State.MERGED, first.referral_id)
    third = await rig.workflow.submit(POLICE, _submit())
    with pytest.raises(InvalidTransition):
        await rig.workflow.merge(MANAGER, third.referral_id, second.referral_id)


async def test_a_referral_merges_only_into_one_of_its_own_mash(rig: Rig) -> None:
    """A children's referral is never folded into an adults' one (or back): INVALID_ARGUMENT on into_referral_id,
    audited, and both referrals stay as they were."""
    child = await rig.workflow.submit(POLICE, _submit())
    adult = SubjectIdentifiers(given_name="Edith", family_name="Okafor", date_of_birth="1941-05-02")
    adults = await rig.workflow.submit(POLICE, _submit("adults", subject=adult, categories=("self_neglect",)))
    with pytest.raises(InvalidRequest) as caught:
        await rig.workflow.merge(MANAGER, child.referral_id, adults.referral_id)
    assert [v.field for v in caught.value.violations] == ["into_referral_id"]
    assert (await rig.store.get(child.referral_id)).state is child.state
    refusals = [e for e in rig.sink.events if e.kind is AuditKind.REFUSAL and e.status == "INVALID_ARGUMENT"]
    assert refusals
    assert "into_referral_id" in refusals[-1].reason


async def test_two_people_rating_at_once_lose_no_update(rig: Rig) -> None:
    """Concurrent steps on one referral: one wins, the other is VersionConflict and audited as ABORTED."""
    referral = await rig.workflow.submit(POLICE, _submit())
    results = await asyncio.gather(rig.workflow.rate(MANAGER, referral.referral_id, "red"),
                                   rig.workflow.withdraw(MANAGER, referral.referral_id), return_exceptions=True)
    assert sum(isinstance(r, VersionConflict) for r in results) == 1
    assert any(e.status == "ABORTED" for e in rig.sink.events)
    assert len(await rig.store.history(referral.referral_id)) == 3


async def test_retention_purge_deletes_old_closed_referrals_and_is_audited(rig: Rig) -> None:
    """Past the retention period a withdrawn referral is deleted; the purge entry lists its id."""
    referral = await rig.workflow.submit(POLICE, _submit())
    await rig.workflow.withdraw(MANAGER, referral.referral_id)
    assert (await rig.workflow.purge(MANAGER)).referral_ids == ()
    rig.clock.advance((rig.workflow.workflow.retention_days + 1) * 86400)
    assert (await rig.workflow.purge(MANAGER)).referral_ids == (referral.referral_id,)
    purge = rig.sink.events[-1]
    assert purge.kind is AuditKind.REFERRAL_PURGE
    assert purge.details["referral_ids"] == referral.referral_id


async def test_a_purge_the_audit_log_cannot_record_deletes_nothing(rig: Rig) -> None:
    """The purge entry is written before anything is deleted: with the audit log down, every referral stays."""
    referral = await rig.workflow.submit(POLICE, _submit())
    await rig.workflow.withdraw(MANAGER, referral.referral_id)
    rig.clock.advance((rig.workflow.workflow.retention_days + 1) * 86400)
    rig.sink.fail = True
    with pytest.raises(AuditUnavailable):
        await rig.workflow.purge(MANAGER)
    rig.sink.fail = False
    assert (await rig.store.get(referral.referral_id)).referral_id == referral.referral_id


async def test_a_dry_run_purge_deletes_nothing_and_is_audited_as_a_dry_run(rig: Rig) -> None:
    """A dry run names the referral past retention, leaves it in place and writes a DRY_RUN purge entry."""
    referral = await rig.workflow.submit(POLICE, _submit())
    await rig.workflow.withdraw(MANAGER, referral.referral_id)
    rig.clock.advance((rig.workflow.workflow.retention_days + 1) * 86400)
    preview = await rig.workflow.purge(MANAGER, dry_run=True)
    assert (preview.referral_ids, preview.dry_run) == ((referral.referral_id,), True)
    assert (await rig.store.get(referral.referral_id)).referral_id == referral.referral_id
    entry = rig.sink.events[-1]
    assert (entry.kind, entry.status, entry.details["dry_run"]) == (AuditKind.REFERRAL_PURGE, "DRY_RUN", "true")


async def test_a_receiver_resumes_after_its_last_acknowledged_notice(rig: Rig) -> None:
    """Notices wait while the receiver is away; after an ack only newer ones come back."""
    rig.screening.answer = OpenCaseAnswer(OpenCase.OPEN, team="FST 1", worker="sw.1")
    receiver = Caller(CSC_RECEIVER, "csc", "case-system", "social_worker")
    first = await rig.workflow.submit(POLICE, _submit())
    second = await rig.workflow.submit(POLICE, _submit())
    waiting = await rig.workflow.notifications(receiver, after=None, limit=10)
    assert [n.referral_id for n in waiting] == [first.referral_id, second.referral_id]
    await rig.workflow.acknowledge(receiver, waiting[0].seq)
    again = await rig.workflow.notifications(receiver, after=None, limit=10)
    assert [n.referral_id for n in again] == [second.referral_id]
    with pytest.raises(InvalidRequest):
        await rig.workflow.acknowledge(receiver, -1)


async def test_referrals_received_time_defaults_to_now_and_keeps_a_given_one(rig: Rig) -> None:
    """received_at is the source agency's time when given, the gateway's otherwise."""
    given = datetime(2026, 11, 29, 23, 10, tzinfo=UTC)
    assert (await rig.workflow.submit(POLICE, _submit(received_at=given))).received_at == given
    assert (await rig.workflow.submit(POLICE, _submit())).received_at == MONDAY


async def test_a_breach_is_audited_once_per_deadline(rig: Rig) -> None:
    """When a running deadline passes the sweep audits it once; a later sweep adds nothing."""
    referral = await rig.workflow.submit(POLICE, _submit())
    await rig.workflow.rate(MANAGER, referral.referral_id, "red")
    assert await rig.workflow.record_breaches() == 0
    rig.clock.advance(5 * 3600)
    assert await rig.workflow.record_breaches() == 1
    assert await rig.workflow.record_breaches() == 0
    breach = rig.sink.events[-1]
    assert breach.kind is AuditKind.REFERRAL_BREACH
    assert breach.reason.startswith("breach=research; rating=red")
    assert (await rig.store.history(referral.referral_id))[-1].action is Action.RECORD_BREACH
