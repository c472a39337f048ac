"""The AgencyTransport adapter over grpc.aio: one channel per agency node, deadlines carried through.

Lookups bound for a node that offers LookupBatch (it says so in Describe) are coalesced when the gateway
is busy: while other requests are in progress new lookups wait a moment, or for the call to that node in
flight, and leave together in one batch call (see `_NodeCalls`); a lone caller's lookups wait only a few
turns of the event loop, for its own other lookups to the node. When
the event loop itself runs late, lookups also wait for requests the gateway has not started yet. Each
lookup keeps its own future and its own deadline, and an answer is handed only to the lookup at its
position in the batch, after checking that it echoes that lookup's request id.

A node that offers LookupStream gets the same batches (a lone lookup is a batch of one) as tagged messages
on one long-lived call (`_LookupStream`), which costs both sides less per batch than a call of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import structlog
from cryptography import x509
from google.protobuf.message import Message

from gateway.api.convert import lookup_result_from_proto, lookup_to_proto
from gateway.errors import AgencyRejected, AgencyTimedOut, AgencyUnavailable
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import agency_service_pb2_grpc as agency_grpc
from gateway.pki.authority import PkiLayout, node_server_name
from gateway.pki.revocation import RevocationList
from gateway.service.occupancy import LoopLag, Occupancy
from gateway.service.ports import LookupCommand, LookupResult

log = structlog.get_logger("gateway.transport")

_REJECTED = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # also: the answer was larger than the gateway accepts
}
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_COALESCING = frozenset({agency_pb.FEATURE_LOOKUP_BATCH, agency_pb.FEATURE_LOOKUP_STREAM})

MAX_BATCH = 64  # lookups in one batch call
MAX_IN_FLIGHT = 1  # fresh calls to one node at a time; lookups arriving meanwhile form the next batch
LONE_TURNS = 3  # turns of the event loop a lone request's lookup waits for the same request's next one
STALLED = 0.2  # seconds after which a call in flight no longer holds back the lookups queued behind it
LINGER_PER_REQUEST = 0.003  # seconds a lookup may wait for each other request the gateway is answering
MAX_LINGER = 0.04  # the longest a lookup waits for company before it leaves
LINGER_SHARE = 0.25  # and at most this share of the time it has before its deadline
BUSY_GAPS = 3.0  # while the event loop runs late: wait up to this many of the node's recent gaps between lookups
BUSY_MAX_LINGER = 1.0  # at most this, and not at all for a node whose recent gaps are longer than this
RENEGOTIATE = 60.0  # seconds a node's Describe answer (batching or not) is trusted before asking again
DESCRIBE_WAIT = 1.0  # at most this long a lookup waits for a first Describe before going alone
STREAM_IDLE = 20.0  # seconds without a batch after which a LookupStream call is closed (see _LookupStream)


class _StreamFailed(Exception):
    """A batch on a LookupStream call got no answer: the call ended (`code`), or the batch's time ran out."""

    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self.code = code


