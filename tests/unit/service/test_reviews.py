"""The review use cases with the shipped policy, a real SQLite review store, a fake node and a fixed clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agency_stubs import make_record
from gateway.audit import IdentifierSealer
from gateway.domain import (
    AgencyContact,
    AnswerStatus,
    AuditEvent,
    AuditKind,
    AuditReceipt,
    DisclosureLevel,
    FieldDisclosure,
    Record,
    SubjectIdentifiers,
)
from gateway.errors import AgencyUnavailable, AuditUnavailable, InvalidRequest
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser
from gateway.policy import PolicyHolder
from gateway.review.model import Review, ReviewAlreadyDecided, ReviewNotFound, ReviewState
from gateway.review.store import ReviewStore, open_review_store
from gateway.service.fanout import AgencyOutcome
from gateway.service.planning import AgencyPlan, Routing
from gateway.service.ports import LookupCommand, LookupResult, PersonMatch
from gateway.service.query import Caller, QueryCommand, QueryService
from gateway.service.reviews import NOT_IN_TIME, ReviewDecision, ReviewDesk, ReviewEvent
from gateway.testing import FakeAgencyTransport, FixedClock, RecordingAuditSink

KAI = SubjectIdentifiers(nhs_number="9990000018", given_name="Kai", family_name="Mercer", date_of_birth="2017-05-14")
RESEARCHER = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "r.1", "mash_researcher_police")
OTHER_RESEARCHER = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "r.2",
                          "mash_researcher_police")
HEALTH_DP = Caller("spiffe://mash.local/agency/health/system/review-console", "health", "dp.1",
                   "health_designated_professional")
HEALTH_DP_2 = Caller("spiffe://mash.local/agency/health/system/review-console", "health", "dp.2",
                     "health_designated_professional")
GUARDIAN = Caller("spiffe://mash.local/agency/health/system/review-console", "health", "cg.1",
                  "health_caldicott_guardian")
POLICE_SUPERVISOR = Caller("spiffe://mash.local/agency/police/system/review-console", "police", "ps.1",
                           "police_mash_supervisor")
SCREENING = QueryCommand("req-r1", KAI, "safeguarding_screening", "dpa_2018_sch1_para18", "mash-isa-2026", "MASH-1")
SECRET = "DIAGNOSIS-SECRET"


def health_records() -> list[Record]:
    when = datetime(2026, 8, 1, tzinfo=UTC)
    return [
        make_record("health.mental_health", "MH-1", when, "CAMHS involvement.", {
            "service": "CAMHS", "diagnosis": SECRET, "status": "open", "clinician": "Dr Lee", "notes": "NOTES-SECRET"}),
        make_record("health.attendance", "A-1", when, "A&E attendance.", {
            "attendance_date": "2026-08-01", "hospital": "Royal Hospital", "presenting_complaint": "fall",
            "injury_type": "bruise", "attendances_12m": "2", "accompanied_by": "mother", "notes": "n"}),
    ]


def node_holding(held: list[Record]) -> Callable[[str, LookupCommand], LookupResult]:
    """A node that returns exactly the records of the categories it is asked for and says whether it holds
    any in the existence categories asked about, like a real one; only health holds records (`held`)."""

    def node(agency: str, command: LookupCommand) -> LookupResult:
        mine = held if agency == "health" else []
        records = tuple(r for r in mine if r.category in command.categories)
        known = any(r.category in command.existence_categories for r in mine)
        match = PersonMatch("p-1", "nhs_number", records, known_in_existence_categories=known)
        return LookupResult(agency, (match,), AgencyContact(agency, team=f"{agency} MASH desk"))

    return node


node = node_holding(health_records())


class Notices:
    """Records every review notice."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ReviewEvent]] = []

    async def notify(self, review: Review, event: ReviewEvent) -> None:
        self.sent.append((review.review_id, event))


class World:
    def __init__(self, service: QueryService, transport: FakeAgencyTransport, sink: RecordingAuditSink,
                 clock: FixedClock, notices: Notices, store: ReviewStore) -> None:
        self.service, self.transport, self.sink, self.clock, self.notices, self.store = (
            service, transport, sink, clock, notices, store)

    @property
    def desk(self) -> ReviewDesk:
        assert self.service.reviews is not None
        return self.service.reviews

    async def held(self) -> str:
        result = await self.service.query(RESEARCHER, SCREENING, timeout=5)
        (health,) = [a for a in result.answers if a.agency == "health"]
        return health.review_id


