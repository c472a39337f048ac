"""HubService over real mTLS: answers, identity, bad requests, agreements, redaction and failures."""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import structlog
from hub_helpers import S47, SCREENING, error_reason, field_violations, subject

from agency_stubs import World, make_record
from agency_stubs.cast import KAI_MERCER, NOAH_FENWICK
from gateway.api.tls import channel_credentials
from gateway.audit import decode_entry, load_public_keys, verify_inclusion
from gateway.demo.partnership import HubClient, Partnership
from gateway.domain import AuditKind
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.partnership import load_plan
from gateway.pki import PkiLayout, init_pki

MATCH, NO_MATCH = hub_pb.ANSWER_STATUS_MATCH, hub_pb.ANSWER_STATUS_NO_MATCH
AGENCIES = list(load_plan(Path(__file__).resolve().parents[2] / "policies").record_holders)  # in declared order


def researcher(partnership: Partnership, agency: str = "police", system: str = "case-system") -> HubClient:
    return partnership.client(agency, system, user=f"researcher.{agency}", role=f"mash_researcher_{agency}")


async def audit_events(partnership: Partnership) -> list:  # type: ignore[type-arg]
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 10_000)
    return [decode_entry(r.data).event for r in rows]


def lookups_seen(captured: list[dict[str, object]]) -> int:
    """How many lookups reached any agency node (answered or rejected there)."""
    return sum(1 for e in captured if e.get("event") in {"lookup", "lookup_rejected"})


async def test_a_researcher_gets_one_audited_answer_per_agency(partnership: Partnership) -> None:
    """A MASH researcher's query returns one answer per agency, each with a receipt of its audit entry."""
    response = await researcher(partnership).query(request_id="req-1", subject=subject(), **SCREENING)
    assert [a.agency for a in response.answers] == AGENCIES
    assert response.request_id == "req-1"
    assert response.policy_version.startswith("sha256:")
    statuses = {a.agency: a.status for a in response.answers}
    assert all(statuses[a] == MATCH for a in ("police", "health", "csc", "education")), statuses
    events = await audit_events(partnership)
    for answer in response.answers:
        entry = events[answer.receipt.entry_index]
        assert entry.kind is AuditKind.DISCLOSURE
        assert (entry.agency, entry.request_id) == (answer.agency, "req-1")
        assert entry.policy_version == response.policy_version


async def test_a_receipt_is_provably_in_a_signed_checkpoint(partnership: Partnership) -> None:
    """A receipt's leaf hash is included in the tree a later signed checkpoint commits to."""
    response = await researcher(partnership).query(subject=subject(), **SCREENING)
    assert partnership.gateway is not None
    audit = partnership.gateway.deps.audit
    checkpoint = await audit.checkpoint()
    load_public_keys(partnership.state_dir / "keys" / "checkpoint").verify(checkpoint)
    for answer in response.answers:
        proof = await audit.inclusion_proof(answer.receipt.entry_index, checkpoint.tree_size)
        verify_inclusion(answer.receipt.entry_index, checkpoint.tree_size, answer.receipt.leaf_hash, proof,
                         checkpoint.root_hash)


async def test_stream_query_yields_each_agency_once_as_it_answers(partnership: Partnership) -> None:
    """StreamQuery sends one message per agency, each already audited (it carries a receipt)."""
    messages = await researcher(partnership).stream(request_id="req-stream", subject=subject(), **SCREENING)
    assert sorted(m.answer.agency for m in messages) == sorted(AGENCIES)
    assert all(m.request_id == "req-stream" and m.answer.HasField("receipt") for m in messages)
    assert len({m.answer.receipt.entry_index for m in messages}) == len(AGENCIES)


async def test_screening_finds_the_allocated_team_for_a_child_open_to_social_care(partnership: Partnership) -> None:
    """ScreenReferral returns OPEN with the allocated team and worker for a child with an open case."""
    manager = partnership.client("hub", "mash-console", user="manager.1", role="mash_manager")
    outcome = await manager.screen(subject=subject(KAI_MERCER), **SCREENING)
    assert outcome.result == hub_pb.SCREEN_RESULT_OPEN
    assert (outcome.allocated_team, outcome.allocated_worker) == ("Assessment Team 2", "Sam Okafor")
    assert outcome.HasField("receipt")