class _LookupStream:
    """One open LookupStream call to a node: batches go out tagged, and each answer goes to its tag's batch.

    An answer for a tag not in flight (its batch's time ran out, or the node made the tag up) is dropped.
    When the call ends, every batch still in flight fails with the call's status (UNAVAILABLE if the node
    closed it normally with batches unanswered); a message that does not decode ends the call, failing them
    as INTERNAL (a malformed answer), since it cannot be told which batch it was meant for. The next batch
    opens a new call. So does the first batch after `STREAM_IDLE` seconds without one: the call is closed
    when idle, so the channel's keepalive pings (every 30 s while a call is open) do not reach a node that
    has sent nothing for minutes, which a gRPC server with default settings may take for abuse
    (`too_many_pings`) and answer by closing the connection.
    """

    def __init__(self, agency: str, stub: agency_grpc.AgencyServiceAsyncStub) -> None:
        self.agency = agency
        self._call: Any = stub.LookupStream()
        self._pending: dict[int, asyncio.Future[agency_pb.LookupBatchResponse]] = {}
        self._tags = itertools.count(1)
        self._writing = asyncio.Lock()  # grpc allows one write at a time on a call
        self._retired = False
        self.ended = False
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read())
        self._used = loop.time()
        self._idle = loop.call_later(STREAM_IDLE, self._close_if_idle)

    def _close_if_idle(self) -> None:
        loop = asyncio.get_running_loop()
        now, quiet_until = loop.time(), self._used + STREAM_IDLE
        if self._pending:  # a batch still out: not idle, whenever it was sent
            self._idle = loop.call_at(now + STREAM_IDLE, self._close_if_idle)
        elif now < quiet_until:
            self._idle = loop.call_at(quiet_until, self._close_if_idle)
        else:
            self.close()

    async def exchange(self, batch: agency_pb.LookupBatchRequest, timeout: float) -> agency_pb.LookupBatchResponse:
        """The node's answer to `batch`; raises _StreamFailed as a unary call raises AioRpcError."""
        if self.ended:
            raise _StreamFailed(grpc.StatusCode.UNAVAILABLE)
        tag = next(self._tags)
        loop = asyncio.get_running_loop()
        self._used = loop.time()
        answer: asyncio.Future[agency_pb.LookupBatchResponse] = loop.create_future()
        self._pending[tag] = answer
        written = False
        try:
            message = agency_pb.LookupStreamRequest(tag=tag, batch=batch,
                                                    timeout_ms=min(2**32 - 1, max(1, int(timeout * 1000))))
            # One timer for the batch's whole time. A node that stops reading fills the call's flow-control
            # window, and writes then wait: not past the batch's time, and a call that cannot be written to
            # is of no further use.
            async with asyncio.timeout(timeout):
                async with self._writing:
                    await self._call.write(message)
                written = True
                return await answer
        except TimeoutError as exc:
            if not written:
                log.warning("agency stream not accepting lookups; closing it", agency=self.agency)
                self.close()
            raise _StreamFailed(grpc.StatusCode.DEADLINE_EXCEEDED) from exc
        except grpc.aio.AioRpcError as exc:
            raise _StreamFailed(exc.code()) from exc
        except (asyncio.InvalidStateError, grpc.aio.UsageError) as exc:  # the call has just ended
            raise _StreamFailed(grpc.StatusCode.UNAVAILABLE) from exc
        finally:
            self._pending.pop(tag, None)
            if self._retired and not self._pending:
                self.close()

    async def _read(self) -> None:
        code = grpc.StatusCode.UNAVAILABLE  # the node closed the call normally, but batches are unanswered
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:
                    break
                if message is None:  # bytes that are not a LookupStreamResponse: whose answer, nobody can say
                    log.warning("agency stream answer undecodable", agency=self.agency, in_flight=len(self._pending))
                    code = grpc.StatusCode.INTERNAL
                    break
                answer = self._pending.get(message.tag)
                if answer is None:
                    log.warning("agency stream answer for no batch in flight", agency=self.agency)
                elif not answer.done():
                    answer.set_result(message.batch)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
        except Exception as exc:  # nothing else is expected; the batches in flight fail rather than hang
            log.error("agency stream reader failed", agency=self.agency, error_type=type(exc).__name__)
            code = grpc.StatusCode.INTERNAL
        finally:
            if not self.ended:  # the node, the network or a bad message ended it, not the gateway
                log.info("agency stream ended", agency=self.agency, code=code.name, in_flight=len(self._pending))
            self.ended = True
            self._call.cancel()
            for answer in self._pending.values():
                _fail_batch(answer, code)

    def retire(self) -> None:
        """Send nothing more; close once the batches in flight are answered."""
        self._retired = True
        if not self._pending:
            self.close()

    def close(self) -> None:
        self.ended = True
        self._idle.cancel()
        self._call.cancel()
        self._reader.cancel()
        for answer in self._pending.values():
            _fail_batch(answer, grpc.StatusCode.CANCELLED)