async def make_world(holder: PolicyHolder, keys: dict[str, Keyring], path: Path,
                     held: list[Record] | None = None) -> World:
    store = await open_review_store(f"sqlite:///{path / 'reviews.sqlite'}")
    clock, sink, notices = FixedClock(), RecordingAuditSink(), Notices()
    transport = FakeAgencyTransport(node if held is None else node_holding(held))
    service = QueryService(
        policy=holder, transport=transport, audit=sink, tokeniser=SubjectTokeniser(keys["token"]),
        sealer=IdentifierSealer(keys["sealing"]), pseudonym_keys=keys["pseudonym"], clock=clock,
        review_store=store, review_notifier=notices,
    )
    return World(service, transport, sink, clock, notices, store)


@pytest.fixture
async def world(holder: PolicyHolder, keys: dict[str, Keyring], tmp_path: Path) -> AsyncIterator[World]:
    made = await make_world(holder, keys, tmp_path)
    yield made
    await made.store.close()


def asked(world: World, agency: str) -> list[LookupCommand]:
    return [command for a, command, _ in world.transport.calls if a == agency]


async def test_a_review_that_cannot_be_stored_fails_the_query_at_once_with_nothing_released(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The review is stored while the agencies answer; if that fails the caller hears so straight away (not
    when the agencies have answered or the deadline has passed), nothing is audited as disclosed, and the
    lookups still out are abandoned."""
    async def store_down(reviews: Sequence[Review]) -> None:
        raise AuditUnavailable("review store down (test)")

    monkeypatch.setattr(world.store, "create", store_down)
    hanging = asyncio.Event()

    async def only_the_review_check_answers(agency: str, command: LookupCommand) -> LookupResult:
        if not command.categories and command.existence_categories == ("health.mental_health",):
            return node(agency, command)  # the review's own check: health holds mental-health records
        await hanging.wait()  # every main lookup is still out
        raise AssertionError("unreachable")

    world.transport._handler = only_the_review_check_answers  # type: ignore[attr-defined]
    started = asyncio.get_running_loop().time()
    with pytest.raises(AuditUnavailable, match="review store down"):
        await world.service.query(RESEARCHER, SCREENING, timeout=20)
    assert asyncio.get_running_loop().time() - started < 5  # not the 20 s deadline
    assert world.sink.events == []


async def test_a_query_marks_health_pending_review_and_fetches_nothing_under_review(world: World) -> None:
    """Health's answer carries a review id and deadline; the node is never asked for the category under review."""
    result = await world.service.query(RESEARCHER, SCREENING, timeout=5)
    (health,) = [a for a in result.answers if a.agency == "health"]
    assert health.review_id.startswith("rev-")
    assert health.review_deadline == world.clock.now() + timedelta(hours=24)  # health's review_hours
    others = [a for a in result.answers if a.agency != "health"]
    assert len(others) == len(result.answers) - 1
    assert [a.review_id for a in others] == [""] * len(others)
    assert health.status is AnswerStatus.MATCH
    assert [r.record_id for r in health.records] == ["A-1"]  # the rest of the answer is returned as now
    # The existence check may leave first (the review step starts before the lookups): content first here.
    command, check = sorted(asked(world, "health"), key=lambda c: not c.categories)
    assert "health.mental_health" not in command.categories
    assert "health.mental_health" in command.existence_categories
    # The one other question: does health hold mental-health records at all (EXISTS, no content)?
    assert (check.categories, check.existence_categories) == ((), ("health.mental_health",))
    assert all(r.category != "health.mental_health" for r in health.records)
    assert SECRET not in repr(result)
    requested = [e for e in world.sink.events if e.kind is AuditKind.REVIEW]
    assert [(e.details["step"], e.agency, e.categories) for e in requested] == [
        ("requested", "health", ("health.mental_health",))]
    disclosure = next(e for e in world.sink.events if e.kind is AuditKind.DISCLOSURE and e.agency == "health")
    assert disclosure.details["review_id"] == health.review_id
    await world.desk.drain()  # the answer does not wait for the reviewers' notice
    assert world.notices.sent == [(health.review_id, ReviewEvent.REQUESTED)]


async def test_reviewers_list_their_own_agency_only_and_open_fetches_the_records(world: World) -> None:
    """Health's reviewer sees the review and the records from the node; police's supervisor sees nothing."""
    review_id = await world.held()
    listed = await world.desk.pending(HEALTH_DP)
    assert [r.review_id for r in listed] == [review_id]
    assert listed[0].role == "mash_researcher_police"
    assert listed[0].purpose == "safeguarding_screening"
    assert await world.desk.pending(POLICE_SUPERVISOR) == []
    with pytest.raises(ReviewNotFound):
        await world.desk.open(POLICE_SUPERVISOR, review_id)
    with pytest.raises(ReviewNotFound):
        await world.desk.pending(RESEARCHER)  # a role that reviews for nobody
    review, view = await world.desk.open(HEALTH_DP, review_id)
    assert review.review_id == review_id
    assert asked(world, "health")[-1].categories == ("health.mental_health",)
    assert [r.record_id for r in view.records] == ["MH-1"]
    opened = world.sink.events[-1]
    assert (opened.kind, opened.details["step"], opened.user) == (AuditKind.REVIEW, "opened", "dp.1")
    assert opened.payload_digest.startswith("sha256:")


async def test_an_escalation_reviewer_sees_a_review_only_once_it_is_escalated(world: World) -> None:
    """The Caldicott guardian sees health's review after escalate_after_hours, not before."""
    review_id = await world.held()
    assert await world.desk.pending(GUARDIAN) == []
    world.clock.advance(8 * 3600)
    assert [r.review_id for r in await world.desk.pending(GUARDIAN)] == [review_id]


async def test_nothing_under_review_reaches_the_requester_before_approval(world: World) -> None:
    """Pending, the outcome has no answer; approved, the requester gets the records redacted and audited."""
    review_id = await world.held()
    pending = await world.desk.outcome(RESEARCHER, review_id)
    assert pending.review.state is ReviewState.PENDING_REVIEW
    assert pending.answer is None
    with pytest.raises(ReviewNotFound):
        await world.desk.outcome(OTHER_RESEARCHER, review_id)  # only the requester learns the outcome
    decided = await world.desk.decide(HEALTH_DP, review_id, ReviewDecision(approve=True))
    assert decided.approved == {"health.mental_health": DisclosureLevel.PERTINENT}
    assert (review_id, ReviewEvent.DECIDED) in world.notices.sent
    released = await world.desk.outcome(RESEARCHER, review_id)
    assert released.answer is not None
    assert released.answer.level is DisclosureLevel.PERTINENT
    assert [r.record_id for r in released.answer.records] == ["MH-1"]
    assert SECRET not in repr(released.answer)  # redacted exactly as any PERTINENT answer would be
    release = world.sink.events[-1]
    assert (release.kind, release.details["step"], release.details["review_id"]) == (
        AuditKind.DISCLOSURE, "released", review_id)
    assert release.manifest
    assert release.payload_digest.startswith("sha256:")
    steps = [e.details.get("step") for e in world.sink.events if e.request_id == SCREENING.request_id
             and e.details.get("review_id") == review_id]
    assert steps == ["requested", "answered", "approved", "released"]


async def test_an_approval_at_exists_releases_no_content(world: World) -> None:
    """Approving at a lower level than asked releases only what that level allows: existence, no records."""
    review_id = await world.held()
    await world.desk.decide(HEALTH_DP, review_id, ReviewDecision(approve=True, level=DisclosureLevel.EXISTS))
    released = await world.desk.outcome(RESEARCHER, review_id)
    assert released.answer is not None
    assert released.answer.records == ()
    assert "health.mental_health" not in asked(world, "health")[-1].categories


async def test_a_decline_releases_nothing_and_tells_the_requester_why(world: World) -> None:
    """A declined review's outcome has the reason and no answer; the node is not asked again."""
    review_id = await world.held()
    calls = len(world.transport.calls)
    await world.desk.decide(HEALTH_DP, review_id, ReviewDecision(approve=False, reason="not proportionate"))
    outcome = await world.desk.outcome(RESEARCHER, review_id)
    assert (outcome.review.state, outcome.review.reason, outcome.answer) == (
        ReviewState.DECLINED, "not proportionate", None)
    assert len(world.transport.calls) == calls


async def test_an_undecided_review_expires_at_its_deadline_and_both_sides_are_told(world: World) -> None:
    """After health's 24 hours the review is declined as not decided in time, audited, and cannot be decided."""
    review_id = await world.held()
    world.clock.advance(24 * 3600 - 1)
    assert (await world.desk.outcome(RESEARCHER, review_id)).review.state is ReviewState.PENDING_REVIEW
    world.clock.advance(1)
    outcome = await world.desk.outcome(RESEARCHER, review_id)
    assert (outcome.review.state, outcome.review.reason) == (ReviewState.EXPIRED, NOT_IN_TIME)
    assert (review_id, ReviewEvent.EXPIRED) in world.notices.sent
    assert [e.details["step"] for e in world.sink.events if e.kind is AuditKind.REVIEW] == ["requested", "expired"]
    with pytest.raises(ReviewAlreadyDecided) as raised:
        await world.desk.decide(HEALTH_DP, review_id, ReviewDecision(approve=True))
    assert raised.value.winner.state is ReviewState.EXPIRED


async def test_two_reviewers_deciding_at_once_exactly_one_wins(world: World) -> None:
    """Concurrent approve and decline: one is stored and audited, the other learns the winning decision."""
    review_id = await world.held()
    results = await asyncio.gather(
        world.desk.decide(HEALTH_DP, review_id, ReviewDecision(approve=True)),
        world.desk.decide(HEALTH_DP_2, review_id, ReviewDecision(approve=False, reason="no")),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Review)]
    losers = [r for r in results if isinstance(r, ReviewAlreadyDecided)]
    assert len(winners) == len(losers) == 1
    assert losers[0].winner == winners[0]
    decided = [e for e in world.sink.events if e.kind is AuditKind.REVIEW and e.details["step"] != "requested"]
    assert len(decided) == 1