async def test_screening_says_not_known_for_a_child_unknown_to_social_care(partnership: Partnership) -> None:
    """A child children's social care does not know is NOT_KNOWN, never silently 'closed'."""
    manager = partnership.client("hub", "mash-console", user="manager.1", role="mash_manager")
    outcome = await manager.screen(subject=subject(NOAH_FENWICK), **SCREENING)
    assert outcome.result == hub_pb.SCREEN_RESULT_NOT_KNOWN


async def test_a_client_without_a_certificate_fails_the_handshake(partnership: Partnership) -> None:
    """Mutual TLS: a client presenting no certificate cannot complete the TLS handshake."""
    stub = HubClient(partnership.channel(None), "someone", "mash_manager")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.query(subject=subject(), timeout=5, **SCREENING)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not [e for e in await audit_events(partnership) if e.kind is AuditKind.DISCLOSURE]


async def test_a_certificate_from_another_ca_fails_the_handshake(partnership: Partnership, tmp_path: Path) -> None:
    """A certificate with a valid-looking identity but issued by a foreign CA is rejected in the handshake."""
    rogue = PkiLayout(tmp_path / "rogue")
    init_pki(rogue.root, clients=["spiffe://mash.local/agency/police/system/case-system"])
    credentials = channel_credentials(partnership.pki.ca_cert, *rogue.client("police", "case-system"))
    stub = HubClient(partnership.channel(credentials), "someone", "mash_researcher_police")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.query(subject=subject(), timeout=5, **SCREENING)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_role_the_certificate_is_not_bound_to_is_refused_and_audited(partnership: Partnership) -> None:
    """The police case system may not assert the MASH manager role: PERMISSION_DENIED, and a refusal entry."""
    client = partnership.client("police", "case-system", user="pc.1", role="mash_manager")
    with structlog.testing.capture_logs() as captured, pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.query(request_id="req-role", subject=subject(), **SCREENING)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "ROLE_NOT_BOUND"
    assert lookups_seen(captured) == 0
    refusals = [e for e in await audit_events(partnership) if e.kind is AuditKind.REFUSAL]
    assert [(e.request_id, e.status, e.role) for e in refusals] == [("req-role", "PERMISSION_DENIED", "mash_manager")]


BAD_REQUESTS = [
    ("no purpose", {"purpose": ""}, "purpose"),
    ("unknown purpose", {"purpose": "curiosity"}, "purpose"),
    ("legal basis not allowed for the purpose", {"legal_basis": "children_act_1989_s17"}, "legal_basis"),
    ("unknown agreement", {"agreement": "handshake-deal"}, "agreement"),
    ("expired agreement", {"agreement": "mash-isa-2024"}, "agreement"),
    ("no case reference", {"case_reference": ""}, "case_reference"),
    ("unknown category", {"categories": ["police.gossip"]}, "categories[0]"),
]


@pytest.mark.parametrize(("change", "field"), [(c, f) for _, c, f in BAD_REQUESTS],
                         ids=[name for name, _, _ in BAD_REQUESTS])
async def test_a_bad_request_is_invalid_argument_naming_the_field(
    partnership: Partnership, change: dict[str, object], field: str
) -> None:
    """Bad requests get INVALID_ARGUMENT with a field violation; no node is asked; the refusal is audited."""
    request = {**SCREENING, **change}
    with structlog.testing.capture_logs() as captured, pytest.raises(grpc.aio.AioRpcError) as caught:
        await researcher(partnership).query(request_id="req-bad", subject=subject(), **request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)
    assert lookups_seen(captured) == 0
    refusals = [e for e in await audit_events(partnership) if e.kind is AuditKind.REFUSAL]
    assert [(e.request_id, e.status) for e in refusals] == [("req-bad", "INVALID_ARGUMENT")]


