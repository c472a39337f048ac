"""A simulated agency node served by a real grpc.aio server on port 0, over mutual TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from agency_stubs import AgencyDataset, World, build_world
from agency_stubs.cast import DEAN_ASHBY, KAI_MERCER, CastMember
from agency_stubs.node import RunningNode, serve_node
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import agency_service_pb2_grpc as agency_grpc
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.pki import PkiLayout, init_pki

GATEWAY = "spiffe://mash.local/gateway"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    """A development PKI for the whole module."""
    return init_pki(tmp_path_factory.mktemp("pki"), nodes=["police", "csc"],
                    clients=["spiffe://mash.local/agency/police/system/case-system"])


@pytest.fixture(scope="module")
def world() -> World:
    """A small world; the cast is always in it."""
    return build_world(seed=11, people=200)


def _server_credentials(pki: PkiLayout, agency: str) -> grpc.ServerCredentials:
    cert, key = pki.node(agency)
    return grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())],
                                       root_certificates=pki.ca_cert.read_bytes(), require_client_auth=True)


def _channel(pki: PkiLayout, node: RunningNode, client: tuple[Path, Path] | None) -> grpc.aio.Channel:
    cert, key = client if client is not None else (None, None)
    creds = grpc.ssl_channel_credentials(
        pki.ca_cert.read_bytes(),
        key.read_bytes() if key else None,
        cert.read_bytes() if cert else None,
    )
    return grpc.aio.secure_channel(node.address, creds,
                                   options=[("grpc.ssl_target_name_override", f"{node.agency}.node.mash.local")])


@pytest.fixture
async def police(pki: PkiLayout, world: World) -> AsyncIterator[RunningNode]:
    """The police node over mTLS, answering only the gateway's certificate."""
    node = await serve_node(world.dataset("police"), credentials=_server_credentials(pki, "police"),
                            allowed_callers={GATEWAY})
    yield node
    await node.stop(None)


@pytest.fixture
async def stub(pki: PkiLayout, police: RunningNode) -> AsyncIterator[agency_grpc.AgencyServiceAsyncStub]:
    """A client stub holding the gateway's certificate."""
    channel = _channel(pki, police, pki.gateway())
    # The generated stub's overloads resolve differently by channel type; the async stub is what this is.
    stub: Any = agency_grpc.AgencyServiceStub(channel)
    yield stub
    await channel.close()


def _subject(member: CastMember) -> common_pb.SubjectIdentifiers:
    s = member.subject()
    return common_pb.SubjectIdentifiers(nhs_number=s.nhs_number, given_name=s.given_name,
                                        family_name=s.family_name, date_of_birth=s.date_of_birth)


async def test_lookup_returns_only_the_requested_categories(stub: agency_grpc.AgencyServiceAsyncStub) -> None:
    """Dean's lookup for domestic abuse returns DA incidents only, with the node's MASH contact."""
    reply = await stub.Lookup(agency_pb.LookupRequest(
        request_id="req-1", subject=_subject(DEAN_ASHBY), categories=["police.domestic_abuse"],
        existence_categories=["police.intelligence"]), timeout=5)
    assert reply.agency == "police"
    assert reply.mash_contact.team
    (match,) = reply.matches
    assert match.person_ref == DEAN_ASHBY.person_refs["police"]
    assert match.method == agency_pb.MATCH_METHOD_NHS_NUMBER
    assert {r.category for r in match.records} == {"police.domestic_abuse"}
    assert len(match.records) == 2
    assert match.known_in_existence_categories
    record = match.records[0]
    assert record.kind == common_pb.RECORD_KIND_EVENT
    assert record.occurred_at.seconds > 0
    assert {f.category for f in record.fields} >= {"third_party.identity", "record.risk"}


async def test_lookup_for_an_unknown_person_returns_no_matches(stub: agency_grpc.AgencyServiceAsyncStub) -> None:
    """A valid subject the node does not hold gets an empty answer, not an error."""
    reply = await stub.Lookup(agency_pb.LookupRequest(
        subject=common_pb.SubjectIdentifiers(nhs_number="9434765919"), categories=["police.crime"]), timeout=5)
    assert list(reply.matches) == []


async def test_describe_lists_the_agency_catalogue(stub: agency_grpc.AgencyServiceAsyncStub) -> None:
    """Describe returns every police record category with its kind and field categories."""
    reply = await stub.Describe(agency_pb.DescribeRequest(), timeout=5)
    by_name = {c.category: c for c in reply.record_categories}
    assert len(by_name) == 7
    intel = by_name["police.intelligence"]
    assert intel.kind == common_pb.RECORD_KIND_EVENT
    assert {"police.grading", "police.handling_code", "police.handling_conditions"} <= set(intel.field_categories)
    assert reply.mash_contact.agency == "police"


