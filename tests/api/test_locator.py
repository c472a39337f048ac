"""The locator end to end over real mTLS: nodes enrol blinded tokens, and a question reaches only the nodes
that hold its subject (plus nodes that do not enrol). Lookups are counted at every node."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from google.rpc import error_details_pb2
from hub_helpers import SCREENING, field_violations, rich_status, subject

from agency_stubs import World, build_world, make_record
from agency_stubs.cast import KAI_MERCER, NOAH_FENWICK
from agency_stubs.dataset import AgencyDataset, PersonEntry
from agency_stubs.locator_enrolment import (
    LocatorEnrolment,
    enrol_running_node,
    keep_enrolled,
    person_inputs,
    settle,
)
from gateway.api.tls import channel_credentials, client_credentials
from gateway.audit import decode_entry
from gateway.demo.partnership import HubClient, Partnership
from gateway.domain import AuditEvent, AuditKind
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import locator_service_pb2 as locator_pb
from gateway.generated.mash.gateway.v1 import locator_service_pb2_grpc as locator_grpc
from gateway.locator import oprf
from gateway.partnership import load_plan

# Every record-holding agency of the shipped partnership, in declared order (each runs a node that enrols).
AGENCIES = load_plan(Path(__file__).resolve().parents[2] / "policies").record_holders
MATCH, NO_MATCH = hub_pb.ANSWER_STATUS_MATCH, hub_pb.ANSWER_STATUS_NO_MATCH
NOBODY = {"nhs_number": "999 009 0009", "given_name": "Nobody", "family_name": "Anywhere",
          "date_of_birth": "2014-02-03"}


@pytest.fixture(scope="module")
def small_world() -> World:
    """A 200-person world with the fixed cast: enrolment takes a fraction of a second."""
    return build_world(people=200)


@dataclasses.dataclass
class Located:
    partnership: Partnership
    enrolments: dict[str, LocatorEnrolment]

    def researcher(self) -> HubClient:
        return self.partnership.client("police", "case-system", user="researcher.police",
                                       role="mash_researcher_police")

    def locator(self, agency: str) -> locator_grpc.LocatorServiceAsyncStub:
        return locator_grpc.LocatorServiceStub(node_channel(self.partnership, agency))


def node_channel(partnership: Partnership, agency: str) -> grpc.aio.Channel:
    """A channel to the gateway presenting the agency node's own certificate."""
    return partnership.channel(channel_credentials(partnership.pki.ca_cert, *partnership.pki.node(agency)))


@contextlib.asynccontextmanager
async def located(tmp_path: Path, policy_dir: Path, world: World, *, enrolling: Sequence[str] = AGENCIES,
                  settings: Mapping[str, Any] | None = None) -> AsyncIterator[Located]:
    async with Partnership(tmp_path / "state", policy_dir, world=world, settings=settings) as partnership:
        enrolments = {}
        for agency in enrolling:
            enrolments[agency], _ = await enrol_running_node(partnership.nodes[agency],
                                                             node_channel(partnership, agency))
        yield Located(partnership, enrolments)


def asked(captured: list[dict[str, Any]]) -> set[str]:
    """The agencies whose node saw a lookup."""
    return {str(e["agency"]) for e in captured if e.get("event") in {"lookup", "lookup_rejected"}}


async def audit_events(partnership: Partnership) -> list[AuditEvent]:
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 100_000)
    return [decode_entry(r.data).event for r in rows]