@pytest.mark.parametrize(
    ("review_id", "decision", "fields"),
    [
        ("", ReviewDecision(approve=True), ["review_id"]),
        ("x" * 200, ReviewDecision(approve=True), ["review_id"]),
        ("rev-1", ReviewDecision(approve=False), ["reason"]),
        ("rev-1", ReviewDecision(approve=False, reason="no", level=DisclosureLevel.EXISTS), ["level"]),
        ("rev-1", ReviewDecision(approve=True, level=DisclosureLevel.NONE), ["level"]),
        ("", ReviewDecision(approve=True, reason="r" * 600), ["review_id", "reason"]),
    ],
)
async def test_bad_decisions_are_invalid_argument_with_field_violations(
    world: World, review_id: str, decision: ReviewDecision, fields: list[str]
) -> None:
    """Each malformed decision names every bad field; nothing is stored or audited."""
    with pytest.raises(InvalidRequest) as raised:
        await world.desk.decide(HEALTH_DP, review_id, decision)
    assert [v.field for v in raised.value.violations] == fields
    assert world.sink.events == []


async def test_approving_a_category_not_under_review_is_refused(world: World) -> None:
    """A reviewer cannot widen a review to a category it does not hold."""
    review_id = await world.held()
    with pytest.raises(InvalidRequest, match="categories"):
        await world.desk.decide(HEALTH_DP, review_id,
                                ReviewDecision(approve=True, categories=("health.attendance",)))


