"""Coalesced lookups over real mTLS: concurrent lookups to one node share calls, yet every caller gets only its
own answer within its own deadline, and nodes without LookupBatch keep working.

Every test runs twice: against a node offering LookupBatch (each batch a call of its own) and against one
offering LookupStream (each batch a message on one open call), since the rules must hold for both."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest

from agency_stubs import World
from agency_stubs.node import AgencyNodeServicer
from gateway.api import agency_client
from gateway.api.agency_client import MAX_IN_FLIGHT, GrpcAgencyTransport
from gateway.api.tls import gateway_client_credentials, node_server_credentials
from gateway.domain import SubjectIdentifiers
from gateway.errors import AgencyRejected, AgencyTimedOut
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import agency_service_pb2_grpc as agency_grpc
from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout, init_pki
from gateway.service.ports import LookupCommand

GATEWAY_IDENTITY = f"spiffe://{DEFAULT_TRUST_DOMAIN}/gateway"


class CountingNode(AgencyNodeServicer):
    """The stub police node, counting how its lookups arrive: alone (a Lookup call, or a batch of one on a
    stream) or together (a LookupBatch call, or a batch on a stream)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.single_calls = 0
        self.batch_sizes: list[int] = []
        self.streams = 0
        self.lookup_calls = 0  # Lookup calls alone
        self.batch_calls = 0  # LookupBatch calls alone

    async def Lookup(self, request: agency_pb.LookupRequest, context: Any) -> agency_pb.LookupResponse:
        self.lookup_calls += 1
        self.single_calls += 1
        return await super().Lookup(request, context)

    async def LookupBatch(self, request: agency_pb.LookupBatchRequest, context: Any) -> agency_pb.LookupBatchResponse:
        self.batch_calls += 1
        return await super().LookupBatch(request, context)

    async def LookupStream(self, requests: Any, context: Any) -> None:
        self.streams += 1
        await super().LookupStream(requests, context)

    def _answer_batch(self, request: agency_pb.LookupBatchRequest) -> agency_pb.LookupBatchResponse:
        if len(request.lookups) == 1:
            self.single_calls += 1
        else:
            self.batch_sizes.append(len(request.lookups))
        return super()._answer_batch(request)


class OlderNode(CountingNode):
    """A node from before LookupBatch: Describe lists no features and LookupBatch is not implemented."""

    async def Describe(self, request: agency_pb.DescribeRequest, context: Any) -> agency_pb.DescribeResponse:
        response = await super().Describe(request, context)
        del response.features[:]
        return response

    async def LookupBatch(self, request: agency_pb.LookupBatchRequest, context: Any) -> agency_pb.LookupBatchResponse:
        self.batch_sizes.append(len(request.lookups))
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no LookupBatch here")
        raise AssertionError("unreachable")


class ShufflingNode(CountingNode):
    """A faulty node that answers a batch in the wrong order."""

    def _answer_batch(self, request: agency_pb.LookupBatchRequest) -> agency_pb.LookupBatchResponse:
        results = list(super()._answer_batch(request).results)
        return agency_pb.LookupBatchResponse(results=results[1:] + results[:1])


@dataclass
class Rig:
    node: CountingNode
    transport: GrpcAgencyTransport


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    root = tmp_path_factory.mktemp("pki")
    init_pki(root, nodes=("police",))
    return PkiLayout(root)


BATCH_CALLS = (agency_pb.FEATURE_LOOKUP_BATCH,)
STREAM = (agency_pb.FEATURE_LOOKUP_BATCH, agency_pb.FEATURE_LOOKUP_STREAM)