async def test_a_person_known_to_two_agencies_is_asked_of_those_two_only(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Noah is known to health and education: only their nodes see the lookup; every other agency answers
    NO_MATCH exactly as a node that was asked and holds nothing would."""
    async with located(tmp_path, policy_dir, small_world) as loc:
        with structlog.testing.capture_logs() as captured:
            response = await loc.researcher().query(subject=subject(NOAH_FENWICK), **SCREENING)
        assert asked(captured) == {"health", "education"}
        statuses = {a.agency: a.status for a in response.answers}
        assert [a.agency for a in response.answers] == list(AGENCIES)
        assert {a for a, s in statuses.items() if s == MATCH} == {"health", "education"}
        skipped = [a for a in response.answers if a.agency not in {"health", "education"}]
        assert all(a.status == NO_MATCH and a.HasField("receipt") for a in skipped)
        assert len({a.detail for a in skipped}) == 1  # one wording for every no-match, asked or not


async def test_a_skipped_answer_reads_exactly_like_an_asked_no_match(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Housing's answer about Noah is the same message whether its node was asked (not enrolling) or skipped
    (enrolled, no token matched), receipt apart; only the audit entry says the node was not asked."""
    answers = {}
    for name, enrolling in (("skipped", AGENCIES), ("asked", tuple(a for a in AGENCIES if a != "housing"))):
        async with located(tmp_path / name, policy_dir, small_world, enrolling=enrolling) as loc:
            with structlog.testing.capture_logs() as captured:
                response = await loc.researcher().query(subject=subject(NOAH_FENWICK), **SCREENING)
            assert ("housing" in asked(captured)) is (name == "asked")
            housing = next(a for a in response.answers if a.agency == "housing")
            entry = (await audit_events(loc.partnership))[housing.receipt.entry_index]
            assert (entry.details.get("locator") == "not asked") is (name == "skipped")
            housing.ClearField("receipt")
            answers[name] = housing
    assert answers["skipped"].status == NO_MATCH
    assert answers["skipped"] == answers["asked"]


async def test_a_person_known_nowhere_reaches_no_enrolling_node(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Nobody holds this person: no enrolled node hears of the question, and every answer is NO_MATCH."""
    async with located(tmp_path, policy_dir, small_world) as loc:
        with structlog.testing.capture_logs() as captured:
            response = await loc.researcher().query(subject=NOBODY, **SCREENING)
        assert asked(captured) == set()
        assert {a.status for a in response.answers} == {NO_MATCH}


async def test_a_node_that_does_not_enrol_is_still_asked(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Probation does not enrol: it is asked about everyone, as before the locator."""
    enrolling = tuple(a for a in AGENCIES if a != "probation")
    async with located(tmp_path, policy_dir, small_world, enrolling=enrolling) as loc:
        with structlog.testing.capture_logs() as captured:
            await loc.researcher().query(subject=NOBODY, **SCREENING)
        assert asked(captured) == {"probation"}


async def test_name_and_date_of_birth_variants_find_the_same_nodes(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Without an NHS number, a differently written name and birth date still routes to Noah's nodes."""
    variant = {"given_name": "  NOAH ", "family_name": "fenwick", "date_of_birth": "30/09/2016"}
    async with located(tmp_path, policy_dir, small_world) as loc:
        with structlog.testing.capture_logs() as captured:
            response = await loc.researcher().query(subject=variant, **SCREENING)
        assert asked(captured) == {"health", "education"}
        assert {a.agency for a in response.answers if a.status == MATCH} == {"health", "education"}


async def test_a_record_change_is_enrolled_incrementally_and_ambiguity_stays_ambiguous(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Housing gains a second "Noah Fenwick" born the same day: housing's node enrols the new token alone,
    is then asked by name and birth date, and answers "known" without releasing anyone's records."""
    async with located(tmp_path, policy_dir, small_world) as loc:
        node = loc.partnership.nodes["housing"]
        dataset = node.servicer.dataset
        twins = [PersonEntry(f"HSG-TWIN-{n}", "Noah", "Fenwick", date(2016, 9, 30), nhs_number=nhs,
                             records=(make_record("housing.arrears", f"HSG-TWIN-R{n}", datetime(2026, 1, n, tzinfo=UTC),
                                                  "Rent arrears", {"arrears_band": "low", "since": "2026-01-01"}),))
                 for n, nhs in ((1, ""), (2, ""))]
        node.replace_dataset(AgencyDataset("housing", [*dataset.persons.values(), *twins],
                                           mash_contact=dataset.mash_contact, catalogue=dataset.catalogue))
        await settle(loc.enrolments["housing"])
        evaluations = [e for e in await audit_events(loc.partnership) if e.kind is AuditKind.LOCATOR
                       and e.details["rpc"] == "Evaluate" and e.caller.endswith("/housing/node")]
        assert evaluations[-1].details["elements"] == "1"  # the twins share one new input; nothing else re-sent
        before = (await loc.locator("housing").GetEnrolmentState(locator_pb.GetEnrolmentStateRequest())).enrolments
        assert before[0].complete
        by_name = {k: v for k, v in subject(NOAH_FENWICK).items() if k != "nhs_number"}
        with structlog.testing.capture_logs() as captured:
            response = await loc.researcher().query(subject=by_name, **SCREENING)
        assert asked(captured) == {"health", "education", "housing"}
        housing = next(a for a in response.answers if a.agency == "housing")
        assert (housing.status, housing.level) == (MATCH, common_pb.DISCLOSURE_LEVEL_EXISTS)
        assert not housing.records
        assert "2 people match these identifiers" in housing.detail


async def test_screening_asks_childrens_social_care_only_about_children_it_holds(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """The open-case check still finds Kai's open case; for Noah (not known to csc) csc never hears of it."""
    async with located(tmp_path, policy_dir, small_world) as loc:
        with structlog.testing.capture_logs() as captured:
            kai = await loc.researcher().screen(subject=subject(KAI_MERCER), **SCREENING)
        assert asked(captured) == {"csc"}
        assert kai.result == hub_pb.SCREEN_RESULT_OPEN
        with structlog.testing.capture_logs() as captured:
            noah = await loc.researcher().screen(subject=subject(NOAH_FENWICK), **SCREENING)
        assert asked(captured) == set()
        assert noah.result == hub_pb.SCREEN_RESULT_NOT_KNOWN


async def test_a_node_changes_only_its_own_enrolment_and_a_client_system_is_refused(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Police's node enrolling Noah's tokens makes police asked about Noah (what a false enrolment gains)
    and changes nothing of health's; a client system's certificate may not use the locator at all."""
    async with located(tmp_path, policy_dir, small_world) as loc:
        health_before = await loc.locator("health").GetEnrolmentState(locator_pb.GetEnrolmentStateRequest())
        police = loc.locator("police")
        inputs = person_inputs(small_world.datasets["health"].persons[NOAH_FENWICK.person_refs["health"]])
        blinded = [oprf.blind(data) for data in inputs]
        answer = await police.Evaluate(locator_pb.EvaluateRequest(blinded_elements=[b for _, b in blinded]))
        tokens = [oprf.finalize(d, r, e)[:16] for d, (r, _), e in zip(inputs, blinded, answer.evaluated_elements,
                                                                       strict=True)]
        enrolled = await police.Enrol(locator_pb.EnrolRequest(key_id=answer.key_id, tokens=tokens))
        assert enrolled.added == len(tokens)
        health_after = await loc.locator("health").GetEnrolmentState(locator_pb.GetEnrolmentStateRequest())
        assert health_after.enrolments == health_before.enrolments
        assert health_after.node == "health"
        with structlog.testing.capture_logs() as captured:
            response = await loc.researcher().query(subject=subject(NOAH_FENWICK), **SCREENING)
        assert asked(captured) == {"health", "education", "police"}
        assert next(a for a in response.answers if a.agency == "police").status == NO_MATCH
        system = locator_grpc.LocatorServiceStub(
            loc.partnership.channel(client_credentials(loc.partnership.pki, "police", "case-system")))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await system.GetEnrolmentState(locator_pb.GetEnrolmentStateRequest())
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_bad_locator_input_is_refused_with_field_violations_and_audited(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Wrong-length or invalid elements and tokens are INVALID_ARGUMENT naming the field, never the value;
    an unknown key id is FAILED_PRECONDITION naming the active key; each refusal is audited."""
    async with located(tmp_path, policy_dir, small_world, enrolling=()) as loc:
        stub = loc.locator("csc")
        for request, field in ((locator_pb.EvaluateRequest(blinded_elements=[b"\x01" * 31]), "blinded_elements[0]"),
                               (locator_pb.EvaluateRequest(blinded_elements=[b"\xff" * 32]), "blinded_elements[0]"),
                               (locator_pb.EvaluateRequest(), "blinded_elements")):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Evaluate(request)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert field in field_violations(caught.value)
            assert "ffff" not in (caught.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Enrol(locator_pb.EnrolRequest(key_id="k1", tokens=[b"\x00" * 15, b"\x00" * 16]))
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(caught.value)) == {"tokens[0]"}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Withdraw(locator_pb.WithdrawRequest(key_id="k1", tokens=[b"\x00" * 16], all=True))
        assert set(field_violations(caught.value)) == {"tokens"}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Enrol(locator_pb.EnrolRequest(key_id="k9", tokens=[b"\x00" * 16]))
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        info = error_details_pb2.ErrorInfo()
        rich_status(caught.value).details[0].Unpack(info)
        assert (info.reason, dict(info.metadata)) == ("UNKNOWN_LOCATOR_KEY", {"active_key_id": "k1"})
        refusals = [e for e in await audit_events(loc.partnership)
                    if e.kind in (AuditKind.REFUSAL, AuditKind.LOCATOR) and e.status != "OK"]
        assert len(refusals) == 6
        assert all(e.caller == "spiffe://mash.local/agency/csc/node" for e in refusals)


async def test_evaluations_are_rate_limited_and_capped_per_node(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Past its burst a node is told RESOURCE_EXHAUSTED with a retry delay; another node is unaffected;
    past the cap, so is every later call in the window."""
    settings = {"locator_evaluation_rate": 0.001, "locator_evaluation_burst": 4, "locator_evaluation_cap": 6}
    async with located(tmp_path, policy_dir, small_world, enrolling=(), settings=settings) as loc:
        elements = [oprf.blind(bytes([n]))[1] for n in range(5)]
        csc = loc.locator("csc")
        first = await csc.Evaluate(locator_pb.EvaluateRequest(blinded_elements=elements[:4]))
        assert first.evaluations_remaining == 2
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await csc.Evaluate(locator_pb.EvaluateRequest(blinded_elements=elements[:1]))
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        await loc.locator("health").Evaluate(locator_pb.EvaluateRequest(blinded_elements=elements[:4]))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await loc.locator("health").Evaluate(locator_pb.EvaluateRequest(blinded_elements=elements[:3]))
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "cap" in (caught.value.details() or "")


async def test_enrolment_and_evaluation_are_audited_as_counts_only(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Every Evaluate and Enrol call is an audit entry of the node and counts; no token, element or
    identifier appears in the log."""
    async with located(tmp_path, policy_dir, small_world, enrolling=("education",)) as loc:
        entries = [e for e in await audit_events(loc.partnership) if e.kind is AuditKind.LOCATOR]
        assert {e.details["rpc"] for e in entries} == {"Evaluate", "Enrol"}
        assert all(e.caller == "spiffe://mash.local/agency/education/node" for e in entries)
        evaluated = sum(int(e.details["elements"]) for e in entries if e.details["rpc"] == "Evaluate")
        enrolled = [e for e in entries if e.details["rpc"] == "Enrol"][-1]
        assert enrolled.details["complete"] == "true"
        assert int(enrolled.details["enrolled"]) <= evaluated
        assert all(not e.subject_tokens and not e.sealed_identifiers for e in entries)
        allowed = {"rpc", "elements", "key_id", "sent", "added", "enrolled", "complete"}
        assert all(set(e.details) <= allowed for e in entries)


async def test_a_node_that_does_not_declare_enrolment_cannot_claim_a_complete_one(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Without FEATURE_LOCATOR_ENROLMENT in its Describe, a node may enrol tokens but not mark them complete,
    so the gateway keeps asking it about everyone."""
    async with located(tmp_path, policy_dir, small_world, enrolling=()) as loc:
        stub = loc.locator("probation")
        partial = await stub.Enrol(locator_pb.EnrolRequest(key_id="k1", tokens=[b"\x01" * 16]))
        assert (partial.added, partial.complete) == (1, False)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Enrol(locator_pb.EnrolRequest(key_id="k1", completeness=locator_pb.COMPLETENESS_COMPLETE))
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        with structlog.testing.capture_logs() as captured:
            await loc.researcher().query(subject=NOBODY, **SCREENING)
        assert "probation" in asked(captured)


async def test_a_node_started_with_locator_enrols_itself_and_keeps_current(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """`python -m agency_stubs --locator` runs keep_enrolled: the node enrols over its own mTLS channel,
    and after that the gateway skips it for people it does not hold."""
    async with located(tmp_path, policy_dir, small_world, enrolling=()) as loc:
        node = loc.partnership.nodes["csc"]
        task = asyncio.ensure_future(keep_enrolled(node, loc.partnership.address, loc.partnership.pki.root,
                                                   retry=0.05))
        try:
            state = loc.locator("csc")
            for _ in range(200):
                enrolment = (await state.GetEnrolmentState(locator_pb.GetEnrolmentStateRequest())).enrolments
                if enrolment and enrolment[0].complete:
                    break
                await asyncio.sleep(0.05)
            assert enrolment[0].complete
            with structlog.testing.capture_logs() as captured:
                await loc.researcher().query(subject=NOBODY, **SCREENING)
            assert "csc" not in asked(captured)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
