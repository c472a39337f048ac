"""One wrapper around every RPC handler: decode without raising, take the caller and log context once,
refuse (audited) what cannot be read, and map errors to status codes.

An aio server interceptor cannot see the TLS peer, so this is done where the handlers are registered.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import grpc
import grpc.aio
import structlog
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from opentelemetry.trace import Status, StatusCode

from gateway.api.errors import errors_as_status
from gateway.api.identity import caller_from_context, peer_certificate
from gateway.errors import FieldViolation, InvalidRequest, RequestRefused
from gateway.pki.revocation import RevocationList
from gateway.service.access import Refusals
from gateway.service.limits import CallLimiter, Limits
from gateway.service.validation import Caller

if TYPE_CHECKING:
    from gateway.metrics import GatewayMetrics
    from gateway.tracing import Tracing

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True, slots=True)
class Call:
    """What a servicer method knows of the call it answers: who is calling, which RPC, and its deadline."""

    caller: Caller
    rpc: str
    context: Context

    def time_remaining(self) -> float | None:
        return self.context.time_remaining()


class _Undecodable:
    """Stands in for request bytes that are not a valid message (bad wire format, invalid UTF-8)."""


UNDECODABLE: Final = _Undecodable()


def _lenient(message_class: type[Message]) -> Callable[[bytes], Message | _Undecodable]:
    # grpc turns a deserializer's exception into UNKNOWN with the exception's class name and never calls
    # the handler, so the refusal could not be audited; parse here and let the handler refuse instead.
    def parse(data: bytes) -> Message | _Undecodable:
        try:
            return message_class.FromString(data)
        except Exception:
            return UNDECODABLE

    return parse


class CallHandlers:
    """Registers servicers so each call is checked and refused in one place before any servicer method runs."""

    def __init__(self, refusals: Refusals, metrics: GatewayMetrics | None = None, *,
                 limiter: CallLimiter | None = None, revocations: RevocationList | None = None,
                 tracing: Tracing | None = None) -> None:
        self._refusals = refusals
        self._metrics = metrics
        self._tracing = tracing
        self._limiter = limiter or CallLimiter(Limits())
        self._revocations = revocations

    def _observe(self, rpc: str, context: Context, started: float, failed: bool) -> None:
        if self._metrics is None:
            return
        code = context.code()
        name = code.name if isinstance(code, grpc.StatusCode) else ("UNKNOWN" if failed else "OK")
        self._metrics.observe_rpc(rpc, name, time.perf_counter() - started)

    @contextlib.asynccontextmanager
    async def _span(self, rpc: str, context: Context) -> AsyncIterator[None]:
        """The RPC's server span when tracing is on, ended with the call's status code."""
        if self._tracing is None:
            yield
            return
        with self._tracing.rpc(rpc) as span:
            try:
                yield
            finally:
                code = context.code()
                name = code.name if isinstance(code, grpc.StatusCode) else "OK"
                span.set_attribute("rpc.grpc.status_code", name)
                if name != "OK":
                    span.set_status(Status(StatusCode.ERROR, name))

    @contextlib.asynccontextmanager
    async def _begin(self, request: object, context: Context, service: ServiceDescriptor,
                     rpc: str) -> AsyncIterator[Call]:
        """Inside: the call, counted against its caller's limits until it ends."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(rpc=rpc)
        caller, violations = caller_from_context(context)
        # Limits come first: they are cheapest, and a refused flood writes one audit entry per window.
        with self._limiter.hold(caller) as over:
            if over is not None:
                await self._refusals.limited(caller, rpc, over.error, audit=over.audit,
                                             refused=over.refused_since_last_entry)
            if self._revocations is not None and self._revocations.is_revoked_pem(peer_certificate(context) or b""):
                await self._refusals.refuse(caller, rpc, RequestRefused(
                    "the client certificate has been revoked", code="CERTIFICATE_REVOKED"))
            if request is UNDECODABLE:
                method = service.methods_by_name[rpc]
                violations = (*violations, FieldViolation(
                    "request", f"is not a valid {method.input_type.full_name} message"))
            if violations:
                await self._refusals.refuse(caller, rpc, InvalidRequest(violations))
            yield Call(caller, rpc, context)

    def add(self, server: grpc.aio.Server, service: ServiceDescriptor, servicer: object) -> None:
        """Serve every method of `service` from the same-named coroutine (or async generator) of `servicer`,
        called as `method(request, call)`."""
        handlers = {}
        for method in service.methods:
            if method.client_streaming:
                raise NotImplementedError(f"{method.full_name}: client streaming is not supported")
            implementation = getattr(servicer, method.name)
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            if method.server_streaming:
                handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                    self._streaming(service, method.name, implementation),
                    request_deserializer=_lenient(request_class),
                    response_serializer=response_class.SerializeToString)
            else:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                    self._unary(service, method.name, implementation),
                    request_deserializer=_lenient(request_class),
                    response_serializer=response_class.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
        server.add_registered_method_handlers(service.full_name, handlers)

    def _unary(
        self, service: ServiceDescriptor, rpc: str, implementation: Callable[[Any, Call], Awaitable[Message]]
    ) -> Callable[[Any, Context], Awaitable[Message]]:
        async def handle(request: Any, context: Context) -> Message:
            started, failed = time.perf_counter(), True
            try:
                async with self._span(rpc, context), errors_as_status(context), \
                        self._begin(request, context, service, rpc) as call:
                    response = await implementation(request, call)
                    failed = False
                    return response
                raise AssertionError("unreachable")  # pragma: no cover - errors_as_status aborts or re-raises
            finally:
                self._observe(rpc, context, started, failed)

        return handle

    def _streaming(
        self, service: ServiceDescriptor, rpc: str, implementation: Callable[[Any, Call], AsyncIterator[Message]]
    ) -> Callable[[Any, Context], AsyncIterator[Message]]:
        async def handle(request: Any, context: Context) -> AsyncIterator[Message]:
            started, failed = time.perf_counter(), True
            try:
                async with self._span(rpc, context), errors_as_status(context), \
                        self._begin(request, context, service, rpc) as call:
                    async for response in implementation(request, call):
                        yield response
                    failed = False
            finally:
                self._observe(rpc, context, started, failed)

        return handle