@pytest.fixture(params=[BATCH_CALLS, STREAM], ids=["batch-calls", "stream"])
def make_rig(request: pytest.FixtureRequest, pki: PkiLayout, shared_world: World) -> Callable[..., Any]:
    features = request.param

    @contextlib.asynccontextmanager
    async def start(node_class: type[CountingNode] = CountingNode, latency: float = 0.3) -> AsyncIterator[Rig]:
        node = node_class(shared_world.dataset("police"), allowed_callers={GATEWAY_IDENTITY}, latency=latency)
        if node.features:  # an older node lists none whichever way its successors batch
            node.features = features
        server = grpc.aio.server()
        agency_grpc.add_AgencyServiceServicer_to_server(node, server)
        port = server.add_secure_port("127.0.0.1:0", node_server_credentials(pki, "police"))
        await server.start()
        transport = GrpcAgencyTransport.connect({"police": f"127.0.0.1:{port}"}, gateway_client_credentials(pki),
                                                trust_domain=DEFAULT_TRUST_DOMAIN)
        try:
            yield Rig(node, transport)
        finally:
            await transport.close()
            await server.stop(0)

    return start


def command(shared_world: World, n: int) -> LookupCommand:
    nhs = _police_nhs_numbers(shared_world)[n]
    return LookupCommand(f"req-{n}", SubjectIdentifiers(nhs_number=nhs), tuple(_categories(shared_world)), (),
                         "safeguarding_screening", "dpa_2018_sch1_para18")


def _categories(world: World) -> list[str]:
    return [c.category for c in world.dataset("police").catalogue]


def _police_nhs_numbers(world: World) -> list[str]:
    """NHS numbers of people with police records, so every lookup has an answer that is theirs alone."""
    found = []
    cats = _categories(world)
    for person in world.people:
        if world.dataset("police").lookup(SubjectIdentifiers(nhs_number=person.nhs_number), cats, ()):
            found.append(person.nhs_number)
        if len(found) == 12:
            break
    return found


async def occupy(rig: Rig, world: World) -> list[asyncio.Task[Any]]:
    """With several requests in progress, fill every in-flight slot to the node, so the lookups that follow
    wait and leave as one batch."""
    rig.transport.occupancy.active = 8  # as the query service counts them; a lone request never waits
    tasks = [asyncio.create_task(rig.transport.lookup("police", command(world, 11 - n), timeout=5))
             for n in range(MAX_IN_FLIGHT)]
    await asyncio.sleep(0.05)
    return tasks


def expected_record_ids(world: World, cmd: LookupCommand) -> set[str]:
    matches = world.dataset("police").lookup(cmd.subject, cmd.categories, ())
    return {r.record_id for m in matches for r in m.records}


async def test_concurrent_lookups_are_coalesced_and_each_caller_gets_its_own_answer(
    make_rig: Callable[..., Any], shared_world: World
) -> None:
    """Twelve concurrent lookups (twelve requests in progress) reach a slow node in fewer calls; each answer holds
    exactly its subject's records."""
    async with make_rig() as rig:
        rig.transport.occupancy.active = 12
        commands = [command(shared_world, n) for n in range(12)]
        results = await asyncio.gather(*(rig.transport.lookup("police", c, timeout=5) for c in commands))
    assert rig.node.single_calls + len(rig.node.batch_sizes) < 12
    assert max(rig.node.batch_sizes) > 1
    for cmd, result in zip(commands, results, strict=True):
        got = {r.record_id for m in result.matches for r in m.records}
        assert got == expected_record_ids(shared_world, cmd)
        assert got


async def test_each_lookup_in_a_batch_keeps_its_own_deadline(make_rig: Callable[..., Any], shared_world: World) -> None:
    """In one batch to a slow node, the lookup with a short deadline times out on time; the other is answered."""
    async with make_rig(latency=1.0) as rig:
        busy = await occupy(rig, shared_world)
        started = time.monotonic()
        short = asyncio.create_task(rig.transport.lookup("police", command(shared_world, 1), timeout=0.3))
        long = asyncio.create_task(rig.transport.lookup("police", command(shared_world, 2), timeout=5))
        with pytest.raises(AgencyTimedOut):
            await short
        assert time.monotonic() - started < 0.9  # well before the node answers at 1 s
        answered = await long
        await asyncio.gather(*busy)
    assert {r.record_id for m in answered.matches for r in m.records} == expected_record_ids(
        shared_world, command(shared_world, 2))