async def test_lookup_stream_answers_each_batch_under_its_tag_as_lookup_batch_would(
    stub: agency_grpc.AgencyServiceAsyncStub
) -> None:
    """Two batches on one LookupStream call come back under their own tags, each with one result per lookup
    in the batch's order; a bad lookup is refused in its result alone."""
    dean = agency_pb.LookupRequest(request_id="req-dean", subject=_subject(DEAN_ASHBY),
                                   categories=["police.domestic_abuse"])
    bad = agency_pb.LookupRequest(request_id="req-bad", subject=_subject(KAI_MERCER), categories=["csc.case"])
    call: Any = stub.LookupStream()
    await call.write(agency_pb.LookupStreamRequest(tag=7, batch=agency_pb.LookupBatchRequest(lookups=[dean]),
                                                   timeout_ms=5000))
    await call.write(agency_pb.LookupStreamRequest(tag=3, batch=agency_pb.LookupBatchRequest(lookups=[bad, dean]),
                                                   timeout_ms=5000))
    answers = {m.tag: m.batch for m in [await call.read(), await call.read()]}
    await call.done_writing()
    assert await call.code() is grpc.StatusCode.OK
    assert set(answers) == {7, 3}
    (alone,) = answers[7].results
    assert alone.request_id == "req-dean"
    assert alone.error_code == 0
    assert {r.category for r in alone.response.matches[0].records} == {"police.domestic_abuse"}
    refused, answered = answers[3].results
    assert (refused.request_id, refused.error_code) == ("req-bad", grpc.StatusCode.INVALID_ARGUMENT.value[0])
    assert "csc.case" in refused.error_message
    assert answered.request_id == "req-dean"
    assert answered.response == alone.response


async def test_lookup_stream_refuses_a_caller_outside_allowed_callers_and_an_undecodable_message(
    pki: PkiLayout, police: RunningNode
) -> None:
    """LookupStream checks the caller when the call opens (PERMISSION_DENIED for an agency system's
    certificate) and ends the call with INVALID_ARGUMENT on bytes that are not a LookupStreamRequest."""
    garbage = b"\x0a\x10\x01"
    for client, code in ((pki.client("police", "case-system"), grpc.StatusCode.PERMISSION_DENIED),
                         (pki.gateway(), grpc.StatusCode.INVALID_ARGUMENT)):
        channel = _channel(pki, police, client)
        try:
            call = channel.stream_stream("/mash.gateway.v1.AgencyService/LookupStream",
                                         request_serializer=lambda b: b, response_deserializer=lambda b: b)()

            async def send_garbage(call: Any = call) -> None:
                await call.write(garbage)
                await call.read()

            with pytest.raises(grpc.aio.AioRpcError) as info:
                await send_garbage()
            assert info.value.code() is code
        finally:
            await channel.close()


@pytest.mark.parametrize(
    ("request_kwargs", "expected"),
    [
        ({"categories": ["police.crime", "csc.case"]}, "csc.case"),
        ({"categories": []}, "no record category"),
        ({"categories": ["police.crime"], "subject": common_pb.SubjectIdentifiers(given_name="Kai")},
         "no usable identifiers"),
        ({"categories": ["police.crime"], "subject": common_pb.SubjectIdentifiers(nhs_number="9434765918")},
         "check digit"),
        ({"categories": ["police.crime"], "subject": common_pb.SubjectIdentifiers(
            given_name="Kai", family_name="Mercer", date_of_birth="2017-02-30")}, "date_of_birth"),
    ],
)
async def test_bad_lookups_get_invalid_argument_naming_the_problem(
    stub: agency_grpc.AgencyServiceAsyncStub, request_kwargs: dict[str, object], expected: str
) -> None:
    """Unknown categories, no categories, unusable or invalid identifiers are INVALID_ARGUMENT."""
    request_kwargs.setdefault("subject", _subject(KAI_MERCER))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Lookup(agency_pb.LookupRequest(**request_kwargs), timeout=5)  # type: ignore[arg-type]
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert expected in (info.value.details() or "")


