"""A new agency joins by configuration alone and is asked end to end through a node built only from the protos.

The youth offending service is declared, given categories, rules, a binding and a redaction contact in a copy
of the policy; its certificates come from `mash-gateway pki init`/`issue-client`; its node is generated from
agency_service.proto with grpc_tools.protoc and runs as a separate process. Real mTLS, real gateway on port 0.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from structlog.testing import capture_logs

from gateway.api.tls import client_credentials
from gateway.app import GatewayServer, build_server, open_dependencies
from gateway.audit import decode_entry
from gateway.cli.main import main as cli
from gateway.demo.partnership import HubClient
from gateway.domain import AuditKind
from gateway.generated.mash.gateway.v1 import audit_service_pb2 as audit_pb
from gateway.generated.mash.gateway.v1 import audit_service_pb2_grpc as audit_grpc
from gateway.generated.mash.gateway.v1 import hub_service_pb2
from gateway.keys import KeyPaths, init_keys
from gateway.partnership import EndpointError, load_plan
from gateway.pki import PkiLayout
from gateway.pki.authority import gateway_server_name
from gateway.settings import Settings
from tests.joining_agency import YOS_CLIENT, add_youth_offending_service

ROOT = Path(__file__).resolve().parents[2]
NODE = Path(__file__).with_name("yos_node.py")
S47 = {"purpose": "s47_enquiry", "legal_basis": "children_act_1989_s47", "agreement": "mash-isa-2026",
       "case_reference": "MASH-2026-0707"}
YOUNG_PERSON = {"nhs_number": "999 000 7004"}
SHIPPED = list(load_plan(ROOT / "policies").record_holders)  # the partnership the youth offending service joins

pytestmark = pytest.mark.slow


@dataclass
class Setup:
    policy_dir: Path
    pki: PkiLayout
    state_dir: Path
    node_address: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, policy_dir: Path) -> Iterator[Setup]:
    """The policy with a youth offending service, its PKI from the CLI, and its protoc-generated node running."""
    tmp = tmp_path_factory.mktemp("joining")
    policies = add_youth_offending_service(policy_dir, tmp / "policies")
    pki = PkiLayout(tmp / "pki")
    assert cli(["pki", "init", str(pki.root), "--policy-dir", str(policies)]) == 0
    generated = tmp / "generated"
    generated.mkdir()
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--python_out={generated}",
         f"--grpc_python_out={generated}", "mash/gateway/v1/common.proto", "mash/gateway/v1/agency_service.proto"],
        check=True,
    )
    node = subprocess.Popen(
        [sys.executable, str(NODE), "--tls-dir", str(pki.root)], cwd=tmp, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(generated)},
    )
    try:
        assert node.stdout is not None
        line = node.stdout.readline()
        assert line.startswith("listening on "), line
        init_keys(KeyPaths(tmp / "state" / "keys"))
        yield Setup(policies, pki, tmp / "state", f"127.0.0.1:{line.split()[-1]}")
    finally:
        node.terminate()
        node.wait(10)


def _settings(setup: Setup, endpoints: dict[str, str], **extra: object) -> Settings:
    return Settings(state_dir=setup.state_dir, policy_dir=setup.policy_dir, pki_dir=setup.pki.root,
                    agency_endpoints=endpoints, policy_watch_interval=None, checkpoint_interval=3600,
                    **extra)  # type: ignore[arg-type]


@pytest.fixture
async def gateway(setup: Setup) -> AsyncIterator[GatewayServer]:
    """A gateway that knows only the youth offending service's endpoint and must have all agencies to serve."""
    settings = _settings(setup, {"yos": setup.node_address}, require_all_agencies=True)
    server = build_server(settings, await open_dependencies(settings))
    await server.start()
    yield server
    await server.stop(0.2)


def _channel(setup: Setup, port: int, agency: str, system: str) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(
        f"127.0.0.1:{port}", client_credentials(setup.pki, agency, system),
        options=[("grpc.ssl_target_name_override", gateway_server_name())],
    )


def _yos(response: hub_service_pb2.QueryResponse) -> hub_service_pb2.AgencyAnswer:
    (answer,) = [a for a in response.answers if a.agency == "yos"]
    return answer


def test_the_node_imports_nothing_from_the_gateway_or_the_stubs() -> None:
    """The joining agency's node is built from the protos alone, as a real agency's would be."""
    tree = ast.parse(NODE.read_text())
    modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in modules if m.split(".")[0] in {"gateway", "agency_stubs", "tests"}]