def _fail_batch(answer: asyncio.Future[agency_pb.LookupBatchResponse], code: grpc.StatusCode) -> None:
    if not answer.done():
        answer.set_exception(_StreamFailed(code))


def _failure(agency: str, request_id: str, code: grpc.StatusCode) -> Exception:
    log.info("agency call failed", agency=agency, request_id=request_id, code=code.name)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return AgencyTimedOut(f"{agency} did not answer in time")
    if code in _REJECTED:
        return AgencyRejected(f"{code.name.lower()}")
    return AgencyUnavailable(f"{agency} could not be reached ({code.name.lower()})")


@dataclass(slots=True)
class _Waiting:
    request: agency_pb.LookupRequest
    deadline: float  # event-loop time
    answer: asyncio.Future[agency_pb.LookupResponse | None]  # None: the node's answer did not decode
    queued: float = 0.0  # event-loop time it began to wait


class _NodeCalls:
    """The lookups bound for one node, sent alone or coalesced into batches, adapting to load.

    A lookup leaves at once when the gateway is answering no other request (nothing could join it), but for
    `LONE_TURNS` turns of the event loop in which that request's own further lookups to the node join it. While
    other requests are in progress, it waits a moment for their lookups to this node to join it: until as
    many lookups wait as requests are in progress, or `LINGER_PER_REQUEST` per other request has passed
    (at most `MAX_LINGER`, and at most `LINGER_SHARE` of the time before its own deadline). While the
    event loop runs late (`LoopLag.saturated`: the gateway has more to do than it can, so requests queue
    before it even starts them), it waits instead for `BUSY_GAPS` of the node's recent gaps between
    lookups (at most `BUSY_MAX_LINGER`, and not at all for a node asked more rarely than that; at most the
    same share of its time), whoever is in progress: then the
    lookups of requests not yet started join too, and a partnership of many nodes, each asked once per
    request, still gets batches. While other requests are in progress and a call to the node is in flight,
    lookups queue behind it and leave together when it returns, or once it has been out for `STALLED`
    seconds, so a hung node holds nobody back longer than that; a lone request's lookups never queue behind
    a call in flight (one it starts after its first batch has left goes beside it). Each lookup
    keeps its own deadline throughout, and a batch's answers go only to the lookups they echo.
    """

    def __init__(self, agency: str, stub: agency_grpc.AgencyServiceAsyncStub, occupancy: Occupancy,
                 lag: LoopLag) -> None:
        self.agency = agency
        self.stub = stub
        self._occupancy = occupancy
        self._lag = lag
        self._gap = 0.0  # smoothed time between lookups to this node
        self._last = 0.0  # event-loop time of the latest lookup to it
        self._describe: asyncio.Task[frozenset[int]] | None = None
        self._asked_at = 0.0
        self._features: frozenset[int] = frozenset()  # as the latest Describe listed them
        self._stream: _LookupStream | None = None
        self._stream_refused = False  # the node listed LookupStream but answered UNIMPLEMENTED
        self._waiting: list[_Waiting] = []
        self._sent_at: list[float] = []  # start times of the calls in flight, oldest first
        self._timer: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def batching(self, remaining: float) -> bool:
        """Whether the node offers LookupBatch or LookupStream; never waits longer than DESCRIBE_WAIT or
        `remaining`."""
        loop = asyncio.get_running_loop()
        if self._describe is None or (self._describe.done() and loop.time() - self._asked_at > RENEGOTIATE):
            self._asked_at = loop.time()
            self._describe = loop.create_task(self._ask_features())
        if not self._describe.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._describe), min(remaining, DESCRIBE_WAIT))
            if not self._describe.done():
                return False
        return not self._describe.cancelled() and bool(self._describe.result() & _COALESCING)

    async def _ask_features(self) -> frozenset[int]:
        try:
            described = await self.stub.Describe(agency_pb.DescribeRequest(), timeout=10.0)
        except Exception:  # an older node (UNIMPLEMENTED), an unreachable one, a closed channel
            features: frozenset[int] = frozenset()  # one lookup per call until the next Describe
        else:
            features = frozenset(described.features)
        self._features, self._stream_refused = features, False
        return features

    async def submit(self, request: agency_pb.LookupRequest, deadline: float) -> agency_pb.LookupResponse | None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._last:
            gap = min(now - self._last, 10.0)
            self._gap = gap if self._gap == 0.0 else self._gap + (gap - self._gap) * 0.2
        self._last = now
        waiting = _Waiting(request, deadline, loop.create_future(), now)
        self._waiting.append(waiting)
        self._schedule(loop)
        # One timer per lookup (cheaper than wait_for): at its deadline the lookup fails, wherever it is.
        expiry = loop.call_at(deadline, _expire, waiting, self.agency)
        try:
            return await waiting.answer
        finally:
            expiry.cancel()

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send the waiting lookups now, or arrange to look again when they should leave."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiting:
            return
        others = self._occupancy.active - 1
        if others <= 0:
            # Nobody else could join, but this request may ask the node again within a few turns of the loop
            # (owner review's existence check starts beside the main lookup, a task or two later): those join
            # this batch, one message instead of two. Then it leaves, even beside a call in flight, so the
            # second lookup never waits a round trip.
            self._timer = loop.call_soon(self._lone_turn, loop, LONE_TURNS)
            return
        now = loop.time()
        fresh = [t for t in self._sent_at if now - t < STALLED]
        if len(fresh) >= MAX_IN_FLIGHT:
            # Behind a call in flight: leave when it returns (`_call` looks again), or once it is stalled.
            self._timer = loop.call_at(fresh[0] + STALLED, self._schedule, loop)
            return
        if len(self._waiting) >= MAX_BATCH:
            self._send(loop)  # the batch is full
            return
        if self._lag.saturated and self._gap <= BUSY_MAX_LINGER:
            # The gateway has more work than it can do at once, and requests it has not yet started wait for
            # it: the next lookups to this node (about `_gap` apart lately) are worth waiting for, since each
            # call not made gives its cost back to every caller. A node asked more rarely than the longest
            # wait is not waited for: nobody would be likely to join.
            linger = min(BUSY_MAX_LINGER, BUSY_GAPS * self._gap)
        elif len(self._waiting) > others:
            self._send(loop)  # everyone in progress who could join has
            return
        else:
            linger = min(MAX_LINGER, others * LINGER_PER_REQUEST)
        # Never more than a share of any waiting lookup's own time: it must leave with time to be answered.
        leave = min(w.queued + min(linger, (w.deadline - w.queued) * LINGER_SHARE) for w in self._waiting)
        if leave <= now:
            self._send(loop)
        else:
            self._timer = loop.call_at(leave, self._schedule, loop)

    def _lone_turn(self, loop: asyncio.AbstractEventLoop, turns: int) -> None:
        if turns > 1:
            self._timer = loop.call_soon(self._lone_turn, loop, turns - 1)
        else:
            self._timer = None
            self._send(loop)

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._waiting:
            batch = [w for w in self._waiting[:MAX_BATCH] if not w.answer.done()]  # done: its caller gave up
            del self._waiting[:MAX_BATCH]
            if not batch:
                continue
            started = loop.time()
            self._sent_at.append(started)
            task = loop.create_task(self._call(batch, started))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return

    async def _call(self, batch: list[_Waiting], started: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            # The call lives as long as its longest-waiting lookup; each lookup still times out on its own.
            timeout = max(0.001, max(w.deadline for w in batch) - loop.time())
            if agency_pb.FEATURE_LOOKUP_STREAM in self._features and not self._stream_refused:
                await self._call_stream(batch, timeout)
            else:
                if self._stream is not None:  # the node no longer offers it
                    self._stream.retire()
                    self._stream = None
                await self._call_unary(batch, timeout)
        finally:
            self._sent_at.remove(started)
            self._schedule(loop)  # those queued behind it leave now, or when their lingering is over

    async def _call_unary(self, batch: list[_Waiting], timeout: float) -> None:
        if len(batch) == 1:
            await self._call_one(batch[0], timeout)
        elif agency_pb.FEATURE_LOOKUP_BATCH in self._features:
            await self._call_batch(batch, timeout)
        else:  # a node that offers only LookupStream, and has just refused it
            await asyncio.gather(*(self._call_one(w, timeout) for w in batch))

    async def _call_stream(self, batch: list[_Waiting], timeout: float) -> None:
        if self._stream is None or self._stream.ended:
            self._stream = _LookupStream(self.agency, self.stub)
        request = agency_pb.LookupBatchRequest(lookups=[w.request for w in batch])
        try:
            response = await self._stream.exchange(request, timeout)
        except _StreamFailed as exc:
            if exc.code == grpc.StatusCode.UNIMPLEMENTED:
                # Listed in Describe but not implemented: nothing reached the node, so the batch goes the older
                # way, and so does every batch until the next Describe.
                log.warning("agency node lists LookupStream but does not implement it", agency=self.agency)
                self._stream_refused = True
                await self._call_unary(batch, timeout)
                return
            self._fail(batch, exc.code)
            return
        self._settle_batch(batch, response)

    async def _call_one(self, waiting: _Waiting, timeout: float) -> None:
        try:
            response = await self.stub.Lookup(waiting.request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            _settle(waiting, error=_failure(self.agency, waiting.request.request_id, exc.code()))
        else:
            _settle(waiting, response=response)

    async def _call_batch(self, batch: list[_Waiting], timeout: float) -> None:
        request = agency_pb.LookupBatchRequest(lookups=[w.request for w in batch])
        try:
            response = await self.stub.LookupBatch(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            self._fail(batch, exc.code())
            return
        self._settle_batch(batch, response)

    def _fail(self, batch: list[_Waiting], code: grpc.StatusCode) -> None:
        """Every lookup of `batch` failed as its call (or its stream) did, with `code`."""
        for w in batch:
            _settle(w, error=_failure(self.agency, w.request.request_id, code))

    def _settle_batch(self, batch: list[_Waiting], response: agency_pb.LookupBatchResponse | None) -> None:
        """Hand each lookup of `batch` its own result from the node's `response`, or a refusal."""
        if response is None:
            # Undecodable bytes (bad wire format, invalid UTF-8): rejected like an undecodable single answer.
            log.warning("agency batch answer undecodable", agency=self.agency, asked=len(batch))
            for w in batch:
                _settle(w, error=AgencyRejected("malformed answer"))
            return
        if len(response.results) != len(batch):
            log.warning("agency batch answer malformed", agency=self.agency, asked=len(batch),
                        answered=len(response.results))
            for w in batch:
                _settle(w, error=AgencyRejected("malformed answer"))
            return
        for w, result in zip(batch, response.results, strict=True):
            if result.request_id != w.request.request_id:
                # Never hand one request's answer to another: an answer out of place answers nobody.
                log.warning("agency batch answer out of place", agency=self.agency,
                            request_id=w.request.request_id)
                _settle(w, error=AgencyRejected("malformed answer"))
            elif result.error_code:
                code = _CODES.get(result.error_code, grpc.StatusCode.UNKNOWN)
                _settle(w, error=_failure(self.agency, w.request.request_id, code))
            else:
                _settle(w, response=result.response)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._describe is not None:
            self._describe.cancel()
        if self._stream is not None:
            self._stream.close()
        for w in self._waiting:
            w.answer.cancel()


def _expire(waiting: _Waiting, agency: str) -> None:
    if not waiting.answer.done():
        waiting.answer.set_exception(
            _failure(agency, waiting.request.request_id, grpc.StatusCode.DEADLINE_EXCEEDED))


def _settle(waiting: _Waiting, *, response: agency_pb.LookupResponse | None = None,
            error: Exception | None = None) -> None:
    if waiting.answer.done():
        return  # its caller's deadline passed or it was cancelled; the answer goes to no one
    if error is not None:
        waiting.answer.set_exception(error)
    else:
        waiting.answer.set_result(response)  # None reaches lookup(), which rejects it as undecodable


DEFAULT_MAX_ANSWER_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class NodeCertificateCheck:
    """Checks each agency node's certificate against the revocation list before the gateway asks it anything.

    grpc.aio shows a client nothing of the server's certificate, so the gateway opens its own TLS connection
    to the node (same address, same CA, same expected name, presenting the gateway's certificate) and reads
    the certificate there. The certificate seen is remembered for `recheck` seconds; the revocation list is
    consulted on every lookup, so a revocation takes effect at once.
    """

    layout: PkiLayout
    revocations: RevocationList
    trust_domain: str
    recheck: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, tuple[float, x509.Certificate]] = field(default_factory=dict)
    _context: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.layout.ca_cert))
            context.load_cert_chain(*(str(p) for p in self.layout.gateway()))
            context.set_alpn_protocols(["h2"])
            self._context = context
        return self._context

    async def _fetch(self, agency: str, address: str, timeout: float) -> x509.Certificate:
        host, _, port = address.rpartition(":")
        _, writer = await asyncio.wait_for(asyncio.open_connection(
            host.strip("[]"), int(port), ssl=self._ssl_context(),
            server_hostname=node_server_name(agency, self.trust_domain)), timeout)
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        finally:
            writer.close()
        return x509.load_der_x509_certificate(der)

    async def check(self, agency: str, address: str, *, timeout: float) -> None:
        """Return if the node's certificate is not revoked; AgencyUnavailable if it is or cannot be read."""
        now = self.clock()
        seen = self._seen.get(agency)
        if seen is None or now - seen[0] >= self.recheck:
            try:
                seen = (now, await self._fetch(agency, address, timeout))
            except (OSError, ssl.SSLError, ValueError, TimeoutError) as exc:
                log.info("agency node certificate could not be checked", agency=agency, error_type=type(exc).__name__)
                raise AgencyUnavailable(f"{agency} could not be reached") from exc
            self._seen[agency] = seen
        if self.revocations.is_revoked(seen[1]):
            log.warning("agency node presents a revoked certificate; not asked", agency=agency,
                        serial=format(seen[1].serial_number, "x"))
            raise AgencyUnavailable(f"{agency} presents a revoked certificate")


