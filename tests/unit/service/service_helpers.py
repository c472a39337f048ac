"""Building a query service with the shipped policy, a fake transport, a recording sink and a fixed clock."""

from __future__ import annotations

from collections.abc import Callable

from gateway.audit import IdentifierSealer
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser
from gateway.policy import PolicyHolder
from gateway.service.ports import LookupCommand, LookupResult
from gateway.service.query import QueryService
from gateway.testing import FakeAgencyTransport, FixedClock, RecordingAuditSink

Handler = Callable[[str, LookupCommand], LookupResult]


def make_service(holder: PolicyHolder, keys: dict[str, Keyring], handler: Handler,
                 sink: RecordingAuditSink | None = None) -> tuple[QueryService, FakeAgencyTransport,
                                                                   RecordingAuditSink]:
    transport = FakeAgencyTransport(handler)
    sink = sink or RecordingAuditSink()
    service = QueryService(
        policy=holder, transport=transport, audit=sink, tokeniser=SubjectTokeniser(keys["token"]),
        sealer=IdentifierSealer(keys["sealing"]), pseudonym_keys=keys["pseudonym"], clock=FixedClock(),
    )
    return service, transport, sink
