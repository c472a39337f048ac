"""Fuzzing every request message of every RPC against a real gateway and a real agency node over mutual TLS.

Messages are drawn from their protobuf descriptors (so a new field or RPC is fuzzed without touching this
file), with strings mixing arbitrary text and the shipped vocabulary so that some requests get past
validation. Each example asserts: no UNKNOWN or INTERNAL, every refusal audited, nothing streamed on a
refused call, and the server still serving afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import yaml
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agency_stubs import World
from agency_stubs.cast import KAI_MERCER
from gateway.api.tls import channel_credentials, client_credentials, gateway_client_credentials
from gateway.audit.encoding import decode_entry
from gateway.demo.partnership import Partnership
from gateway.domain import AuditKind
from gateway.generated.mash.gateway.v1 import (
    agency_service_pb2,
    analysis_service_pb2,
    audit_service_pb2,
    hub_service_pb2,
    locator_service_pb2,
    policy_service_pb2,
    referral_service_pb2,
    review_service_pb2,
)
from gateway.pki.authority import node_server_name

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_SERVICES = [module.DESCRIPTOR.services_by_name[name] for module, name in (
    (hub_service_pb2, "HubService"), (audit_service_pb2, "AuditService"), (policy_service_pb2, "PolicyService"),
    (referral_service_pb2, "ReferralService"), (review_service_pb2, "ReviewService"),
    (analysis_service_pb2, "AnalysisService"))]
GATEWAY_METHODS = [method for service in GATEWAY_SERVICES for method in service.methods]
NODE_METHODS = list(agency_service_pb2.DESCRIPTOR.services_by_name["AgencyService"].methods)
LOCATOR_METHODS = list(locator_service_pb2.DESCRIPTOR.services_by_name["LocatorService"].methods)
REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED}
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
# Each client certificate and the roles it is bound to, plus one role it is not.
CALLERS = [("police", "case-system"), ("csc", "case-system"), ("hub", "mash-console"), ("hub", "audit-console"),
           ("hub", "policy-admin"), ("hub", "analysis-console")]
ROLES = ["mash_manager", "mash_social_worker", "auditor", "policy_admin", "mash_researcher_police", "police_officer",
         "social_worker", "mash_analyst"]
OPEN_ENDED = {"WatchNotifications"}  # a watch stays open while allowed: ended by a short deadline


def _vocabulary() -> list[str]:
    """Every name the shipped policy defines, and the cast's identifiers: values that pass validation."""
    words: set[str] = set()
    for path in [*(ROOT / "policies" / "vocabulary").glob("*.yaml"), ROOT / "policies" / "workflow.yaml"]:
        for section in (yaml.safe_load(path.read_text()) or {}).values():
            if isinstance(section, dict):
                words.update(str(key) for key in section)
    words.update({KAI_MERCER.nhs_number, KAI_MERCER.given_name, KAI_MERCER.family_name, KAI_MERCER.date_of_birth,
                  KAI_MERCER.postcode, "mash-isa-2026", "MASH-2026-0001", "mash_manager", "auditor",
                  "policy_admin", "mash_researcher_police", "2026-01-01T00:00:00Z"})
    return sorted(words)


VOCABULARY = _vocabulary()
# Long texts are one character repeated: as hostile to limits as any, and cheap to generate.
TEXT = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=24), st.just(""),
                 st.builds(str.__mul__, st.characters(codec="utf-8"), st.integers(200, 20_000)))
_INTEGERS = {
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: st.integers(0, 2**64 - 1),
}
_UNSIGNED = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_UINT64,
             FieldDescriptor.TYPE_FIXED64}


def _small_or_any(field: FieldDescriptor) -> st.SearchStrategy[int]:
    """Small numbers (indices, sizes, limits) most of the time, extremes of the wire type otherwise."""
    return st.one_of(st.integers(0 if field.type in _UNSIGNED else -2, 64), _INTEGERS[field.type])