@pytest.mark.parametrize(
    ("identifiers", "field"),
    [
        ({"nhs_number": "9434765918"}, "subject.nhs_number"),
        ({"nhs_number": "12345"}, "subject.nhs_number"),
        ({"given_name": "Kai", "family_name": "Mercer", "date_of_birth": "2017-02-30"}, "subject.date_of_birth"),
        ({"given_name": "Kai", "family_name": "Mercer", "date_of_birth": "2099-01-01"}, "subject.date_of_birth"),
        ({"given_name": "Kai", "family_name": "Mercer"}, "subject"),
        ({}, "subject"),
    ],
    ids=["bad check digit", "too short", "impossible date", "future date", "no date of birth", "nothing"],
)
async def test_bad_identifiers_are_invalid_argument_without_echoing_them(
    partnership: Partnership, identifiers: dict[str, str], field: str
) -> None:
    """Identifier problems name the field but never repeat the value (it is personal data)."""
    with structlog.testing.capture_logs() as captured, pytest.raises(grpc.aio.AioRpcError) as caught:
        await researcher(partnership).query(subject=identifiers, **SCREENING)
    violations = field_violations(caught.value)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations
    for value in identifiers.values():
        assert value not in (caught.value.details() or "")
        assert all(value not in text for text in violations.values())
    assert lookups_seen(captured) == 0


