"""The baseline: a bare grpc.aio broker that forwards `HubService.Query` to every agency node and returns
the records unredacted, with no policy, no linkage tokens and no audit.

`python -m bench.bare_broker --pki DIR --listen 127.0.0.1:PORT --endpoints '{"police": "127.0.0.1:7001"}'`.
It uses the gateway's own certificates on both sides, so the mTLS work is the same as the gateway's; it is
a yardstick for benchmarks, never something to deploy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from gateway.api.tls import channel_credentials, server_credentials
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import agency_service_pb2_grpc as agency_grpc
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2_grpc as hub_grpc
from gateway.pki import PkiLayout
from gateway.pki.authority import node_server_name

_FULL = hub_pb.FIELD_DISCLOSURE_FULL


def _answer(node: str, response: agency_pb.LookupResponse) -> hub_pb.AgencyAnswer:
    records = [
        hub_pb.DisclosedRecord(
            record_id=r.record_id, record_type=r.record_type, category=r.category, kind=r.kind,
            occurred_at=r.occurred_at.ToJsonString(), summary=r.summary,
            fields=[hub_pb.DisclosedField(name=f.name, category=f.category, value=f.value, disclosure=_FULL)
                    for f in r.fields],
        )
        for m in response.matches for r in m.records
    ]
    status = hub_pb.ANSWER_STATUS_MATCH if response.matches else hub_pb.ANSWER_STATUS_NO_MATCH
    return hub_pb.AgencyAnswer(agency=node, status=status, level=common_pb.DISCLOSURE_LEVEL_FULL, records=records,
                               contact=response.mash_contact, categories=sorted({r.category for r in records}))


class BareBroker(hub_grpc.HubServiceServicer):
    """Fans every query out to all nodes at once and passes their answers through."""

    def __init__(self, stubs: dict[str, agency_grpc.AgencyServiceAsyncStub], categories: dict[str, list[str]]):
        self._stubs = stubs
        self._categories = categories

    async def _ask(self, node: str, request: hub_pb.QueryRequest, timeout: float | None) -> hub_pb.AgencyAnswer:
        lookup = agency_pb.LookupRequest(request_id=request.request_id, subject=request.subject,
                                         categories=self._categories[node], purpose=request.purpose,
                                         legal_basis=request.legal_basis)
        try:
            response = await self._stubs[node].Lookup(lookup, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            status = (hub_pb.ANSWER_STATUS_TIMED_OUT if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                      else hub_pb.ANSWER_STATUS_UNAVAILABLE)
            return hub_pb.AgencyAnswer(agency=node, status=status)
        return _answer(node, response)

    async def Query(self, request: hub_pb.QueryRequest, context: Any) -> hub_pb.QueryResponse:
        if not request.request_id:
            request.request_id = str(uuid.uuid4())
        timeout = context.time_remaining()
        answers = await asyncio.gather(*(self._ask(node, request, timeout) for node in self._stubs))
        return hub_pb.QueryResponse(request_id=request.request_id, answers=answers)

    async def StreamQuery(self, request: hub_pb.StreamQueryRequest,
                          context: Any) -> AsyncIterator[hub_pb.StreamQueryResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the bare broker answers Query only")
        yield hub_pb.StreamQueryResponse()  # pragma: no cover - abort raises; this makes it a generator

    async def ScreenReferral(self, request: hub_pb.ScreenReferralRequest, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the bare broker answers Query only")


async def _serve(args: argparse.Namespace) -> None:
    pki = PkiLayout(args.pki)
    endpoints: dict[str, str] = json.loads(args.endpoints)
    credentials = channel_credentials(pki.ca_cert, *pki.gateway())
    stubs = {}
    channels = []
    for node, address in endpoints.items():
        agency = node.split("@", 1)[0]
        channel = grpc.aio.secure_channel(address, credentials, options=[
            ("grpc.ssl_target_name_override", node_server_name(agency)),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ])
        channels.append(channel)
        stubs[node] = agency_grpc.AgencyServiceStub(channel)
    described = await asyncio.gather(*(stub.Describe(agency_pb.DescribeRequest(), timeout=30)
                                       for stub in stubs.values()))
    categories = {node: [c.category for c in d.record_categories] for node, d in zip(stubs, described, strict=True)}
    server = grpc.aio.server()
    hub_grpc.add_HubServiceServicer_to_server(BareBroker(stubs, categories), server)
    if server.add_secure_port(args.listen, server_credentials(pki.ca_cert, *pki.gateway())) == 0:
        raise OSError(f"could not listen on {args.listen}")
    await server.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)
    await stop.wait()
    await server.stop(0)
    for channel in channels:
        await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--endpoints", required=True, help="JSON object: node name -> address")
    parser.add_argument("--event-loop", choices=["asyncio", "uvloop"], default="asyncio",
                        help="asyncio's own loop (the bare broker of the issue), or uvloop as the gateway uses")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        if args.event_loop == "uvloop":
            import uvloop

            uvloop.run(_serve(args))
        else:
            asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
