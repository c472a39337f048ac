"""Lookups on one long-lived LookupStream call per node, over real mTLS: batches go out tagged, and each answer
reaches only the batch whose tag it carries, whatever order the node answers in; a call that ends, a message
that does not decode, or a node that lists the feature without the method costs no answer it should not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from structlog.testing import capture_logs

from agency_stubs import World
from gateway.api import agency_client
from gateway.api.agency_client import GrpcAgencyTransport
from gateway.api.tls import gateway_client_credentials, node_server_credentials
from gateway.errors import AgencyRejected, AgencyTimedOut, AgencyUnavailable
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import agency_service_pb2_grpc as agency_grpc
from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout, init_pki
from tests.api.test_agency_batching import GATEWAY_IDENTITY, CountingNode, _fields, command, expected_record_ids

STREAMING = (agency_pb.FEATURE_LOOKUP_BATCH, agency_pb.FEATURE_LOOKUP_STREAM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    root = tmp_path_factory.mktemp("pki")
    init_pki(root, nodes=("police",))
    return PkiLayout(root)


@pytest.fixture
def serve(pki: PkiLayout, shared_world: World) -> Callable[..., Any]:
    """Start a police node of `node_class` offering LookupStream, and a transport to it."""

    @contextlib.asynccontextmanager
    async def start(node_class: type[CountingNode] = CountingNode, *, latency: float = 0.0,
                    raw_stream: Callable[..., Any] | None = None,
                    ) -> AsyncIterator[tuple[CountingNode, GrpcAgencyTransport]]:
        node = node_class(shared_world.dataset("police"), allowed_callers={GATEWAY_IDENTITY}, latency=latency)
        node.features = STREAMING
        server = grpc.aio.server()
        if raw_stream is None:
            agency_grpc.add_AgencyServiceServicer_to_server(node, server)
        else:  # the node's Describe, and a LookupStream that reads and writes raw bytes
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("mash.gateway.v1.AgencyService", {
                "Describe": grpc.unary_unary_rpc_method_handler(
                    node.Describe, request_deserializer=agency_pb.DescribeRequest.FromString,
                    response_serializer=agency_pb.DescribeResponse.SerializeToString),
                "LookupStream": grpc.stream_stream_rpc_method_handler(raw_stream)}),))
        port = server.add_secure_port("127.0.0.1:0", node_server_credentials(pki, "police"))
        await server.start()
        transport = GrpcAgencyTransport.connect({"police": f"127.0.0.1:{port}"}, gateway_client_credentials(pki),
                                                trust_domain=DEFAULT_TRUST_DOMAIN)
        try:
            yield node, transport
        finally:
            await transport.close()
            await server.stop(0)

    return start


def records(result: Any) -> set[str]:
    return {r.record_id for m in result.matches for r in m.records}


async def test_every_lookup_to_a_streaming_node_travels_on_one_call(
    serve: Callable[..., Any], shared_world: World
) -> None:
    """Lookups one after another and side by side all use one LookupStream call; no Lookup or LookupBatch call
    is made, and each answer holds exactly its own subject's records."""
    async with serve(latency=0.05) as (node, transport):
        for n in range(3):
            assert records(await transport.lookup("police", command(shared_world, n), timeout=5)) == (
                expected_record_ids(shared_world, command(shared_world, n)))
        transport.occupancy.active = 12  # twelve requests in progress, so their lookups may wait for each other
        commands = [command(shared_world, n) for n in range(12)]
        results = await asyncio.gather(*(transport.lookup("police", c, timeout=5) for c in commands))
    assert node.streams == 1
    assert (node.lookup_calls, node.batch_calls) == (0, 0)
    assert max(node.batch_sizes) > 1  # the side-by-side lookups still left together
    for cmd, result in zip(commands, results, strict=True):
        assert records(result) == expected_record_ids(shared_world, cmd)


class SlowFirstNode(CountingNode):
    """Holds the batch carrying `req-slow` for half a second, so a later batch is answered before it."""

    answered: list[str]

    async def _wait(self, batch: agency_pb.LookupBatchRequest) -> None:
        if any(lookup.request_id == "req-slow" for lookup in batch.lookups):
            await asyncio.sleep(0.5)

    def _answer_batch(self, request: agency_pb.LookupBatchRequest) -> agency_pb.LookupBatchResponse:
        self.answered = [*getattr(self, "answered", []), *(lookup.request_id for lookup in request.lookups)]
        return super()._answer_batch(request)