async def test_reviews_survive_a_restart(holder: PolicyHolder, keys: dict[str, Keyring], tmp_path: Path) -> None:
    """A review held before a restart is listed, decided and released after it."""
    first = await make_world(holder, keys, tmp_path)
    review_id = await first.held()
    await first.store.close()
    second = await make_world(holder, keys, tmp_path)
    try:
        assert [r.review_id for r in await second.desk.pending(HEALTH_DP)] == [review_id]
        await second.desk.decide(HEALTH_DP, review_id, ReviewDecision(approve=True))
        released = await second.desk.outcome(RESEARCHER, review_id)
        assert released.answer is not None
        assert [r.record_id for r in released.answer.records] == ["MH-1"]
    finally:
        await second.store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(level=st.sampled_from([None, DisclosureLevel.EXISTS, DisclosureLevel.PERTINENT]),
       decide=st.sampled_from(["approve", "decline", "pending", "expire"]))
def test_released_content_never_exceeds_the_approval(
    holder: PolicyHolder, keys: dict[str, Keyring], tmp_path_factory: pytest.TempPathFactory,
    level: DisclosureLevel | None, decide: str,
) -> None:
    """Whatever the decision, the requester sees mental-health content only after an approval at PERTINENT,
    and every released field is no more than PERTINENT redaction lets through."""

    async def scenario() -> None:
        w = await make_world(holder, keys, tmp_path_factory.mktemp("prop"))
        try:
            result = await w.service.query(RESEARCHER, SCREENING, timeout=5)
            assert all(r.category != "health.mental_health" for a in result.answers for r in a.records)
            review_id = next(a.review_id for a in result.answers if a.agency == "health")
            if decide == "approve":
                await w.desk.decide(HEALTH_DP, review_id, ReviewDecision(approve=True, level=level))
            elif decide == "decline":
                await w.desk.decide(HEALTH_DP, review_id, ReviewDecision(approve=False, reason="no"))
            elif decide == "expire":
                w.clock.advance(25 * 3600)
            outcome = await w.desk.outcome(RESEARCHER, review_id)
            records = outcome.answer.records if outcome.answer else ()
            mental = [r for r in records if r.category == "health.mental_health"]
            if decide != "approve" or level is DisclosureLevel.EXISTS:
                assert mental == []
            for record in mental:
                assert all(f.disclosure is not FieldDisclosure.FULL or f.category != "record.detail"
                           for f in record.fields)
                assert SECRET not in repr(record)
        finally:
            await w.store.close()

    asyncio.run(scenario())