async def test_a_caller_outside_allowed_callers_is_permission_denied(pki: PkiLayout, police: RunningNode) -> None:
    """A valid certificate of an agency system (not the gateway) may not query the node directly."""
    channel = _channel(pki, police, pki.client("police", "case-system"))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await agency_grpc.AgencyServiceStub(channel).Lookup(
                agency_pb.LookupRequest(subject=_subject(DEAN_ASHBY), categories=["police.crime"]), timeout=5)
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    finally:
        await channel.close()


@pytest.mark.parametrize("rpc", ["Lookup", "LookupBatch", "Describe"])
async def test_an_undecodable_request_is_invalid_argument_not_unknown(pki: PkiLayout, police: RunningNode,
                                                                        rpc: str) -> None:
    """Bytes that are not a valid message get INVALID_ARGUMENT (grpc's own answer would be UNKNOWN); a caller
    outside allowed_callers is still PERMISSION_DENIED first, and the node keeps answering."""
    garbage = b"\x0a\x10\x01"  # field 1 said to be 16 bytes long, cut short after one: no message parses it
    for client, code in ((pki.gateway(), grpc.StatusCode.INVALID_ARGUMENT),
                         (pki.client("police", "case-system"), grpc.StatusCode.PERMISSION_DENIED)):
        channel = _channel(pki, police, client)
        try:
            call = channel.unary_unary(f"/mash.gateway.v1.AgencyService/{rpc}",
                                       request_serializer=lambda b: b, response_deserializer=lambda b: b)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(garbage, timeout=5)
            assert info.value.code() is code
        finally:
            await channel.close()
    channel = _channel(pki, police, pki.gateway())
    try:
        described = await agency_grpc.AgencyServiceStub(channel).Describe(agency_pb.DescribeRequest(), timeout=5)
        assert described.agency == "police"
    finally:
        await channel.close()


async def test_a_client_without_a_certificate_fails_the_handshake(pki: PkiLayout, police: RunningNode) -> None:
    """The node requires client certificates: a TLS client without one cannot call it."""
    channel = _channel(pki, police, None)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await agency_grpc.AgencyServiceStub(channel).Describe(
                agency_pb.DescribeRequest(), timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()


async def test_a_slow_node_misses_a_short_deadline(pki: PkiLayout, world: World) -> None:
    """With simulated latency, a call whose deadline is shorter fails with DEADLINE_EXCEEDED."""
    node = await serve_node(world.dataset("csc"), credentials=_server_credentials(pki, "csc"), latency=1.0)
    channel = _channel(pki, node, pki.gateway())
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await agency_grpc.AgencyServiceStub(channel).Lookup(
                agency_pb.LookupRequest(subject=_subject(KAI_MERCER), categories=["csc.case"]), timeout=0.2)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        await channel.close()
        await node.stop(None)


async def test_an_insecure_node_answers_and_replaced_data_is_served(world: World) -> None:
    """An insecure node (for local experiments) answers, and replace_dataset takes effect on the next call."""
    node = await serve_node(world.dataset("csc"))
    channel = grpc.aio.insecure_channel(node.address)
    try:
        stub = agency_grpc.AgencyServiceStub(channel)
        request = agency_pb.LookupRequest(subject=_subject(KAI_MERCER), categories=["csc.case"])
        (match,) = (await stub.Lookup(request, timeout=5)).matches
        assert match.records[0].fields[0].value == "open"
        without_kai = [e for e in world.dataset("csc").persons.values() if e.person_ref != match.person_ref]
        node.replace_dataset(AgencyDataset("csc", without_kai))
        assert list((await stub.Lookup(request, timeout=5)).matches) == []
    finally:
        await channel.close()
        await node.stop(None)


async def test_node_logs_carry_request_ids_and_counts_but_no_personal_data(
    stub: agency_grpc.AgencyServiceAsyncStub,
) -> None:
    """The lookup log line has the request id and counts, and none of the subject's identifiers."""
    with capture_logs() as logs:
        await stub.Lookup(agency_pb.LookupRequest(
            request_id="req-log-1", subject=_subject(DEAN_ASHBY), categories=["police.intelligence"]), timeout=5)
    (line,) = [entry for entry in logs if entry["event"] == "lookup"]
    assert line["request_id"] == "req-log-1"
    assert line["matches"] == 1
    assert line["records"] == 3
    text = repr(logs)
    for value in (DEAN_ASHBY.nhs_number, DEAN_ASHBY.given_name, DEAN_ASHBY.family_name, DEAN_ASHBY.date_of_birth,
                  DEAN_ASHBY.postcode, "lock-knife"):
        assert value.lower() not in text.lower()
