"""The gateway's transport to agency nodes over real mTLS: a faulty node's answer never leaks what it holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
import structlog

from gateway.api.agency_client import GrpcAgencyTransport
from gateway.api.tls import gateway_client_credentials, node_server_credentials
from gateway.audit import IdentifierSealer
from gateway.domain import AnswerStatus, AuditKind, SubjectIdentifiers
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import agency_service_pb2_grpc as agency_grpc
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser
from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout, init_pki
from gateway.policy import PolicyHolder
from gateway.service.query import Caller, QueryCommand, QueryService
from gateway.testing import FixedClock, RecordingAuditSink

PROTECTED_ID = "HLT-SH-0042"
SOCIAL_WORKER = Caller("spiffe://mash.local/agency/csc/system/case-system", "csc", "sw.1", "social_worker")
S47 = QueryCommand("req-t", SubjectIdentifiers(nhs_number="9990000018"), "s47_enquiry", "children_act_1989_s47",
                   "mash-isa-2026", "MASH-1")

Answer = Callable[[agency_pb.LookupRequest], agency_pb.LookupResponse]


class FaultyNode(agency_grpc.AgencyServiceServicer):
    """A health node whose answers are written by the test, faults included."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.asked: list[agency_pb.LookupRequest] = []

    async def Lookup(self, request: agency_pb.LookupRequest, context: object) -> agency_pb.LookupResponse:
        self.asked.append(request)
        return self.answer(request)


@dataclass
class Rig:
    node: FaultyNode
    service: QueryService
    sink: RecordingAuditSink


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    root = tmp_path_factory.mktemp("pki")
    init_pki(root, nodes=["health"])
    return PkiLayout(root)


@pytest.fixture
async def rig(pki: PkiLayout, policy_dir: Path) -> AsyncIterator[Rig]:
    node = FaultyNode(lambda request: agency_pb.LookupResponse(agency="health"))
    server = grpc.aio.server()
    agency_grpc.add_AgencyServiceServicer_to_server(node, server)
    port = server.add_secure_port("127.0.0.1:0", node_server_credentials(pki, "health"))
    await server.start()
    transport = GrpcAgencyTransport.connect({"health": f"127.0.0.1:{port}"}, gateway_client_credentials(pki),
                                            trust_domain=DEFAULT_TRUST_DOMAIN)
    sink = RecordingAuditSink()
    service = QueryService(
        policy=PolicyHolder.from_directory(policy_dir, clock=FixedClock()), transport=transport, audit=sink,
        tokeniser=SubjectTokeniser(Keyring.generate("k1")), sealer=IdentifierSealer(Keyring.generate("k1")),
        pseudonym_keys=Keyring.generate("k1"), clock=FixedClock(),
    )
    try:
        yield Rig(node, service, sink)
    finally:
        await transport.close()
        await server.stop(0)


def kindless(category: str) -> common_pb.Record:
    return common_pb.Record(agency="health", record_id=PROTECTED_ID, record_type="attendance", category=category,
                            summary="Attended clinic.")


def one_person(*records: common_pb.Record, known: bool = False) -> agency_pb.LookupResponse:
    return agency_pb.LookupResponse(agency="health", matches=[agency_pb.PersonMatch(
        person_ref="H1", method=agency_pb.MATCH_METHOD_NHS_NUMBER, records=records,
        known_in_existence_categories=known,
    )])


async def test_an_unrequested_malformed_record_is_dropped_before_it_is_read(rig: Rig) -> None:
    """A kindless sexual-health record nobody asked for does not turn health's answer into REJECTED."""
    rig.node.answer = lambda request: one_person(kindless("health.sexual_health"), known=True)
    with structlog.testing.capture_logs() as captured:
        result = await rig.service.query(SOCIAL_WORKER, S47, timeout=5)
    (asked,) = rig.node.asked
    assert "health.sexual_health" not in asked.categories
    health = next(o for o in result.answers if o.agency == "health")
    # Whether "known" shows depends on the policy's existence grants; what matters is that it is not REJECTED.
    assert health.status is not AnswerStatus.REJECTED
    assert health.records == ()
    assert PROTECTED_ID not in repr((result, rig.sink.events, captured))


def far_future(category: str) -> common_pb.Record:
    record = common_pb.Record(agency="health", record_id=PROTECTED_ID, record_type="attendance", category=category,
                              kind=common_pb.RECORD_KIND_EVENT, summary="Attended clinic.")
    record.occurred_at.seconds = 10**12
    return record


@pytest.mark.parametrize(("malformed", "reason"), [(kindless, "a record has no record kind"),
                                                   (far_future, "a record has an impossible timestamp")],
                         ids=["no kind", "impossible timestamp"])
async def test_a_malformed_requested_record_is_rejected_without_quoting_it(
    rig: Rig, malformed: Callable[[str], common_pb.Record], reason: str
) -> None:
    """A malformed record in an asked category makes health REJECTED with a detail that quotes nothing of it."""
    def answer(request: agency_pb.LookupRequest) -> agency_pb.LookupResponse:
        assert request.categories, "the social worker may see some health content under s47"
        return one_person(malformed(request.categories[0]))

    rig.node.answer = answer
    with structlog.testing.capture_logs() as captured:
        result = await rig.service.query(SOCIAL_WORKER, S47, timeout=5)
    health = next(o for o in result.answers if o.agency == "health")
    assert health.status is AnswerStatus.REJECTED
    assert health.records == ()
    (event,) = [e for e in rig.sink.events if e.agency == "health"]
    assert (event.kind, event.status) == (AuditKind.DISCLOSURE, "REJECTED")
    assert PROTECTED_ID not in repr((result, rig.sink.events, captured))
    assert str(10**12) not in health.detail + event.reason
    assert any(e.get("reason") == reason for e in captured)