def _scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    if field.type == FieldDescriptor.TYPE_STRING:
        return TEXT
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        # Open enums: numbers the schema does not name arrive too.
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-3, 1000))
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if field.type == FieldDescriptor.TYPE_FLOAT else 64)
    return _small_or_any(field)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor` with any subset of fields set, nesting at most three levels deep."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 3:
        return st.builds(cls)
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            optional[field.name] = st.dictionaries(_scalar(key, depth), _scalar(value, depth), max_size=4)
        elif field.is_repeated:
            optional[field.name] = st.lists(_scalar(field, depth), max_size=6)
        else:
            optional[field.name] = _scalar(field, depth)

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in values.items():
            field = descriptor.fields_by_name[name]
            target = getattr(message, name) if field.is_repeated else None
            if target is not None and isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(v, Message):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif target is not None:
                target.extend(value)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries({}, optional=optional).map(build)


def requests(methods: list[MethodDescriptor]) -> st.SearchStrategy[tuple[MethodDescriptor, Message]]:
    return st.sampled_from(methods).flatmap(lambda m: st.tuples(st.just(m), messages(m.input_type)))


async def _call(channel: grpc.aio.Channel, method: MethodDescriptor, request: Message,
                metadata: tuple[tuple[str, str], ...]) -> tuple[list[bytes], grpc.StatusCode]:
    """Send `request`; the raw answers received and the final status code."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    timeout = 1.0 if method.name in OPEN_ENDED else 10.0
    received: list[bytes] = []
    try:
        if method.server_streaming:
            async for answer in channel.unary_stream(path)(request.SerializeToString(), metadata=metadata,
                                                           timeout=timeout):
                received.append(answer)
        else:
            received.append(await channel.unary_unary(path)(request.SerializeToString(), metadata=metadata,
                                                            timeout=timeout))
    except grpc.aio.AioRpcError as exc:
        return received, exc.code()
    return received, grpc.StatusCode.OK


@pytest.fixture
def channels(gateway: Partnership) -> dict[tuple[str, str], grpc.aio.Channel]:
    """One mTLS channel per client certificate, reused by every example (the partnership closes them)."""
    return {caller: gateway.channel(client_credentials(gateway.pki, *caller)) for caller in CALLERS}


@pytest.fixture
async def gateway(tmp_path: Path, policy_dir: Path, shared_world: World) -> AsyncIterator[Partnership]:
    """One gateway for every example (memory audit store: the fuzzer tests the request path, not fsync)."""
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world, audit_store="memory:",
                           agencies=("police", "health")) as running:
        yield running


@settings(max_examples=1200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(call=requests(GATEWAY_METHODS), caller=st.sampled_from(CALLERS),
       role=st.sampled_from(ROLES),
       user=st.sampled_from(["manager.1", "ig.officer.1", "", "x" * 300]))
async def test_fuzzed_requests_to_every_gateway_rpc_never_crash_and_every_refusal_is_audited(
    gateway: Partnership, channels: dict[tuple[str, str], grpc.aio.Channel], call: tuple[MethodDescriptor, Message],
    caller: tuple[str, str], role: str, user: str
) -> None:
    """Any request to any hub, audit, policy or referral RPC: no UNKNOWN/INTERNAL, refusals audited, still serving."""
    method, request = call
    assert gateway.gateway is not None
    store = gateway.gateway.deps.audit.store
    before = await store.size()
    channel = channels[caller]
    received, code = await _call(channel, method, request, (("x-mash-user", user), ("x-mash-role", role)))
    assert code not in NEVER, (method.full_name, code)
    if code in REFUSED:
        assert received == [], method.full_name  # nothing disclosed before the refusal
        new = [decode_entry(row.data).event for row in await store.scan(before, 1000)]
        assert any(e.kind is AuditKind.REFUSAL and e.status == code.name for e in new), (method.full_name, code)
    health = health_pb2_grpc.HealthStub(channel)
    status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status
    assert status == health_pb2.HealthCheckResponse.SERVING


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(call=requests(LOCATOR_METHODS), node=st.sampled_from(["police", "health"]))
async def test_fuzzed_requests_to_the_locator_from_a_node_never_crash_the_gateway(
    gateway: Partnership, call: tuple[MethodDescriptor, Message], node: str
) -> None:
    """Any Evaluate, Enrol, Withdraw or GetEnrolmentState request from an agency node's own certificate: no
    UNKNOWN/INTERNAL, nothing answered with a refusal, and the gateway still serving."""
    method, request = call
    channel = gateway.channel(channel_credentials(gateway.pki.ca_cert, *gateway.pki.node(node)))
    received, code = await _call(channel, method, request, ())
    assert code not in NEVER, (method.full_name, code)
    if code in REFUSED:
        assert received == [], method.full_name
    health = health_pb2_grpc.HealthStub(channel)
    status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status
    assert status == health_pb2.HealthCheckResponse.SERVING


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(call=requests(NODE_METHODS))
async def test_fuzzed_requests_to_an_agency_node_never_crash_it(
    gateway: Partnership, call: tuple[MethodDescriptor, Message]
) -> None:
    """Any Lookup or Describe request to a real agency node, from the gateway's certificate: no UNKNOWN/INTERNAL."""
    method, request = call
    assert gateway.settings is not None
    node = gateway.nodes["police"]
    channel = grpc.aio.secure_channel(node.address, gateway_client_credentials(gateway.settings.pki),
                                      options=[("grpc.ssl_target_name_override", node_server_name("police"))])
    try:
        _, code = await _call(channel, method, request, ())
        assert code not in NEVER, (method.full_name, code)
        health = health_pb2_grpc.HealthStub(channel)
        status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await channel.close()


@pytest.mark.parametrize("field", ["since", "until"])
async def test_a_list_filter_time_out_of_range_is_invalid_argument_and_audited(
    gateway: Partnership, field: str
) -> None:
    """A ListEntries time with impossible nanos (found by fuzzing: it was INTERNAL) is refused and audited."""
    assert gateway.gateway is not None
    request = audit_service_pb2.ListEntriesRequest(**{field: Timestamp(seconds=0, nanos=-1)})
    channel = gateway.channel(client_credentials(gateway.pki, "hub", "audit-console"))
    before = await gateway.gateway.deps.audit.store.size()
    received, code = await _call(channel, audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"]
                                 .methods_by_name["ListEntries"], request,
                                 (("x-mash-user", "ig.officer.1"), ("x-mash-role", "auditor")))
    assert (received, code) == ([], grpc.StatusCode.INVALID_ARGUMENT)
    (refusal,) = [decode_entry(r.data).event for r in await gateway.gateway.deps.audit.store.scan(before, 10)]
    assert (refusal.kind, refusal.reason) == (AuditKind.REFUSAL, f"invalid request: {field}")


@pytest.mark.parametrize(("rpc", "field"), [("SubmitReferral", "received_at"), ("ListReferrals", "due_before")])
async def test_a_referral_time_out_of_range_is_invalid_argument_and_audited(
    gateway: Partnership, rpc: str, field: str
) -> None:
    """A referral time before year 1 (found by fuzzing: it was INTERNAL) is refused and audited."""
    assert gateway.gateway is not None
    method = referral_service_pb2.DESCRIPTOR.services_by_name["ReferralService"].methods_by_name[rpc]
    request = message_factory.GetMessageClass(method.input_type)(
        **{field: Timestamp(seconds=-62135596801)})
    channel = gateway.channel(client_credentials(gateway.pki, "hub", "mash-console"))
    before = await gateway.gateway.deps.audit.store.size()
    metadata = (("x-mash-user", "manager.1"), ("x-mash-role", "mash_manager"))
    received, code = await _call(channel, method, request, metadata)
    assert (received, code) == ([], grpc.StatusCode.INVALID_ARGUMENT)
    (refusal,) = [decode_entry(r.data).event for r in await gateway.gateway.deps.audit.store.scan(before, 10)]
    assert refusal.kind is AuditKind.REFUSAL
    assert field in refusal.reason
