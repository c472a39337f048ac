"""Checks every call gets before any servicer runs, over real mTLS: undecodable requests and repeated identity."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from hub_helpers import SCREENING, field_violations, subject

from gateway.api.tls import client_credentials
from gateway.audit import decode_entry
from gateway.demo.partnership import Partnership
from gateway.domain import AuditEvent, AuditKind
from gateway.generated.mash.gateway.v1 import (
    analysis_service_pb2,
    audit_service_pb2,
    common_pb2,
    hub_service_pb2,
    policy_service_pb2,
)
from gateway.generated.mash.gateway.v1 import hub_service_pb2_grpc as hub_grpc

SERVICES = [
    hub_service_pb2.DESCRIPTOR.services_by_name["HubService"],
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"],
    policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"],
    analysis_service_pb2.DESCRIPTOR.services_by_name["AnalysisService"],
]
METHODS = [method for service in SERVICES for method in service.methods]

NOT_A_MESSAGE = b"\xff" * 11  # a field tag longer than any varint


def bad_utf8(method: MethodDescriptor) -> bytes | None:
    """The request's first string field holding bytes that are not UTF-8; None if it has no string field."""
    for field in method.input_type.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            return bytes([field.number << 3 | 2, 2]) + b"\xff\xfe"
    return None


def not_a_message(method: MethodDescriptor) -> bytes:
    return NOT_A_MESSAGE

REFUSAL_BYTES = 1024  # far above a refusal entry's real size, far below any request that could bloat the log


async def _events(partnership: Partnership) -> list[tuple[AuditEvent, int]]:
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 10_000)
    return [(decode_entry(r.data).event, len(r.data)) for r in rows]


async def _call_raw(partnership: Partnership, path: str, body: bytes, streaming: bool) -> None:
    """Send `body` as the request bytes of `path`, with no serializer in the way."""
    channel = partnership.channel(client_credentials(partnership.pki, "hub", "audit-console"))
    metadata = (("x-mash-user", "ig.officer.1"), ("x-mash-role", "mash_researcher_police"))
    if streaming:
        [m async for m in channel.unary_stream(path)(body, metadata=metadata, timeout=10)]
    else:
        await channel.unary_unary(path)(body, metadata=metadata, timeout=10)


async def _send_raw(partnership: Partnership, path: str, body: bytes, streaming: bool) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call_raw(partnership, path, body, streaming)
    return caught.value


@pytest.mark.parametrize("make_body", [not_a_message, bad_utf8], ids=["bad-wire-format", "invalid-utf8"])
async def test_an_undecodable_request_to_any_rpc_is_invalid_argument_and_audited(
    partnership: Partnership, make_body: Callable[[MethodDescriptor], bytes | None]
) -> None:
    """Bytes that are not the request message are INVALID_ARGUMENT naming no internals, and each is audited."""
    tried = []
    for method in METHODS:
        body = make_body(method)
        if body is None:
            continue
        tried.append(method.name)
        path = f"/{method.containing_service.full_name}/{method.name}"
        error = await _send_raw(partnership, path, body, method.server_streaming)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, error.code(), error.details())
        assert "Error" not in (error.details() or ""), path
        assert field_violations(error) == {"request": f"is not a valid {method.input_type.full_name} message"}
    refusals = [(e, size) for e, size in await _events(partnership) if e.kind is AuditKind.REFUSAL]
    assert [e.details["rpc"] for e, _ in refusals] == tried
    assert len(tried) >= 5
    assert all(e.status == "INVALID_ARGUMENT" and e.reason == "invalid request: request" for e, _ in refusals)
    assert all(e.caller == "spiffe://mash.local/agency/hub/system/audit-console" for e, _ in refusals)
    assert all(size < REFUSAL_BYTES for _, size in refusals)


async def test_a_huge_undecodable_request_leaves_a_small_refusal(partnership: Partnership) -> None:
    """A 3 MB undecodable request is refused with an entry of bounded size."""
    error = await _send_raw(partnership, "/mash.gateway.v1.HubService/Query", NOT_A_MESSAGE * 300_000, False)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    ((refusal, size),) = [(e, s) for e, s in await _events(partnership) if e.kind is AuditKind.REFUSAL]
    assert refusal.details["rpc"] == "Query"
    assert size < REFUSAL_BYTES


@pytest.mark.parametrize("key", ["x-mash-user", "x-mash-role"])
async def test_repeated_identity_metadata_is_refused_and_audited(partnership: Partnership, key: str) -> None:
    """A user or role sent twice is INVALID_ARGUMENT, audited with neither value, and nothing is asked."""
    values = {"x-mash-user": ["researcher.police", "someone.else"],
              "x-mash-role": ["mash_researcher_police", "police_officer"]}
    metadata = [(name, value) for name, sent in values.items() for value in (sent if name == key else sent[:1])]
    stub = hub_grpc.HubServiceStub(partnership.channel(client_credentials(partnership.pki, "police", "case-system")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Query(hub_service_pb2.QueryRequest(
            subject=common_pb2.SubjectIdentifiers(**subject()), **SCREENING), metadata=metadata, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == {f"metadata.{key}": "must be sent once"}
    events = await _events(partnership)
    assert [e.kind for e, _ in events if e.kind is not AuditKind.POLICY_ACTIVATION] == [AuditKind.REFUSAL]
    (refusal,) = [e for e, _ in events if e.kind is AuditKind.REFUSAL]
    assert (refusal.status, refusal.details["rpc"]) == ("INVALID_ARGUMENT", "Query")
    assert refusal.user == ("<invalid>" if key == "x-mash-user" else "researcher.police")
    assert "someone.else" not in repr(refusal)
    assert "police_officer" not in repr(refusal)


async def test_a_single_user_and_role_still_reach_the_query(partnership: Partnership) -> None:
    """Sent once each, the identity metadata passes the call checks and the query is answered."""
    client = partnership.client("police", "case-system", user="researcher.police", role="mash_researcher_police")
    response = await client.query(subject=subject(), **SCREENING)
    assert len(response.answers) == len(partnership.nodes)  # one per record-holding agency