async def test_answers_in_another_order_than_asked_reach_their_own_lookups(
    serve: Callable[..., Any], shared_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch answered before an earlier one (the node may answer in any order) goes to its own lookups."""
    monkeypatch.setattr(agency_client, "STALLED", 0.05)  # the second batch leaves while the first is out
    async with serve(SlowFirstNode) as (node, transport):
        slow_cmd = command(shared_world, 0)
        slow_cmd = type(slow_cmd)("req-slow", *_fields(slow_cmd))
        slow = asyncio.create_task(transport.lookup("police", slow_cmd, timeout=5))
        await asyncio.sleep(0.1)
        quick = await transport.lookup("police", command(shared_world, 1), timeout=5)
        assert not slow.done()
        slow_result = await slow
    assert node.answered[0] == "req-1"  # the later batch really was answered first
    assert records(quick) == expected_record_ids(shared_world, command(shared_world, 1))
    assert records(slow_result) == expected_record_ids(shared_world, command(shared_world, 0))


class WrongTagNode(CountingNode):
    """Answers every batch first under a tag the gateway never used, then (unless `only_wrong`) its own."""

    only_wrong = False

    async def LookupStream(self, requests: Any, context: Any) -> None:
        async for message in requests:
            answer = self._answer_batch(message.batch)
            await context.write(agency_pb.LookupStreamResponse(tag=message.tag + 1000, batch=answer))
            if not self.only_wrong:
                await context.write(agency_pb.LookupStreamResponse(tag=message.tag, batch=answer))


class OnlyWrongTagNode(WrongTagNode):
    only_wrong = True


async def test_an_answer_under_a_tag_not_in_flight_reaches_no_one(
    serve: Callable[..., Any], shared_world: World
) -> None:
    """An answer under a made-up tag is dropped: the lookup takes the answer under its own tag, and a lookup
    that never gets one times out at its own deadline."""
    async with serve(WrongTagNode) as (_, transport):
        result = await transport.lookup("police", command(shared_world, 2), timeout=5)
    assert records(result) == expected_record_ids(shared_world, command(shared_world, 2))
    async with serve(OnlyWrongTagNode) as (_, transport):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(AgencyTimedOut):
            await transport.lookup("police", command(shared_world, 2), timeout=0.5)
        assert loop.time() - started < 2.0


class FailingOnceNode(CountingNode):
    """Ends its first LookupStream call with UNAVAILABLE once a batch arrives; later calls work."""

    async def LookupStream(self, requests: Any, context: Any) -> None:
        self.streams += 1
        if self.streams == 1:
            async for _ in requests:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        await super(CountingNode, self).LookupStream(requests, context)


async def test_a_call_that_ends_fails_its_batches_and_the_next_lookup_opens_a_new_one(
    serve: Callable[..., Any], shared_world: World
) -> None:
    """The node ending the call fails the batch in flight as unavailable (as a failed call would) and is
    logged with its status; the next lookup opens a new call and is answered."""
    async with serve(FailingOnceNode) as (node, transport):
        with capture_logs() as logged, pytest.raises(AgencyUnavailable):
            await transport.lookup("police", command(shared_world, 3), timeout=5)
        result = await transport.lookup("police", command(shared_world, 4), timeout=5)
    assert node.streams == 2
    (ended,) = [e for e in logged if e["event"] == "agency stream ended"]
    assert (ended["agency"], ended["code"], ended["in_flight"]) == ("police", "UNAVAILABLE", 1)
    assert records(result) == expected_record_ids(shared_world, command(shared_world, 4))


class NoStreamNode(CountingNode):
    """Lists FEATURE_LOOKUP_STREAM in Describe but leaves LookupStream as generated (it answers UNIMPLEMENTED)."""

    LookupStream = agency_grpc.AgencyServiceServicer.LookupStream  # type: ignore[assignment]


async def test_a_node_listing_the_stream_without_the_method_is_asked_the_older_way(
    serve: Callable[..., Any], shared_world: World
) -> None:
    """UNIMPLEMENTED on the stream means nothing reached the node: the lookup is sent as a Lookup call and
    answered, and so are the lookups after it."""
    async with serve(NoStreamNode) as (node, transport):
        results = [await transport.lookup("police", command(shared_world, n), timeout=5) for n in (5, 6)]
    assert node.lookup_calls == 2
    for n, result in zip((5, 6), results, strict=True):
        assert records(result) == expected_record_ids(shared_world, command(shared_world, n))


def _undecodable(message: agency_pb.LookupStreamRequest) -> bytes:
    return b"\x0a\x10\x01"  # field 1 said to be 16 bytes long, cut short: no message parses it


def _oversized(message: agency_pb.LookupStreamRequest) -> bytes:
    return agency_pb.LookupStreamResponse(tag=message.tag, batch=agency_pb.LookupBatchResponse(results=[
        agency_pb.LookupBatchResult(request_id=lookup.request_id,
                                    error_message="x" * (agency_client.DEFAULT_MAX_ANSWER_BYTES + 1))
        for lookup in message.batch.lookups])).SerializeToString()


@pytest.mark.parametrize("hostile", [_undecodable, _oversized], ids=["undecodable", "oversized"])
async def test_a_message_that_cannot_be_read_rejects_the_batches_in_flight_and_the_call_is_replaced(
    serve: Callable[..., Any], shared_world: World, hostile: Callable[[agency_pb.LookupStreamRequest], bytes]
) -> None:
    """Bytes that are not a LookupStreamResponse cannot be told apart by tag, and a message larger than the
    gateway accepts is refused before it is decoded: either ends the call, the batch in flight is REJECTED
    (never handed garbage), and the next lookup gets a new call and its answer."""
    calls = 0

    async def hostile_once(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        nonlocal calls
        calls += 1
        async for raw in requests:
            message = agency_pb.LookupStreamRequest.FromString(raw)
            if calls == 1:
                yield hostile(message)
            else:
                yield agency_pb.LookupStreamResponse(tag=message.tag, batch=agency_pb.LookupBatchResponse(results=[
                    agency_pb.LookupBatchResult(request_id=lookup.request_id, response=agency_pb.LookupResponse(
                        agency="police")) for lookup in message.batch.lookups])).SerializeToString()

    async with serve(raw_stream=hostile_once) as (_, transport):
        with pytest.raises(AgencyRejected):
            await transport.lookup("police", command(shared_world, 7), timeout=5)
        result = await transport.lookup("police", command(shared_world, 8), timeout=5)
    assert calls == 2
    assert result.matches == ()


class WatchedNode(CountingNode):
    """Sets `ended` when its LookupStream handler returns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ended = asyncio.Event()

    async def LookupStream(self, requests: Any, context: Any) -> None:
        try:
            await super().LookupStream(requests, context)
        finally:
            self.ended.set()


async def test_closing_the_transport_ends_the_call(serve: Callable[..., Any], shared_world: World) -> None:
    """The gateway's shutdown ends its open call, so the node's handler returns."""
    async with serve(WatchedNode) as (node, transport):
        await transport.lookup("police", command(shared_world, 9), timeout=5)
        await transport.close()
        await asyncio.wait_for(node.ended.wait(), 5)



class DeafNode(CountingNode):
    """Opens LookupStream calls but never reads from them, so the gateway's writes stop being accepted."""

    async def LookupStream(self, requests: Any, context: Any) -> None:
        self.streams += 1
        await asyncio.sleep(60)


async def test_a_node_that_never_reads_costs_each_lookup_no_more_than_its_deadline(
    serve: Callable[..., Any], shared_world: World
) -> None:
    """Large lookups to a node that opens the call but never reads it time out at their own deadlines, one
    after another, and the gateway keeps no task waiting on that node afterwards."""
    base = command(shared_world, 10)
    big = type(base)("req-big", base.subject, tuple(f"police.padding_{n:05d}" for n in range(20_000)), (),
                     base.purpose, base.legal_basis)  # about 400 KB each
    async with serve(DeafNode) as (node, transport):
        loop = asyncio.get_running_loop()
        for _ in range(4):
            started = loop.time()
            with pytest.raises(AgencyTimedOut):
                await transport.lookup("police", big, timeout=0.5)
            assert loop.time() - started < 1.5
        await asyncio.sleep(0.1)
        assert not transport._nodes["police"]._tasks, "calls to the deaf node are still waiting"
    assert node.streams >= 1


async def test_a_call_idle_for_a_while_is_closed_and_the_next_lookup_opens_a_new_one(
    serve: Callable[..., Any], shared_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call with no batch for STREAM_IDLE seconds is closed (so keepalive pings never reach a node with
    nothing to answer); a call in use is not, and the first lookup after the quiet spell is answered on a
    new call."""
    monkeypatch.setattr(agency_client, "STREAM_IDLE", 0.3)
    async with serve(WatchedNode) as (node, transport):
        for n in range(5):  # busy for longer than STREAM_IDLE: one call throughout
            await transport.lookup("police", command(shared_world, n), timeout=5)
            await asyncio.sleep(0.1)
        assert node.streams == 1
        assert not node.ended.is_set()
        await asyncio.wait_for(node.ended.wait(), 2)  # then quiet: closed
        result = await transport.lookup("police", command(shared_world, 5), timeout=5)
    assert node.streams == 2
    assert records(result) == expected_record_ids(shared_world, command(shared_world, 5))