async def test_the_sweeper_expires_a_review_nobody_reads(world: World) -> None:
    """Without any read, the background sweep declines an overdue review and tells both sides."""
    from gateway.review.sweeper import ReviewSweeper

    review_id = await world.held()
    world.clock.advance(25 * 3600)
    sweeper = ReviewSweeper(world.desk, interval=0.01)
    sweeper.start()
    try:
        for _ in range(200):
            stored = await world.store.get(review_id)
            if stored is not None and stored.state is ReviewState.EXPIRED:
                break
            await asyncio.sleep(0.01)
    finally:
        await sweeper.stop()
    assert stored is not None
    assert stored.state is ReviewState.EXPIRED
    assert (review_id, ReviewEvent.EXPIRED) in world.notices.sent


# -- nothing under review held: no review, and no existence leak -----------------------------------------

def _attendance_only() -> list[Record]:
    return [r for r in health_records() if r.category == "health.attendance"]


def _seen(outcome: AgencyOutcome) -> tuple[object, ...]:
    """What the requester sees of an agency's answer apart from the review and the receipt."""
    return (outcome.agency, outcome.status, outcome.level, outcome.records, outcome.contact, outcome.categories,
            outcome.detail, outcome.ambiguous)


async def test_a_node_holding_nothing_under_review_gets_no_review(
        holder: PolicyHolder, keys: dict[str, Keyring], tmp_path: Path) -> None:
    """Health holds attendance but no mental-health record: no review, no notice, nothing for reviewers, and
    health's answer is exactly what policy gives without review."""
    w = await make_world(holder, keys, tmp_path, held=_attendance_only())
    try:
        result = await w.service.query(RESEARCHER, SCREENING, timeout=5)
        (health,) = [a for a in result.answers if a.agency == "health"]
        assert (health.review_id, health.review_deadline) == ("", None)
        assert health.status is AnswerStatus.MATCH  # known to health, as before
        assert [r.record_id for r in health.records] == ["A-1"]
        assert await w.desk.pending(HEALTH_DP) == []
        assert [e for e in w.sink.events if e.kind is AuditKind.REVIEW] == []
        assert w.notices.sent == []
        assert all("review_id" not in e.details for e in w.sink.events)
    finally:
        await w.store.close()


class HealthNotEnrolledForSubject:
    """A locator whose index says health's node (enrolled completely) holds no token of the subject."""

    async def route(self, subject: object) -> Routing:
        return Routing(enrolled=frozenset({"health"}), matched=frozenset())


async def test_a_node_the_locator_skips_is_not_asked_even_for_the_review_check(
        holder: PolicyHolder, keys: dict[str, Keyring], tmp_path: Path) -> None:
    """With the locator showing health does not hold the subject, health's node never hears of the query, not
    even through the existence check before a review, and no review is made for what it cannot hold."""
    store = await open_review_store(f"sqlite:///{tmp_path / 'reviews.sqlite'}")
    transport = FakeAgencyTransport(node)
    service = QueryService(
        policy=holder, transport=transport, audit=RecordingAuditSink(), tokeniser=SubjectTokeniser(keys["token"]),
        sealer=IdentifierSealer(keys["sealing"]), pseudonym_keys=keys["pseudonym"], clock=FixedClock(),
        review_store=store, review_notifier=Notices(), router=HealthNotEnrolledForSubject())
    try:
        result = await service.query(RESEARCHER, SCREENING, timeout=5)
        (health,) = [a for a in result.answers if a.agency == "health"]
        assert health.status is AnswerStatus.NO_MATCH
        assert (health.review_id, health.review_deadline) == ("", None)
        assert [a for a, _, _ in transport.calls if a == "health"] == []
        assert [a for a, _, _ in transport.calls if a == "police"], "other agencies are still asked"
        assert service.reviews is not None
        assert await service.reviews.pending(HEALTH_DP) == []
    finally:
        await store.close()