class GrpcAgencyTransport:
    """Calls each agency node's AgencyService over mTLS, checking the node's certificate name (and, with a
    revocation list, that the certificate is not revoked)."""

    def __init__(self, stubs: Mapping[str, agency_grpc.AgencyServiceAsyncStub], channels: list[grpc.aio.Channel],
                 *, coalesce: bool = True, addresses: Mapping[str, str] | None = None,
                 node_check: NodeCertificateCheck | None = None) -> None:
        self.occupancy = Occupancy()  # requests in progress, counted by the query service (see _NodeCalls)
        self.lag = LoopLag()  # how late the event loop runs, probed while the transport is in use
        self._nodes = {agency: _NodeCalls(agency, stub, self.occupancy, self.lag) for agency, stub in stubs.items()}
        self._channels = channels
        self._coalesce = coalesce
        self._addresses = dict(addresses or {})
        self._node_check = node_check

    @classmethod
    def connect(
        cls,
        endpoints: Mapping[str, str],
        credentials: grpc.ChannelCredentials | None,
        *,
        trust_domain: str,
        coalesce: bool = True,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        node_check: NodeCertificateCheck | None = None,
    ) -> GrpcAgencyTransport:
        """One channel per agency, created inside the running event loop.

        With credentials, the node must present a certificate for `<agency>.node.<trust domain>`, so one
        agency's node cannot answer for another. With `coalesce`, lookups are batched for nodes that offer it.
        An answer larger than `max_answer_bytes` is refused by grpc before it is decoded.
        """
        stubs: dict[str, agency_grpc.AgencyServiceAsyncStub] = {}
        channels: list[grpc.aio.Channel] = []
        for agency, address in endpoints.items():
            options: list[tuple[str, str | int]] = [
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.max_receive_message_length", max_answer_bytes),
                ("grpc.max_metadata_size", 16 * 1024),
            ]
            if credentials is None:
                channel = grpc.aio.insecure_channel(address, options=options)
            else:
                options.append(("grpc.ssl_target_name_override", node_server_name(agency, trust_domain)))
                channel = grpc.aio.secure_channel(address, credentials, options=options)
            channels.append(channel)
            stubs[agency] = agency_grpc.AgencyServiceStub(channel)
        return cls(stubs, channels, coalesce=coalesce, addresses=endpoints, node_check=node_check)

    async def _checked_node(self, agency: str, timeout: float) -> tuple[_NodeCalls, float]:
        """The agency's node once its certificate checks pass, and what is left of `timeout` after them."""
        node = self._nodes.get(agency)
        if node is None:
            raise AgencyUnavailable(f"no endpoint configured for agency {agency!r}")
        if self._node_check is not None:
            started = time.monotonic()
            await self._node_check.check(agency, self._addresses[agency], timeout=timeout)
            timeout -= time.monotonic() - started
        return node, timeout

    async def lookup(self, agency: str, command: LookupCommand, *, timeout: float) -> LookupResult:
        node, timeout = await self._checked_node(agency, timeout)
        request = lookup_to_proto(command)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._coalesce and await node.batching(timeout):
            self.lag.start(loop)
            response = await node.submit(request, deadline)
        else:
            try:
                remaining = max(0.001, deadline - asyncio.get_running_loop().time())
                response = await node.stub.Lookup(request, timeout=remaining)
            except grpc.aio.AioRpcError as exc:
                raise _failure(agency, command.request_id, exc.code()) from exc
        if response is None:
            # grpc hands over None when the answer's bytes are not a LookupResponse (bad wire format,
            # invalid UTF-8): the node sent something, but nothing readable.
            log.warning("agency answer undecodable", agency=agency, request_id=command.request_id)
            raise AgencyRejected("malformed answer")
        try:
            return lookup_result_from_proto(response, agency, command.categories)
        except ValueError as exc:
            # The reason names the fault, never the record: it reaches the log, not the caller.
            log.warning("agency answer malformed", agency=agency, request_id=command.request_id, reason=str(exc))
            raise AgencyRejected("malformed answer") from exc

    async def call(self, agency: str, rpc: str, request: Message, *, timeout: float) -> Any:
        """Another AgencyService method of the node (e.g. Summarise), with the same certificate checks as a
        lookup; raises AgencyUnavailable, AgencyTimedOut or AgencyRejected as `lookup` does."""
        node, timeout = await self._checked_node(agency, timeout)
        try:
            response = await getattr(node.stub, rpc)(request, timeout=max(0.001, timeout))
        except grpc.aio.AioRpcError as exc:
            raise _failure(agency, "", exc.code()) from exc
        if response is None:  # bytes that are not the answer's message type
            raise AgencyRejected("malformed answer")
        return response

    async def features(self, agency: str, *, timeout: float = 5.0) -> frozenset[int]:
        """The features the agency's node lists in Describe now; empty if it has no endpoint or cannot answer."""
        node = self._nodes.get(agency)
        if node is None:
            return frozenset()
        try:
            described = await node.stub.Describe(agency_pb.DescribeRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return frozenset()
        return frozenset(described.features)

    async def close(self) -> None:
        self.lag.stop()
        for node in self._nodes.values():
            await node.close()
        for channel in self._channels:
            await channel.close()