async def test_a_megabyte_name_is_refused_at_once_and_does_not_stall_other_calls(partnership: Partnership) -> None:
    """A 1 MB name of U+FDFA is INVALID_ARGUMENT within a second; health checks and a light query made
    meanwhile are not held up (identifier sizes are checked before anything is normalised)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    client = researcher(partnership)
    health = health_pb2_grpc.HealthStub(client.channel)
    check = health_pb2.HealthCheckRequest(service="mash.gateway.v1.HubService")
    await health.Check(check, timeout=5)  # the channel is connected before anything is timed
    finished = asyncio.Event()

    async def slowest_health_check() -> float:
        slowest = 0.0
        while not finished.is_set():
            started = time.monotonic()
            await health.Check(check, timeout=10)
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.02)
        return slowest

    async def huge_query() -> tuple[grpc.StatusCode, dict[str, str], float]:
        started = time.monotonic()
        try:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.query(subject={**subject(), "given_name": "\ufdfa" * 340_000}, timeout=30, **SCREENING)
        finally:
            finished.set()
        return caught.value.code(), field_violations(caught.value), time.monotonic() - started

    async def light_query() -> float:
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await client.query(subject=subject(), categories=["police.marac"], timeout=30, **SCREENING)
        return time.monotonic() - started

    probe = asyncio.ensure_future(slowest_health_check())
    (code, violations, refused_after), light = await asyncio.gather(huge_query(), light_query())
    slowest = await probe
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations) == ["subject.given_name"]
    assert refused_after < 1.0
    assert slowest < 0.5
    assert light < 2.0


async def test_thousands_of_unknown_categories_give_an_error_a_default_client_can_read(
    partnership: Partnership,
) -> None:
    """Two thousand unknown categories: INVALID_ARGUMENT whose details fit the default trailer size, and a
    refusal entry of bounded size."""
    categories = [f"unknown.category.{i}" for i in range(2000)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await researcher(partnership).query(request_id="req-many", subject=subject(), categories=categories,
                                            **SCREENING)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(caught.value)) == ["categories"]
    (refusal,) = [e for e in await audit_events(partnership) if e.request_id == "req-many"]
    assert len(refusal.reason) < 200


async def test_a_category_outside_the_cited_agreement_is_permission_denied(partnership: Partnership) -> None:
    """A housing officer asking about health under the housing agreement is refused before any node is asked."""
    client = partnership.client("housing", "housing-system", user="ho.1", role="housing_officer")
    with structlog.testing.capture_logs() as captured, pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.query(subject=subject(), purpose="housing_management", legal_basis="uk_gdpr_6_1_e",
                           agreement="housing-partnership-2026", case_reference="HSG-1", categories=["health"])
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "AGREEMENT_CATEGORY"
    assert lookups_seen(captured) == 0
    assert [e.status for e in await audit_events(partnership) if e.kind is AuditKind.REFUSAL] == [
        "PERMISSION_DENIED"]


async def test_a_purpose_outside_the_cited_agreement_is_permission_denied(partnership: Partnership) -> None:
    """Citing the housing agreement for a child protection enquiry is refused: it does not cover the purpose."""
    client = partnership.client("housing", "housing-system", user="ho.1", role="housing_officer")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.query(subject=subject(), purpose="s47_enquiry", legal_basis="children_act_1989_s47",
                           agreement="housing-partnership-2026", case_reference="HSG-2")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "AGREEMENT_PURPOSE"


CANARY = "CANARY-7f3a-shouted-through-the-letterbox"


async def test_a_dropped_field_never_reaches_an_operational_role_but_reaches_the_researcher(
    partnership: Partnership, shared_world: World
) -> None:
    """A canary planted in a health narrative (rule: drop) is absent for a social worker, present in full."""
    record = make_record(
        "health.attendance", "HEALTH-CANARY-1", datetime(2026, 10, 2, 14, 30, tzinfo=UTC),
        "A&E attendance with a head injury.",
        {"attendance_date": "2026-10-02", "hospital": "Homerton University Hospital",
         "presenting_complaint": "head injury", "injury_type": "laceration", "attendances_12m": "3",
         "accompanied_by": "mother", "notes": CANARY},
    )
    partnership.nodes["health"].replace_dataset(
        shared_world.datasets["health"].with_extra_records(KAI_MERCER, [record])
    )
    social_worker = partnership.client("csc", "case-system", user="sw.1", role="social_worker")
    operational = await social_worker.query(subject=subject(), **S47)
    assert CANARY.encode() not in operational.SerializeToString()
    health = next(a for a in operational.answers if a.agency == "health")
    planted = next(r for r in health.records if r.record_id == "HEALTH-CANARY-1")
    notes = next(f for f in planted.fields if f.name == "notes")
    assert (notes.value, notes.disclosure) == ("", hub_pb.FIELD_DISCLOSURE_WITHHELD)

    health_researcher = researcher(partnership, "health", "gp-system")
    full = await health_researcher.query(subject=subject(), **S47)
    assert CANARY.encode() in full.SerializeToString()


async def test_with_one_node_stopped_that_agency_is_unavailable_and_the_others_answer(
    partnership: Partnership,
) -> None:
    """A stopped node gives UNAVAILABLE for its agency only; every other agency answers within the deadline."""
    await partnership.stop_node("education")
    started = time.monotonic()
    response = await researcher(partnership).query(subject=subject(), timeout=5, **SCREENING)
    assert time.monotonic() - started < 5
    statuses = {a.agency: a.status for a in response.answers}
    assert statuses.pop("education") == hub_pb.ANSWER_STATUS_UNAVAILABLE
    assert set(statuses.values()) <= {MATCH, NO_MATCH}
    assert sorted(statuses) == sorted(a for a in AGENCIES if a != "education")


async def test_a_slow_node_times_out_within_the_callers_deadline(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """Fan-out calls carry the caller's remaining deadline: a slow node is TIMED_OUT and the answer is on time."""
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world,
                           node_latency={"probation": 5.0}) as partnership:
        started = time.monotonic()
        response = await researcher(partnership).query(subject=subject(), timeout=1.5, **SCREENING)
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    statuses = {a.agency: a.status for a in response.answers}
    assert statuses["probation"] == hub_pb.ANSWER_STATUS_TIMED_OUT
    assert statuses["police"] == MATCH


async def test_when_the_audit_store_fails_nothing_is_disclosed(partnership: Partnership) -> None:
    """Fail closed: if the audit entry cannot be stored the caller gets UNAVAILABLE and no agency data."""
    assert partnership.gateway is not None
    await partnership.gateway.deps.audit.store.close()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await researcher(partnership).query(subject=subject(), **SCREENING)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(caught.value) == "AUDIT_UNAVAILABLE"
    assert KAI_MERCER.family_name not in (caught.value.details() or "")