async def test_an_answer_out_of_place_reaches_no_one(make_rig: Callable[..., Any], shared_world: World) -> None:
    """A node that reorders a batch's answers gets every lookup in that batch REJECTED, never a swapped answer."""
    async with make_rig(ShufflingNode) as rig:
        busy = await occupy(rig, shared_world)
        batched = [asyncio.create_task(rig.transport.lookup("police", command(shared_world, n), timeout=5))
                   for n in (1, 2, 3)]
        outcomes = await asyncio.gather(*batched, return_exceptions=True)
        await asyncio.gather(*busy)
    assert rig.node.batch_sizes == [3]
    assert all(isinstance(o, AgencyRejected) for o in outcomes)


async def test_a_node_without_lookup_batch_gets_one_lookup_per_call(
    make_rig: Callable[..., Any], shared_world: World
) -> None:
    """An older node (no FEATURE_LOOKUP_BATCH) is never sent a batch and answers every lookup."""
    async with make_rig(OlderNode, latency=0.1) as rig:
        commands = [command(shared_world, n) for n in range(6)]
        results = await asyncio.gather(*(rig.transport.lookup("police", c, timeout=5) for c in commands))
    assert rig.node.batch_sizes == []
    assert rig.node.single_calls == 6
    for cmd, result in zip(commands, results, strict=True):
        assert {r.record_id for m in result.matches for r in m.records} == expected_record_ids(shared_world, cmd)


async def test_a_bad_lookup_in_a_batch_is_refused_alone(make_rig: Callable[..., Any], shared_world: World) -> None:
    """A lookup the node refuses (unknown category) is REJECTED; the others in its batch are answered."""
    async with make_rig() as rig:
        busy = await occupy(rig, shared_world)
        good = command(shared_world, 1)
        bad = LookupCommand("req-bad", good.subject, ("police.no_such_category",), (), good.purpose, good.legal_basis)
        outcomes = await asyncio.gather(rig.transport.lookup("police", good, timeout=5),
                                        rig.transport.lookup("police", bad, timeout=5), return_exceptions=True)
        await asyncio.gather(*busy)
    assert rig.node.batch_sizes == [2]
    assert not isinstance(outcomes[0], BaseException)
    assert isinstance(outcomes[1], AgencyRejected)


class HangingNode(CountingNode):
    """A node that never answers the call carrying request `req-hang` (alone or in a batch)."""

    async def Lookup(self, request: agency_pb.LookupRequest, context: Any) -> agency_pb.LookupResponse:
        if request.request_id == "req-hang":
            await asyncio.sleep(60)
        return await super().Lookup(request, context)

    async def _wait(self, batch: agency_pb.LookupBatchRequest) -> None:
        if any(lookup.request_id == "req-hang" for lookup in batch.lookups):
            await asyncio.sleep(60)
        await super()._wait(batch)