async def test_an_unanswered_existence_check_creates_no_review(
        holder: PolicyHolder, keys: dict[str, Keyring], tmp_path: Path) -> None:
    """If the node cannot say whether it holds records under review, no review is created (nothing is
    released either way); the rest of health's answer stands."""
    full = node_holding(health_records())

    def flaky(agency: str, command: LookupCommand) -> LookupResult:
        if agency == "health" and not command.categories:
            raise AgencyUnavailable("node down for the check")
        return full(agency, command)

    w = await make_world(holder, keys, tmp_path)
    w.transport._handler = flaky  # type: ignore[attr-defined]
    try:
        result = await w.service.query(RESEARCHER, SCREENING, timeout=5)
        (health,) = [a for a in result.answers if a.agency == "health"]
        assert health.review_id == ""
        assert [r.record_id for r in health.records] == ["A-1"]
        assert await w.desk.pending(HEALTH_DP) == []
    finally:
        await w.store.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(held=st.sets(st.sampled_from(["health.mental_health", "health.attendance"])),
       stream=st.booleans())
def test_a_review_exists_exactly_when_the_node_holds_records_under_review(
    holder: PolicyHolder, keys: dict[str, Keyring], tmp_path_factory: pytest.TempPathFactory,
    held: set[str], stream: bool,
) -> None:
    """For any records health holds: a review (and a reviewer's notice) exists iff it holds mental-health
    records; every review reviewers see names only categories the node holds; and the rest of every answer
    is identical to what a gateway without reviews gives, so the check adds nothing else the requester learns."""

    async def scenario() -> None:
        records = [r for r in health_records() if r.category in held]
        path = tmp_path_factory.mktemp("held")
        w = await make_world(holder, keys, path, held=records)
        plain = QueryService(
            policy=holder, transport=FakeAgencyTransport(node_holding(records)), audit=RecordingAuditSink(),
            tokeniser=SubjectTokeniser(keys["token"]), sealer=IdentifierSealer(keys["sealing"]),
            pseudonym_keys=keys["pseudonym"], clock=w.clock,
        )
        try:
            if stream:
                answers = [o async for _, _, o in w.service.stream(RESEARCHER, SCREENING, timeout=5)]
            else:
                answers = list((await w.service.query(RESEARCHER, SCREENING, timeout=5)).answers)
            baseline = (await plain.query(RESEARCHER, SCREENING, timeout=5)).answers
            assert sorted(map(_seen, answers), key=repr) == sorted(map(_seen, baseline), key=repr)
            review_ids = [a.review_id for a in answers if a.review_id]
            pending = await w.desk.pending(HEALTH_DP)
            if "health.mental_health" in held:
                assert len(review_ids) == 1
                assert [r.review_id for r in pending] == review_ids
                assert w.notices.sent == [(review_ids[0], ReviewEvent.REQUESTED)]
            else:
                assert review_ids == []
                assert pending == []
                assert w.notices.sent == []
            for review in pending:
                assert set(review.requested) <= held
            assert all(r.category != "health.mental_health" for a in answers for r in a.records)
        finally:
            await w.store.close()

    asyncio.run(scenario())


# -- the streaming outcome -------------------------------------------------------------------------------

async def test_watch_yields_the_pending_review_then_the_released_outcome_once_decided(world: World) -> None:
    """The watcher gets PENDING_REVIEW at once, then, when a reviewer approves, the redacted answer; then it ends."""
    review_id = await world.held()
    watch = world.desk.watch(RESEARCHER, review_id, poll=30)
    first = await anext(watch)
    assert (first.review.state, first.answer) == (ReviewState.PENDING_REVIEW, None)
    later = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.05)
    assert not later.done()
    await world.desk.decide(HEALTH_DP, review_id, ReviewDecision(approve=True))
    released = await asyncio.wait_for(later, 5)  # woken by the decision, not by the 30 s poll
    assert released.review.state is ReviewState.APPROVED
    assert released.answer is not None
    assert [r.record_id for r in released.answer.records] == ["MH-1"]
    assert SECRET not in repr(released.answer)
    assert world.sink.events[-1].details["step"] == "released"
    with pytest.raises(StopAsyncIteration):
        await anext(watch)


async def test_a_watcher_reconnecting_after_the_decision_gets_the_outcome_at_once(world: World) -> None:
    """Nothing is lost while nobody watches: the stored outcome is the first and only item."""
    review_id = await world.held()
    await world.desk.decide(HEALTH_DP, review_id, ReviewDecision(approve=False, reason="not proportionate"))
    got = [o async for o in world.desk.watch(RESEARCHER, review_id)]
    assert [(o.review.state, o.review.reason, o.answer) for o in got] == [
        (ReviewState.DECLINED, "not proportionate", None)]


