"""Hostile or broken agency nodes over real mTLS: every fault is bounded in memory and time, answered as
REJECTED, TIMED_OUT or UNAVAILABLE, logged without content, and no other agency's answer is affected."""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
import structlog

from gateway.api.agency_client import GrpcAgencyTransport
from gateway.api.tls import gateway_client_credentials, node_server_credentials
from gateway.audit import IdentifierSealer
from gateway.domain import AnswerStatus, SubjectIdentifiers
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser
from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout, init_pki
from gateway.policy import PolicyHolder
from gateway.service.query import Caller, QueryCommand, QueryResult, QueryService
from gateway.testing import FixedClock, RecordingAuditSink

SECRET = "HOSTILE-CANARY-7731"  # must never reach an answer, an audit entry or a log line
SOCIAL_WORKER = Caller("spiffe://mash.local/agency/csc/system/case-system", "csc", "sw.1", "social_worker")
S47 = QueryCommand("", SubjectIdentifiers(nhs_number="9990000018"), "s47_enquiry", "children_act_1989_s47",
                   "mash-isa-2026", "MASH-1")
MAX_ANSWER = 1024 * 1024
Behaviour = Callable[[agency_pb.LookupRequest, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]


def record(agency: str, category: str, summary: str = "Seen.", fields: int = 0) -> common_pb.Record:
    msg = common_pb.Record(agency=agency, record_id=f"{agency}-1", record_type="note", category=category,
                           kind=common_pb.RECORD_KIND_EVENT, summary=summary,
                           fields=[common_pb.Field() for _ in range(fields)])
    msg.occurred_at.seconds = 1_700_000_000
    return msg


def answer(agency: str, *records: common_pb.Record) -> bytes:
    return agency_pb.LookupResponse(agency=agency, matches=[agency_pb.PersonMatch(
        person_ref="P1", method=agency_pb.MATCH_METHOD_NHS_NUMBER, records=records)]).SerializeToString()


class Node:
    """An AgencyService that answers with raw bytes written by the test (so they can be anything)."""

    def __init__(self, agency: str, behaviour: Behaviour, *, batching: bool = False) -> None:
        self.agency = agency
        self.behaviour = behaviour
        self.server = grpc.aio.server()
        handlers = {"Lookup": grpc.unary_unary_rpc_method_handler(
            self._lookup, request_deserializer=agency_pb.LookupRequest.FromString,
            response_serializer=lambda raw: raw)}
        if batching:
            # Offers LookupBatch, whose answers are the same raw bytes (so a batch can be undecodable too).
            handlers["Describe"] = grpc.unary_unary_rpc_method_handler(
                self._describe, request_deserializer=agency_pb.DescribeRequest.FromString,
                response_serializer=agency_pb.DescribeResponse.SerializeToString)
            handlers["LookupBatch"] = grpc.unary_unary_rpc_method_handler(
                self._lookup_batch, request_deserializer=agency_pb.LookupBatchRequest.FromString,
                response_serializer=lambda raw: raw)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("mash.gateway.v1.AgencyService", handlers),))

    async def _describe(self, request: agency_pb.DescribeRequest, context: object) -> agency_pb.DescribeResponse:
        return agency_pb.DescribeResponse(agency=self.agency, features=[agency_pb.FEATURE_LOOKUP_BATCH])

    async def _lookup_batch(self, request: agency_pb.LookupBatchRequest,
                            context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return await self.behaviour(request.lookups[0], context)

    async def _lookup(self, request: agency_pb.LookupRequest, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return await self.behaviour(request, context)

    async def start(self, pki: PkiLayout) -> str:
        port = self.server.add_secure_port("127.0.0.1:0", node_server_credentials(pki, self.agency))
        await self.server.start()
        return f"127.0.0.1:{port}"


async def honest_education(request: agency_pb.LookupRequest, context: object) -> bytes:
    return answer("education", record("education", request.categories[0]))


@dataclass
class Rig:
    health: Node
    service: QueryService
    sink: RecordingAuditSink

    async def ask(self, timeout: float = 5.0) -> tuple[QueryResult, list[dict[str, object]], float]:
        started = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            result = await self.service.query(SOCIAL_WORKER, S47, timeout=timeout)
        elapsed = time.monotonic() - started
        statuses = {a.agency: a.status for a in result.answers}
        assert statuses["education"] is AnswerStatus.MATCH, "the honest node's answer is unaffected"
        assert SECRET not in repr((result, self.sink.events, logs))
        return result, logs, elapsed


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    root = tmp_path_factory.mktemp("pki")
    init_pki(root, nodes=["health", "education"])
    return PkiLayout(root)


@contextlib.asynccontextmanager
async def _rig(pki: PkiLayout, policy_dir: Path, *, batching: bool = False) -> AsyncIterator[Rig]:
    async def nothing(request: agency_pb.LookupRequest, context: object) -> bytes:
        return b""

    health, education = Node("health", nothing, batching=batching), Node("education", honest_education)
    endpoints = {"health": await health.start(pki), "education": await education.start(pki)}
    transport = GrpcAgencyTransport.connect(endpoints, gateway_client_credentials(pki),
                                            trust_domain=DEFAULT_TRUST_DOMAIN, max_answer_bytes=MAX_ANSWER)
    sink = RecordingAuditSink()
    service = QueryService(
        policy=PolicyHolder.from_directory(policy_dir, clock=FixedClock()), transport=transport, audit=sink,
        tokeniser=SubjectTokeniser(Keyring.generate("k1")), sealer=IdentifierSealer(Keyring.generate("k1")),
        pseudonym_keys=Keyring.generate("k1"), clock=FixedClock(),
    )
    try:
        yield Rig(health, service, sink)
    finally:
        await transport.close()
        await health.server.stop(0)
        await education.server.stop(0)


@pytest.fixture
async def rig(pki: PkiLayout, policy_dir: Path) -> AsyncIterator[Rig]:
    async with _rig(pki, policy_dir) as made:
        yield made


@pytest.fixture
async def batching_rig(pki: PkiLayout, policy_dir: Path) -> AsyncIterator[Rig]:
    """The same, with a health node that offers LookupBatch."""
    async with _rig(pki, policy_dir, batching=True) as made:
        yield made


def health_of(result: QueryResult) -> AnswerStatus:
    return next(a.status for a in result.answers if a.agency == "health")


async def test_an_oversized_answer_is_refused_before_it_is_read(rig: Rig) -> None:
    """A 3 MiB answer to a gateway that accepts 1 MiB is REJECTED, and the gateway never holds it in Python
    memory (the answer is built before measuring, so only the gateway's side is counted)."""
    huge = answer("health", record("health", "health.gp_registration", SECRET + "x" * (3 * MAX_ANSWER)))

    async def oversized(request: agency_pb.LookupRequest, context: object) -> bytes:
        return huge

    rig.health.behaviour = oversized
    await rig.ask()  # warm up the channel before measuring
    tracemalloc.start()
    try:
        result, _, _ = await rig.ask()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert health_of(result) is AnswerStatus.REJECTED
    assert peak < MAX_ANSWER


async def test_records_of_other_agencies_and_unrequested_categories_are_dropped(rig: Rig) -> None:
    """Health answering with education's records and a category nobody asked for discloses none of them."""
    async def overreaching(request: agency_pb.LookupRequest, context: object) -> bytes:
        return answer("health", record("education", "education.exclusion", SECRET),
                      record("health", "health.sexual_health", SECRET),
                      record("health", "health.nonexistent", SECRET))

    rig.health.behaviour = overreaching
    result, logs, _ = await rig.ask()
    health = next(a for a in result.answers if a.agency == "health")
    assert health.records == ()
    assert any(e.get("dropped") == 3 for e in logs)


async def test_invalid_utf8_in_an_answer_is_rejected(rig: Rig) -> None:
    """An answer whose agency string is not UTF-8 cannot be decoded: health is REJECTED."""
    async def broken(request: agency_pb.LookupRequest, context: object) -> bytes:
        return b"\x0a\x04\xff\xfe\xfd\xfc" + answer("health", record("health", request.categories[0], SECRET))

    rig.health.behaviour = broken
    result, _, _ = await rig.ask()
    assert health_of(result) is AnswerStatus.REJECTED


async def test_an_answer_with_hundreds_of_thousands_of_fields_is_rejected_quickly(rig: Rig) -> None:
    """400,000 empty fields fit in the size limit and would be as many objects: REJECTED, in bounded time."""
    big = answer("health", record("health", "health.gp_registration", SECRET, fields=400_000))
    assert len(big) < MAX_ANSWER

    async def many(request: agency_pb.LookupRequest, context: object) -> bytes:
        return big

    rig.health.behaviour = many
    result, logs, elapsed = await rig.ask()
    assert health_of(result) is AnswerStatus.REJECTED
    assert elapsed < 3.0
    assert any("fields" in str(e.get("reason", "")) for e in logs)


async def test_a_node_that_never_finishes_times_out_at_the_deadline(rig: Rig) -> None:
    """A node that starts but never completes its answer is TIMED_OUT at the caller's deadline."""
    async def stalls(request: agency_pb.LookupRequest, context: object) -> bytes:
        await asyncio.sleep(60)
        return b""

    rig.health.behaviour = stalls
    result, _, elapsed = await rig.ask(timeout=1.0)
    assert health_of(result) is AnswerStatus.TIMED_OUT
    assert elapsed < 2.0


async def test_a_node_that_resets_mid_answer_is_unavailable(rig: Rig) -> None:
    """A node torn down while answering leaves health UNAVAILABLE, never a failed call."""
    async def dies(request: agency_pb.LookupRequest, context: object) -> bytes:
        asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(rig.health.server.stop(0)))
        await asyncio.sleep(5)
        return answer("health", record("health", request.categories[0], SECRET))

    rig.health.behaviour = dies
    result, _, elapsed = await rig.ask()
    assert health_of(result) is AnswerStatus.UNAVAILABLE
    assert elapsed < 2.0


async def test_one_hostile_answer_does_not_affect_a_concurrent_request(rig: Rig) -> None:
    """While one request waits on a stalled node, another request's answers arrive in full and in time."""
    stall = asyncio.Event()

    async def first_stalls(request: agency_pb.LookupRequest, context: object) -> bytes:
        if not stall.is_set():
            stall.set()
            await asyncio.sleep(60)
        return answer("health", record("health", request.categories[0]))

    rig.health.behaviour = first_stalls
    slow = asyncio.ensure_future(rig.ask(timeout=3.0))
    await stall.wait()
    result, _, elapsed = await rig.ask()
    assert health_of(result) is AnswerStatus.MATCH
    assert elapsed < 1.0
    slow_result, _, _ = await slow
    assert health_of(slow_result) is AnswerStatus.TIMED_OUT


async def test_an_undecodable_answer_from_a_batching_node_is_rejected_alone_and_in_a_batch(batching_rig: Rig) -> None:
    """A node offering LookupBatch that sends unreadable bytes is REJECTED, never read as "no match"."""
    async def broken(request: agency_pb.LookupRequest, context: object) -> bytes:
        await asyncio.sleep(0.2)  # keeps the node busy, so concurrent lookups are coalesced into batches
        return b"\x0a\x04\xff\xfe\xfd\xfc" + answer("health", record("health", request.categories[0], SECRET))

    batching_rig.health.behaviour = broken
    result, _, _ = await batching_rig.ask()
    assert health_of(result) is AnswerStatus.REJECTED
    together = await asyncio.gather(*(batching_rig.ask() for _ in range(6)))
    assert [health_of(r) for r, _, _ in together] == [AnswerStatus.REJECTED] * 6
