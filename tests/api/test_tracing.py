"""Optional OpenTelemetry tracing: a real OTLP/HTTP exporter sending to a collector stand-in on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hub_helpers import SCREENING, subject
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agency_stubs import World
from agency_stubs.cast import KAI_MERCER
from gateway.api.tls import client_credentials
from gateway.demo.partnership import Partnership
from gateway.generated.mash.gateway.v1 import analysis_service_pb2 as analysis_pb
from gateway.generated.mash.gateway.v1 import analysis_service_pb2_grpc as analysis_grpc
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.settings import Settings, SettingsError


@contextlib.contextmanager
def collector() -> Iterator[tuple[str, list[bytes]]]:
    """An OTLP/HTTP traces endpoint that keeps every request body it is sent."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", bodies
    finally:
        server.shutdown()
        server.server_close()


ANALYSIS = {"purpose": "safeguarding_analysis", "legal_basis": "dpa_2018_sch1_para18",
            "agreement": "mash-analysis-isa-2026", "case_reference": "MASH-2026-0100"}


def spans(bodies: list[bytes]) -> list[Any]:
    found = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        found += [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    return found


def attribute(span: Any, key: str) -> str:
    return next(a.value.string_value for a in span.attributes if a.key == key)


@contextlib.asynccontextmanager
async def traced(tmp_path: Path, policy_dir: Path, world: World) -> AsyncIterator[tuple[Partnership, list[bytes]]]:
    """A partnership whose gateway exports traces to a collector stand-in; every span is flushed on exit."""
    with collector() as (url, bodies):
        async with Partnership(tmp_path / "state", policy_dir, world=world,
                               settings={"tracing_endpoint": url}) as running:
            assert running.gateway is not None
            tracing = running.gateway.deps.tracing
            assert tracing is not None
            yield running, bodies
            assert await asyncio.to_thread(tracing.provider.force_flush, 10_000)


def assert_no_identifiers(bodies: list[bytes]) -> None:
    raw = b"".join(bodies)
    for value in (KAI_MERCER.nhs_number, KAI_MERCER.family_name, KAI_MERCER.given_name, KAI_MERCER.date_of_birth):
        assert value.encode() not in raw, "an identifier of the subject reached the trace collector"


async def test_a_traced_query_has_its_server_span_and_a_child_span_per_agency_call(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """With `tracing_endpoint` set, one hub query exports a server span for Query and, inside its trace, one
    client span per agency call naming the agency; nothing of the subject reaches the collector."""
    async with traced(tmp_path, policy_dir, shared_world) as (running, bodies):
        client = running.client("police", "case-system", user="researcher.police", role="mash_researcher_police")
        response = await client.query(subject=subject(KAI_MERCER), **SCREENING)
    exported = spans(bodies)
    (server,) = [s for s in exported if s.name == "Query"]
    assert attribute(server, "rpc.grpc.status_code") == "OK"
    calls = [s for s in exported if s.name == "AgencyService/Lookup"]
    asked = {a.agency for a in response.answers if a.status != hub_pb.ANSWER_STATUS_WITHHELD}
    assert {attribute(s, "mash.agency") for s in calls} == asked
    assert all(s.trace_id == server.trace_id and s.parent_span_id == server.span_id for s in calls)
    assert all(attribute(s, "mash.outcome") == "ok" for s in calls)
    assert {attribute(s, "mash.request_id") for s in calls} == {response.request_id}
    assert_no_identifiers(bodies)


async def test_an_analysis_request_has_a_child_span_per_summary_call(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """DescribePerson's calls to the nodes (Summarise) are traced like lookups: a client span per agency inside
    the request's server span, and nothing of the subject reaches the collector."""
    async with traced(tmp_path, policy_dir, shared_world) as (running, bodies):
        channel = running.channel(client_credentials(running.pki, "hub", "analysis-console"))
        response = await analysis_grpc.AnalysisServiceStub(channel).DescribePerson(
            analysis_pb.DescribePersonRequest(subject=subject(KAI_MERCER), **ANALYSIS),
            metadata=(("x-mash-user", "analyst.one"), ("x-mash-role", "mash_analyst")), timeout=10)
    exported = spans(bodies)
    (server,) = [s for s in exported if s.name == "DescribePerson"]
    calls = [s for s in exported if s.name == "AgencyService/Summarise"]
    assert {attribute(s, "mash.agency") for s in calls} >= {"police", "csc"}
    assert all(s.trace_id == server.trace_id and s.parent_span_id == server.span_id for s in calls)
    assert {attribute(s, "mash.request_id") for s in calls} == {response.request_id}
    assert_no_identifiers(bodies)


async def test_tracing_is_off_unless_an_endpoint_is_set(tmp_path: Path, policy_dir: Path, shared_world: World) -> None:
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world) as running:
        assert running.gateway is not None
        assert running.gateway.deps.tracing is None


def test_a_tracing_endpoint_that_is_not_a_url_is_refused_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nstate_dir = "s"\npolicy_dir = "p"\npki_dir = "k"\n'
                      'tracing_endpoint = "collector:4318"\n')
    with pytest.raises(SettingsError, match=r"gateway.toml:5: \[gateway\] tracing_endpoint .*OTLP/HTTP"):
        Settings.from_toml(config)