async def test_only_the_requester_may_watch_a_review(world: World) -> None:
    """Another user, or the same user asserting another role, or a reviewer, is told the review does not exist."""
    review_id = await world.held()
    for other in (OTHER_RESEARCHER, Caller(RESEARCHER.identity, "police", RESEARCHER.user, "mash_manager"),
                  HEALTH_DP):
        with pytest.raises(ReviewNotFound):
            await anext(world.desk.watch(other, review_id))
    with pytest.raises(InvalidRequest) as raised:
        await anext(world.desk.watch(RESEARCHER, ""))
    assert [v.field for v in raised.value.violations] == ["review_id"]


async def test_a_watcher_sees_the_review_expire_at_its_deadline(world: World) -> None:
    """Once the deadline passes while watching, the review is declined as not decided in time and delivered."""
    review_id = await world.held()
    watch = world.desk.watch(RESEARCHER, review_id, poll=0.01)
    assert (await anext(watch)).review.state is ReviewState.PENDING_REVIEW
    world.clock.advance(24 * 3600)
    expired = await asyncio.wait_for(anext(watch), 5)
    assert (expired.review.state, expired.review.reason, expired.answer) == (ReviewState.EXPIRED, NOT_IN_TIME, None)
    assert (review_id, ReviewEvent.EXPIRED) in world.notices.sent


async def test_a_cancelled_watch_stops_waiting(world: World) -> None:
    """A caller's deadline cancels the wait; the review is untouched and can still be decided and watched."""
    review_id = await world.held()
    watch = world.desk.watch(RESEARCHER, review_id, poll=30)
    await anext(watch)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(watch), 0.05)
    await watch.aclose()
    await world.desk.decide(HEALTH_DP, review_id, ReviewDecision(approve=True))
    assert [o.review.state async for o in world.desk.watch(RESEARCHER, review_id)] == [ReviewState.APPROVED]


# -- deadlines from the referral's rating ------------------------------------------------------------------

class Deadlines:
    def __init__(self, rating: str, due: datetime | None) -> None:
        self.rating, self.due, self.asked = rating, due, []

    async def deadline(self, referral_id: str, requested_at: datetime) -> tuple[str, datetime | None]:
        self.asked.append((referral_id, requested_at))
        return self.rating, self.due


async def test_research_under_a_rated_referral_takes_the_ratings_deadline(world: World) -> None:
    """The review is due when the referral's rating says, carries the rating, and lists by nearest deadline."""
    unlinked = await world.held()
    due = world.clock.now() + timedelta(hours=4)
    deadlines = Deadlines("red", due)
    world.desk.use_referrals(deadlines)
    linked = replace(SCREENING, request_id="req-r2", case_reference="ref-1", referral_id="ref-1")
    result = await world.service.query(RESEARCHER, linked, timeout=5)
    (health,) = [a for a in result.answers if a.agency == "health"]
    assert health.review_deadline == due
    assert deadlines.asked == [("ref-1", world.clock.now())]
    listed = await world.desk.pending(HEALTH_DP)
    assert [(r.review_id, r.rating, r.referral_id) for r in listed] == [
        (health.review_id, "red", "ref-1"), (unlinked, "", "")]  # 4 hours comes before health's 24


async def test_a_rating_without_a_target_falls_back_to_the_agency_default(world: World) -> None:
    """A rating with no deadline (or no rating) leaves the agency's review_hours, and records the rating."""
    world.desk.use_referrals(Deadlines("blue", None))
    linked = replace(SCREENING, case_reference="ref-2", referral_id="ref-2")
    result = await world.service.query(RESEARCHER, linked, timeout=5)
    (health,) = [a for a in result.answers if a.agency == "health"]
    assert health.review_deadline == world.clock.now() + timedelta(hours=24)
    (review,) = await world.desk.pending(HEALTH_DP)
    assert review.rating == "blue"