async def test_health_checking_reports_the_hub_service_serving(partnership: Partnership) -> None:
    """Standard gRPC health checking answers SERVING for the hub service."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = partnership.client("police", "case-system", user="u", role="r").channel
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="mash.gateway.v1.HubService"), timeout=5
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_gateway_services_in_development(partnership: Partnership) -> None:
    """With reflection on (development), a client can discover the Hub, Audit and Policy services."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = partnership.client("police", "case-system", user="u", role="r").channel
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name async for reply in call for s in reply.list_services_response.service}
    assert {"mash.gateway.v1.HubService", "mash.gateway.v1.AuditService", "mash.gateway.v1.PolicyService"} <= names


async def test_an_unexpected_fault_is_internal_and_does_not_echo_its_message(
    partnership: Partnership, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug surfaces as INTERNAL with a fixed message; whatever the exception said stays out of the reply."""
    assert partnership.gateway is not None

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Kai Mercer 943 476 5919")

    monkeypatch.setattr(partnership.gateway.deps.query, "query", broken)
    with structlog.testing.capture_logs() as captured, pytest.raises(grpc.aio.AioRpcError) as caught:
        await researcher(partnership).query(subject=subject(), **SCREENING)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error"
    assert "Mercer" not in repr(captured)
    assert any(e.get("error_type") == "RuntimeError" for e in captured)


async def test_two_gateways_with_different_policies_run_side_by_side(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """No process-wide configuration: two gateways in one process each answer under their own policy."""
    stricter = tmp_path / "stricter"
    shutil.copytree(policy_dir, stricter)
    health = stricter / "agencies" / "health.csv"
    health.write_text("\n".join(
        line for line in health.read_text().splitlines() if not line.startswith("p, role:social_worker,")
    ) + "\n")
    shutil.rmtree(stricter / "tests")  # its tests describe the shipped grants
    (stricter / "tests").mkdir()
    async with Partnership(tmp_path / "a", policy_dir, world=shared_world) as shipped, \
            Partnership(tmp_path / "b", stricter, world=shared_world) as strict:
        answers = []
        for partnership in (shipped, strict):
            client = partnership.client("csc", "case-system", user="sw.1", role="social_worker")
            response = await client.query(subject=subject(), **S47)
            answers.append({a.agency: a for a in response.answers}["health"])
    assert answers[0].level == common_pb2.DISCLOSURE_LEVEL_PERTINENT
    assert answers[1].level < answers[0].level
    assert answers[0].records
    assert not answers[1].records


async def test_asking_about_a_protected_category_does_not_reveal_who_uses_it(partnership: Partnership) -> None:
    """Jodie has a sexual-health attendance, Kai has none; both are known to health: asked only about sexual
    health, their answers are the same (existence is answered for the agency, never for the service)."""
    from agency_stubs.cast import JODIE_MERCER

    client = partnership.client("csc", "case-system", user="sw.1", role="social_worker")
    protected, agency = "health.sexual_health", "health"
    answers = []
    for person in (JODIE_MERCER, KAI_MERCER):
        response = await client.query(subject=subject(person), categories=[protected], **S47)
        answer = {a.agency: a for a in response.answers}[agency]
        assert not answer.records
        answers.append((answer.status, answer.level, tuple(answer.categories)))
    assert answers[0] == answers[1]


async def test_pseudonyms_outside_the_mash_link_people_within_an_answer_but_not_across_requests(
    partnership: Partnership,
) -> None:
    """The perpetrator has one pseudonym across one answer's records, and a different one in the next answer."""
    client = partnership.client("csc", "case-system", user="sw.1", role="social_worker")

    async def perpetrators() -> set[str]:
        response = await client.query(subject=subject(), categories=["police.domestic_abuse"], **S47)
        police = {a.agency: a for a in response.answers}["police"]
        return {f.value for r in police.records for f in r.fields if f.name == "perpetrator"}

    first, second = await perpetrators(), await perpetrators()
    assert len(first) == 1, "the same perpetrator in two incidents shares one pseudonym within an answer"
    assert len(second) == 1
    assert first != second
