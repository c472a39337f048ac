"""The running gateway coalesces lookups under load: its gRPC transport sees the queries in progress.

The transport waits for company only while other requests are in progress, and learns how many from an
occupancy counter the query service keeps. The locator's timing wrapper and the metrics wrapper sit between
the two; if the counter is not handed over, the transport sees an idle gateway for ever and every lookup
leaves alone (about four times the calls to each node at 16 callers).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hub_helpers import SCREENING, subject

from agency_stubs import World
from agency_stubs.cast import KAI_MERCER
from agency_stubs.node import AgencyNodeServicer
from gateway.api.agency_client import GrpcAgencyTransport
from gateway.demo.partnership import Partnership
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb


@pytest.mark.parametrize("metrics_listen", ["", "127.0.0.1:0"], ids=["plain", "with-metrics"])
async def test_the_transport_counts_the_queries_the_gateway_is_answering(
    tmp_path: Path, policy_dir: Path, shared_world: World, monkeypatch: pytest.MonkeyPatch, metrics_listen: str,
) -> None:
    """While the police node answers, the gateway's gRPC transport counts every query still in progress —
    with the locator on (the default) and with metrics on, both of which wrap the transport."""
    seen: list[int] = []
    transports: list[GrpcAgencyTransport] = []
    lookup, batch = AgencyNodeServicer.Lookup, AgencyNodeServicer._answer_batch

    def note(servicer: AgencyNodeServicer) -> None:
        if servicer.dataset.agency == "police":
            seen.append(transports[0].occupancy.active)

    async def counting_lookup(self: AgencyNodeServicer, request: agency_pb.LookupRequest, context: Any) -> Any:
        note(self)
        return await lookup(self, request, context)

    def counting_batch(self: AgencyNodeServicer, request: agency_pb.LookupBatchRequest) -> Any:
        note(self)  # a LookupBatch call, or a batch on LookupStream
        return batch(self, request)

    monkeypatch.setattr(AgencyNodeServicer, "Lookup", counting_lookup)
    monkeypatch.setattr(AgencyNodeServicer, "_answer_batch", counting_batch)
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world, metrics_listen=metrics_listen,
                           node_latency={"police": 0.3}) as running:
        assert running.gateway is not None
        transport = running.gateway.deps.transport
        assert isinstance(transport, GrpcAgencyTransport)
        assert running.gateway.deps.locator is not None, "the locator wrapper is part of what this checks"
        transports.append(transport)
        client = running.client("police", "case-system", user="researcher.police", role="mash_researcher_police")
        answers = await asyncio.gather(*(client.query(request_id=f"req-{n}", subject=subject(KAI_MERCER),
                                                      **SCREENING) for n in range(4)))
    assert all(a.answers for a in answers)
    assert seen, "the police node was never asked"
    # The four queries were all in progress while the police node was asked; a transport that is not told
    # sees 0 and never lingers for company.
    assert max(seen) == 4, f"the transport saw {seen} queries in progress while the police node answered"