async def test_a_category_the_requester_may_not_know_of_is_never_asked_about(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where policy gives NONE without review, asking the node would tell the requester more than they may know:
    the gateway does not ask, and the review is created from the policy alone."""
    import gateway.service.planning as planning_module

    original = planning_module.plan_request

    def without_existence(*args: object, **kwargs: object) -> tuple[AgencyPlan, ...]:
        return tuple(replace(p, existence=tuple(c for c in p.existence if c != "health.mental_health"))
                     for p in original(*args, **kwargs))  # type: ignore[arg-type]

    monkeypatch.setattr(planning_module, "plan_request", without_existence)
    world.transport._handler = node_holding(_attendance_only())  # type: ignore[attr-defined]
    review_id = await world.held()
    assert review_id
    assert all("health.mental_health" not in c.existence_categories and "health.mental_health" not in c.categories
               for c in asked(world, "health"))
    assert [r.review_id for r in await world.desk.pending(HEALTH_DP)] == [review_id]


class BatchRecordingSink(RecordingAuditSink):
    """Records each append as one batch, and what had been noticed by then."""

    def __init__(self, notices: Notices) -> None:
        super().__init__()
        self.notices = notices
        self.batches: list[tuple[list[str], int]] = []

    async def append(self, events: Sequence[AuditEvent]) -> list[AuditReceipt]:
        self.batches.append(([str(e.details.get("step", e.kind.value)) for e in events], len(self.notices.sent)))
        return await super().append(events)


async def test_a_querys_review_request_is_audited_in_the_answers_append_before_its_notice(
        holder: PolicyHolder, keys: dict[str, Keyring], tmp_path: Path) -> None:
    """One append carries the "requested" entry first and the answers after it (one commit, same order); the
    caller's receipts are the answers'; the reviewers are told only after the append; the review is stored."""
    made = await make_world(holder, keys, tmp_path)
    sink = BatchRecordingSink(made.notices)
    made.service = QueryService(
        policy=holder, transport=made.transport, audit=sink, tokeniser=SubjectTokeniser(keys["token"]),
        sealer=IdentifierSealer(keys["sealing"]), pseudonym_keys=keys["pseudonym"], clock=made.clock,
        review_store=made.store, review_notifier=made.notices,
    )
    try:
        result = await made.service.query(RESEARCHER, SCREENING, timeout=5)
        query_batches = [b for b in sink.batches if "requested" in b[0]]
        assert len(query_batches) == 1
        steps, noticed_before = query_batches[0]
        assert steps[0] == "requested"
        assert "answered" in steps[1:]  # health's answer naming the review, after the request
        assert noticed_before == 0
        assert made.service.reviews is not None
        await made.service.reviews.drain()
        assert [event for _, event in made.notices.sent] == [ReviewEvent.REQUESTED]
        (health,) = [a for a in result.answers if a.agency == "health"]
        requested_at = len(sink.events) - len(steps)
        assert all(a.receipt is not None and a.receipt.index > requested_at for a in result.answers)
        assert await made.store.get(health.review_id) is not None
    finally:
        await made.store.close()


async def test_an_audit_failure_after_the_review_is_stored_releases_nothing_and_tells_nobody(
        holder: PolicyHolder, keys: dict[str, Keyring], tmp_path: Path) -> None:
    made = await make_world(holder, keys, tmp_path)
    made.sink.fail = True
    try:
        with pytest.raises(AuditUnavailable):
            await made.service.query(RESEARCHER, SCREENING, timeout=5)
        assert made.notices.sent == []
    finally:
        await made.store.close()


class HeldNotices(Notices):
    """Notices that are written only once `release` is set (a slow outbox commit)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def notify(self, review: Review, event: ReviewEvent) -> None:
        await self.release.wait()
        await super().notify(review, event)


async def test_a_query_is_answered_without_waiting_for_its_reviewers_notice_which_drain_completes(
        holder: PolicyHolder, keys: dict[str, Keyring], tmp_path: Path) -> None:
    """The reviewers' notice is written after the append but off the answer's path: with the notice held, the
    query is still answered (its review stored and audited), and `drain` returns once the notice is written."""
    made = await make_world(holder, keys, tmp_path)
    notices = HeldNotices()
    made.service = QueryService(
        policy=holder, transport=made.transport, audit=made.sink, tokeniser=SubjectTokeniser(keys["token"]),
        sealer=IdentifierSealer(keys["sealing"]), pseudonym_keys=keys["pseudonym"], clock=made.clock,
        review_store=made.store, review_notifier=notices,
    )
    desk = made.service.reviews
    assert desk is not None
    result = await asyncio.wait_for(made.service.query(RESEARCHER, SCREENING, timeout=5), 5)
    (health,) = [a for a in result.answers if a.agency == "health"]
    assert health.review_id, "the answer should name the review"
    assert notices.sent == [], "the notice was held, so nothing should have been written yet"
    draining = asyncio.ensure_future(desk.drain())
    await asyncio.sleep(0.01)
    assert not draining.done(), "drain must wait for the held notice"
    notices.release.set()
    await asyncio.wait_for(draining, 5)
    assert notices.sent == [(health.review_id, ReviewEvent.REQUESTED)]