async def test_while_other_requests_are_in_progress_lookups_leave_together_each_with_its_own_answer(
    make_rig: Callable[..., Any], shared_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With eight requests in progress, eight concurrent lookups to an instant node leave as one batch (they
    wait for each other rather than for the node), and each caller gets exactly its own subject's records."""
    monkeypatch.setattr(agency_client, "MAX_LINGER", 30.0)  # only the lookups' own arrival can release them
    monkeypatch.setattr(agency_client, "LINGER_PER_REQUEST", 30.0)
    async with make_rig(latency=0.0) as rig:
        await rig.transport.lookup("police", command(shared_world, 11), timeout=5)  # negotiates LookupBatch
        rig.transport.occupancy.active = 8
        commands = [command(shared_world, n) for n in range(8)]
        results = await asyncio.gather(*(rig.transport.lookup("police", c, timeout=5) for c in commands))
    assert rig.node.batch_sizes == [8]
    for cmd, result in zip(commands, results, strict=True):
        got = {r.record_id for m in result.matches for r in m.records}
        assert got == expected_record_ids(shared_world, cmd)
        assert got


async def test_a_lone_request_never_waits_for_company(
    make_rig: Callable[..., Any], shared_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one request in progress nothing could join its lookup, so it leaves at once: even with a lingering
    time that would reach past its deadline it is answered, alone."""
    monkeypatch.setattr(agency_client, "MAX_LINGER", 30.0)
    monkeypatch.setattr(agency_client, "LINGER_PER_REQUEST", 30.0)
    monkeypatch.setattr(agency_client, "LINGER_SHARE", 1.0)
    monkeypatch.setattr(agency_client, "BUSY_MAX_LINGER", 30.0)
    async with make_rig(latency=0.0) as rig:
        await rig.transport.lookup("police", command(shared_world, 11), timeout=5)
        rig.transport.occupancy.active = 1
        rig.transport.lag.threshold = -1.0  # even a gateway that counts as busy
        result = await rig.transport.lookup("police", command(shared_world, 1), timeout=2)
    assert rig.node.batch_sizes == []
    assert rig.node.single_calls == 2
    assert {r.record_id for m in result.matches for r in m.records} == expected_record_ids(
        shared_world, command(shared_world, 1))


async def test_a_lone_requests_lookups_to_a_node_a_turn_of_the_loop_apart_leave_as_one_batch(
    make_rig: Callable[..., Any], shared_world: World
) -> None:
    """One request asking the node twice in quick succession (its lookup, then owner review's existence check
    a task later) sends one message of two lookups, and each gets its own answer."""
    async with make_rig(latency=0.0) as rig:
        await rig.transport.lookup("police", command(shared_world, 11), timeout=5)  # negotiates the features
        rig.transport.occupancy.active = 1
        first = asyncio.create_task(rig.transport.lookup("police", command(shared_world, 1), timeout=5))
        await asyncio.sleep(0)  # a turn of the loop: the first lookup is waiting to leave
        second = await rig.transport.lookup("police", command(shared_world, 2), timeout=5)
        answered = await first
    assert rig.node.batch_sizes == [2]
    for n, result in ((1, answered), (2, second)):
        assert {r.record_id for m in result.matches for r in m.records} == expected_record_ids(
            shared_world, command(shared_world, n))


async def test_a_lone_request_asking_a_node_twice_waits_one_round_trip_not_two(
    make_rig: Callable[..., Any], shared_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request in progress asks the node a second time while its first lookup is out (as owner review's
    existence checks do): the second leaves at once beside the first, so both are answered within one of the
    node's round trips (0.3 s), not one after the other."""
    monkeypatch.setattr(agency_client, "STALLED", 10.0)  # a call in flight would hold the second throughout
    async with make_rig(latency=0.3) as rig:
        await rig.transport.lookup("police", command(shared_world, 11), timeout=5)  # negotiates the features
        rig.transport.occupancy.active = 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.create_task(rig.transport.lookup("police", command(shared_world, 1), timeout=5))
        await asyncio.sleep(0.05)  # the first is in flight
        second = await rig.transport.lookup("police", command(shared_world, 2), timeout=5)
        answered = await first
        assert loop.time() - started < 0.5, "the second lookup waited for the first to return"
    for n, result in ((1, answered), (2, second)):
        assert {r.record_id for m in result.matches for r in m.records} == expected_record_ids(
            shared_world, command(shared_world, n))


async def test_a_busy_gateway_waits_for_lookups_of_requests_it_has_not_started_yet(
    make_rig: Callable[..., Any], shared_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the event loop runs late, requests the gateway has not started yet will ask the node soon: a
    lookup waits for them (a few of the node's recent gaps between lookups) rather than leaving once the
    requests in progress have joined. Four lookups arriving 20 ms apart, with one other request in progress,
    leave as one batch; each caller gets its own subject's records. A node asked too rarely for anyone to
    join within the longest wait is not waited for."""
    monkeypatch.setattr(agency_client, "BUSY_GAPS", 20.0)  # 20 gaps of 20-50 ms: everyone within 0.4-1 s
    monkeypatch.setattr(agency_client, "BUSY_MAX_LINGER", 10.0)
    monkeypatch.setattr(agency_client, "MAX_LINGER", 30.0)  # not busy: only the others' arrival releases them
    monkeypatch.setattr(agency_client, "LINGER_PER_REQUEST", 30.0)
    async with make_rig(latency=0.0) as rig:
        await rig.transport.lookup("police", command(shared_world, 11), timeout=5)  # negotiates LookupBatch
        rig.transport.occupancy.active = 2
        rig.transport.lag.threshold = -1.0  # the loop counts as late
        commands = [command(shared_world, n) for n in range(4)]
        tasks = []
        for cmd in commands:
            tasks.append(asyncio.create_task(rig.transport.lookup("police", cmd, timeout=5)))
            await asyncio.sleep(0.02)
        results = await asyncio.gather(*tasks)
        assert rig.node.batch_sizes == [4]
        # Not busy: the same lookups leave as soon as the one other request in progress could have joined.
        rig.transport.lag.threshold = 10.0
        tasks = []
        for cmd in commands:
            tasks.append(asyncio.create_task(rig.transport.lookup("police", cmd, timeout=5)))
            await asyncio.sleep(0.02)
        await asyncio.gather(*tasks)
    assert rig.node.batch_sizes[1:] == [2, 2]
    # Busy again, but the node is asked so rarely (1.2 s apart) that nobody would join within the 1 s wait.
    monkeypatch.setattr(agency_client, "BUSY_MAX_LINGER", 1.0)
    async with make_rig(latency=0.0) as rig:
        await rig.transport.lookup("police", command(shared_world, 11), timeout=5)
        rig.transport.occupancy.active = 2
        rig.transport.lag.threshold = -1.0
        monkeypatch.setattr(agency_client, "LINGER_PER_REQUEST", 0.0)  # not busy: leaves at once
        await asyncio.sleep(1.2)  # the node's gap between lookups: longer than the longest wait
        started = asyncio.get_running_loop().time()
        await rig.transport.lookup("police", command(shared_world, 1), timeout=5)
        assert asyncio.get_running_loop().time() - started < 0.5, "a lookup to a rarely asked node waited"
    for cmd, result in zip(commands, results, strict=True):
        got = {r.record_id for m in result.matches for r in m.records}
        assert got == expected_record_ids(shared_world, cmd)
        assert got


async def test_a_lingering_lookup_leaves_in_time_to_be_answered_before_its_deadline(
    make_rig: Callable[..., Any], shared_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting for lookups of other requests that never come is bounded by a share of the lookup's own
    deadline, so it is still answered rather than timed out."""
    monkeypatch.setattr(agency_client, "MAX_LINGER", 30.0)
    monkeypatch.setattr(agency_client, "LINGER_PER_REQUEST", 30.0)
    async with make_rig(latency=0.0) as rig:
        await rig.transport.lookup("police", command(shared_world, 11), timeout=5)
        rig.transport.occupancy.active = 5  # four other requests in progress, none of which asks this node
        result = await rig.transport.lookup("police", command(shared_world, 2), timeout=1.0)
    assert {r.record_id for m in result.matches for r in m.records} == expected_record_ids(
        shared_world, command(shared_world, 2))


async def test_a_hung_node_call_does_not_hold_unrelated_lookups_past_their_deadlines(
    make_rig: Callable[..., Any], shared_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that never returns holds the lookups queued behind it only until it counts as stalled; they
    then leave in a call of their own and are answered, while the hung lookup times out on its own deadline."""
    monkeypatch.setattr(agency_client, "STALLED", 0.1)
    async with make_rig(HangingNode, latency=0.0) as rig:
        await rig.transport.lookup("police", command(shared_world, 11), timeout=5)
        hung_cmd = LookupCommand("req-hang", *_fields(command(shared_world, 0)))
        hung = asyncio.create_task(rig.transport.lookup("police", hung_cmd, timeout=1.5))
        await asyncio.sleep(0.02)  # the hung call is in flight
        later = [asyncio.create_task(rig.transport.lookup("police", command(shared_world, n), timeout=1.0))
                 for n in (1, 2, 3)]
        answered = await asyncio.gather(*later)
        with pytest.raises(AgencyTimedOut):
            await hung
    for n, result in zip((1, 2, 3), answered, strict=True):
        assert {r.record_id for m in result.matches for r in m.records} == expected_record_ids(
            shared_world, command(shared_world, n))


def _fields(cmd: LookupCommand) -> tuple[Any, ...]:
    return (cmd.subject, cmd.categories, cmd.existence_categories, cmd.purpose, cmd.legal_basis)