async def test_the_joining_agency_is_asked_in_declared_order_and_answers_in_full_to_its_own_staff(
    setup: Setup, gateway: GatewayServer
) -> None:
    """Its case manager (certificate from the bindings) gets the order in full; agencies without nodes say so."""
    async with _channel(setup, gateway.port, "yos", "case-system") as channel:
        response = await HubClient(channel, "yos.cm.1", "yos_case_manager").query(subject=YOUNG_PERSON, **S47)
    assert [a.agency for a in response.answers] == [*SHIPPED, "yos"]
    assert {a.agency for a in response.answers if a.status == hub_service_pb2.ANSWER_STATUS_UNAVAILABLE} == set(SHIPPED)
    answer = _yos(response)
    assert answer.status == hub_service_pb2.ANSWER_STATUS_MATCH
    assert answer.contact.team == "YOS MASH officer"
    fields = {f.name: f.value for r in answer.records for f in r.fields}
    assert fields["offence"] == "possession of a bladed article"
    assert answer.receipt.leaf_hash


async def test_the_joining_agencys_own_redaction_rules_apply_to_other_agencies_staff(
    setup: Setup, gateway: GatewayServer
) -> None:
    """A social worker gets the court order as pertinent information: offence replaced, notes dropped."""
    async with _channel(setup, gateway.port, "csc", "case-system") as channel:
        response = await HubClient(channel, "sw.1", "social_worker").query(subject=YOUNG_PERSON, **S47)
    answer = _yos(response)
    assert answer.status == hub_service_pb2.ANSWER_STATUS_MATCH
    assert [r.category for r in answer.records] == ["yos.court_order"]
    fields = {f.name: f for f in answer.records[0].fields}
    assert fields["offence"].value == "[offence withheld]"
    assert "notes" not in fields or fields["notes"].disclosure == hub_service_pb2.FIELD_DISCLOSURE_WITHHELD
    assert b"bladed" not in response.SerializeToString()
    assert b"knife" not in response.SerializeToString()


async def test_an_auditor_can_filter_the_log_by_the_joining_agency(setup: Setup, gateway: GatewayServer) -> None:
    """The agency filter is checked against the policy's agencies: `yos` is kept by name, a misspelling is not."""
    async with _channel(setup, gateway.port, "yos", "case-system") as channel:
        await HubClient(channel, "yos.cm.1", "yos_case_manager").query(subject=YOUNG_PERSON, **S47)
    async with _channel(setup, gateway.port, "hub", "audit-console") as channel:
        stub = audit_grpc.AuditServiceStub(channel)
        listed = [m.entry async for m in stub.ListEntries(audit_pb.ListEntriesRequest(agency="yos"), timeout=10)]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [m async for m in stub.ListEntries(audit_pb.ListEntriesRequest(agency="yot"), timeout=10)]
    assert listed
    assert {e.agency for e in listed} == {"yos"}
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "did you mean 'yos'?" in caught.value.details()
    rows = await gateway.deps.audit.store.scan(0, 100_000)
    events = [decode_entry(r.data).event for r in rows]
    assert [e.details["agency"] for e in events if e.kind is AuditKind.AUDIT_ACCESS][-1:] == ["yos"]
    assert (events[-1].kind, events[-1].details["rpc"]) == (AuditKind.REFUSAL, "ListEntries")


async def test_hub_service_reports_not_serving_while_an_agency_has_no_endpoint(
    setup: Setup, gateway: GatewayServer
) -> None:
    """With require_all_agencies, the health service marks HubService NOT_SERVING; the server itself serves."""
    async with _channel(setup, gateway.port, "hub", "mash-console") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        hub = await health.Check(health_pb2.HealthCheckRequest(service="mash.gateway.v1.HubService"))
        overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert hub.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert overall.status == health_pb2.HealthCheckResponse.SERVING


async def test_start_warns_about_each_record_holder_without_an_endpoint(setup: Setup) -> None:
    """The operator is told at start which agencies will answer UNAVAILABLE; the hub is not among them."""
    settings = _settings(setup, {"yos": setup.node_address})
    with capture_logs() as logs:
        deps = await open_dependencies(settings)
    await deps.aclose()
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert warning["agencies"] == SHIPPED
    assert deps.unserved == tuple(SHIPPED)


async def test_an_endpoint_for_an_undeclared_agency_is_refused_at_start(setup: Setup) -> None:
    """A misspelt agency under [agencies] stops the gateway instead of leaving the real agency unasked."""
    settings = _settings(setup, {"yot": setup.node_address})
    with pytest.raises(EndpointError, match="'yot'"):
        await open_dependencies(settings)


def test_the_youth_offending_client_certificate_can_be_reissued_from_the_cli(setup: Setup) -> None:
    """`pki issue-client` issues for an identity bound in bindings.yaml."""
    args = ["pki", "issue-client", YOS_CLIENT, "--pki-dir", str(setup.pki.root), "--policy-dir", str(setup.policy_dir)]
    assert cli(args) == 0
    assert setup.pki.client("yos", "case-system")[0].is_file()

