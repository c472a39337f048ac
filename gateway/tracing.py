"""Optional OpenTelemetry tracing, off unless `tracing_endpoint` is set: a server span per RPC and a client
span per agency call inside it, exported in batches over OTLP/HTTP.

Spans carry RPC names, agency names, request ids, outcomes and counts — never identifiers, names or record
content, as for logs and metrics. The provider is the gateway's own (no process-wide global is set), so
tracing one gateway in a process never traces another.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway.errors import AgencyRejected, AgencyTimedOut, AgencyUnavailable
from gateway.service.ports import LookupCommand, LookupResult

if TYPE_CHECKING:  # the SDK and the exporter load only when tracing is switched on (about 0.1 s at start-up)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

SERVICE_NAME = "mash-gateway"


@dataclass(frozen=True, slots=True)
class Tracing:
    """The gateway's tracer and the provider behind it (flushed and shut down when the gateway stops)."""

    provider: TracerProvider
    tracer: trace.Tracer

    @classmethod
    def open(cls, endpoint: str, *, exporter: SpanExporter | None = None) -> Tracing:
        """Export to the OTLP/HTTP traces `endpoint` (or to `exporter`), in batches off the event loop."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
        provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=endpoint, timeout=5)))
        return cls(provider, provider.get_tracer("gateway"))

    def shutdown(self) -> None:
        """Send what is buffered (waiting at most a few seconds for the collector), then stop."""
        self.provider.shutdown()

    @contextlib.contextmanager
    def rpc(self, method: str) -> Iterator[trace.Span]:
        """The server span of one RPC; agency calls made while it is current become its children."""
        # Exceptions are not recorded on spans: their messages may quote what a caller or a node sent.
        with self.tracer.start_as_current_span(method, kind=SpanKind.SERVER, record_exception=False,
                                               set_status_on_exception=False, attributes={
            "rpc.system": "grpc", "rpc.method": method,
        }) as span:
            yield span


class TracedTransport:
    """An AgencyTransport that records each call to an agency's node as a client span: every lookup and, when
    the inner transport reaches nodes' other methods (`call`, as the gRPC transport does), every summary."""

    def __init__(self, inner: Any, tracing: Tracing) -> None:
        self._inner = inner
        self._tracer = tracing.tracer

    @contextlib.contextmanager
    def _span(self, rpc: str, agency: str, request_id: str) -> Iterator[Span]:
        with self._tracer.start_as_current_span(f"AgencyService/{rpc}", kind=SpanKind.CLIENT, record_exception=False,
                                                set_status_on_exception=False, attributes={
                                                    "rpc.system": "grpc", "mash.agency": agency,
                                                    "mash.request_id": request_id}) as span:
            try:
                yield span
            except (AgencyTimedOut, AgencyUnavailable, AgencyRejected) as exc:
                outcome = {AgencyTimedOut: "timed_out", AgencyUnavailable: "unavailable"}.get(type(exc), "rejected")
                span.set_attribute("mash.outcome", outcome)
                span.set_status(Status(StatusCode.ERROR, outcome))
                raise
            span.set_attribute("mash.outcome", "ok")

    async def lookup(self, agency: str, command: LookupCommand, *, timeout: float) -> LookupResult:
        with self._span("Lookup", agency, command.request_id) as span:
            result: LookupResult = await self._inner.lookup(agency, command, timeout=timeout)
            span.set_attribute("mash.matches", len(result.matches))
            return result

    async def call(self, agency: str, rpc: str, request: Message, *, timeout: float) -> Any:
        with self._span(rpc, agency, str(getattr(request, "request_id", ""))):
            return await self._inner.call(agency, rpc, request, timeout=timeout)

    async def features(self, agency: str, *, timeout: float = 5.0) -> frozenset[int]:
        features: frozenset[int] = await self._inner.features(agency, timeout=timeout)
        return features

    async def close(self) -> None:
        await self._inner.close()
