"""Serve one or more simulated agency nodes from one process, with mTLS and jittered latency.

`python -m bench.node_host --pki DIR --agencies police,health --latency 0.003 --jitter 0.001` prints one JSON
line mapping each node name to its address, then serves until stdin closes or SIGTERM. A node name may
be a borough agency of the bench's many-borough partnership (`police_b07`, see `bench.boroughs`): it then
serves the home agency's records under its own agency and category names, with its own certificate, so
many nodes of one agency can share a process. With `--boroughs N` the nodes are those of the pan-London
partnership (`agency_stubs.london`: `csc_camden`, `police`), each serving its own borough's records. With
`--locator HOST:PORT` every node enrols its people in that gateway's locator with its own certificate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import random
import signal
import sys
from collections.abc import Collection
from pathlib import Path

import grpc
import grpc.aio

from agency_stubs.dataset import AgencyDataset
from agency_stubs.holding import policy_dataset, seeded_records
from agency_stubs.locator_enrolment import keep_enrolled
from agency_stubs.london import as_agency, build_london
from agency_stubs.node import AgencyNodeServicer, RunningNode
from agency_stubs.world import DEFAULT_SEED, build_world
from bench.boroughs import home_agency
from gateway.api.tls import server_credentials
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import agency_service_pb2_grpc as agency_grpc
from gateway.logs import configure_logging
from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout
from gateway.policy.snapshot import PolicySnapshot, load_snapshot

POLICY_DIR = Path(__file__).resolve().parents[1] / "policies"

GATEWAY_IDENTITY = f"spiffe://{DEFAULT_TRUST_DOMAIN}/gateway"


def borough_dataset(dataset: AgencyDataset, name: str) -> AgencyDataset:
    """`dataset` as the node of borough agency `name` holds it: agency and category names moved there."""
    return as_agency(dataset, name, dataset.area)


class JitteredNode(AgencyNodeServicer):
    """An agency node whose answer delay is drawn afresh for every lookup: latency ± jitter, uniformly."""

    def __init__(self, dataset: AgencyDataset, *, allowed_callers: Collection[str], latency: float,
                 jitter: float) -> None:
        self._jitter = jitter
        self._random = random.Random(dataset.agency)
        super().__init__(dataset, allowed_callers=allowed_callers, latency=latency)

    @property
    def latency(self) -> float:
        if self._base <= 0:
            return 0.0
        return max(0.0, self._base + self._random.uniform(-self._jitter, self._jitter))

    @latency.setter
    def latency(self, value: float) -> None:
        self._base = value


async def _serve(args: argparse.Namespace) -> None:
    pki = PkiLayout(args.pki)
    world = (build_london(DEFAULT_SEED, args.boroughs, args.people // args.boroughs) if args.boroughs
             else build_world(DEFAULT_SEED, args.people))
    servers: list[grpc.aio.Server] = []
    enrolling: list[asyncio.Task[None]] = []
    addresses: dict[str, str] = {}
    seeded: PolicySnapshot | None = None
    for name in args.agencies.split(","):
        if name in world.datasets:  # a pan-London partnership's agency (`csc_camden`), or one of the six
            dataset = world.datasets[name]
        elif home_agency(name) in world.datasets:
            dataset = borough_dataset(world.dataset(home_agency(name)), name)
        else:  # an agency the synthetic world does not generate (adult social care): its seeded records file,
            # moved to the borough for a bench borough agency (`asc_b01`)
            seeded = seeded or load_snapshot(POLICY_DIR)
            home = home_agency(name)
            dataset = borough_dataset(policy_dataset(seeded, home, seeded_records(home)), name)
        servicer = JitteredNode(dataset, allowed_callers={GATEWAY_IDENTITY}, latency=args.latency,
                                jitter=args.jitter)
        if args.calls == "batch":  # a node from before LookupStream: a call of its own per batch
            servicer.features = tuple(f for f in servicer.features if f != agency_pb.FEATURE_LOOKUP_STREAM)
        server = grpc.aio.server()
        agency_grpc.add_AgencyServiceServicer_to_server(servicer, server)
        port = server.add_secure_port("127.0.0.1:0", server_credentials(pki.ca_cert, *pki.node(name)))
        await server.start()
        servers.append(server)
        addresses[name] = f"127.0.0.1:{port}"
        if args.locator:  # enrol in the gateway's locator once it answers, and stay enrolled
            node = RunningNode(name, "127.0.0.1", port, server, servicer)
            enrolling.append(asyncio.create_task(keep_enrolled(node, args.locator, pki.root)))
    print(json.dumps(addresses), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)  # the harness closing our stdin means "stop"
    await stop.wait()
    for task in enrolling:
        task.cancel()
    await asyncio.gather(*enrolling, return_exceptions=True)
    await asyncio.gather(*(s.stop(0) for s in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--agencies", required=True, help="comma-separated node names, e.g. police,health@b02")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--jitter", type=float, default=0.0, help="± seconds around --latency")
    parser.add_argument("--calls", choices=["stream", "batch"], default="stream",
                        help="offer LookupStream (stream), or only LookupBatch calls (batch)")
    parser.add_argument("--people", type=int, default=2000, help="people in the world (all boroughs together)")
    parser.add_argument("--locator", metavar="GATEWAY", default=None,
                        help="enrol every node in the locator of the gateway at GATEWAY (host:port), retrying until "
                             "it answers")
    parser.add_argument("--boroughs", type=int, default=0,
                        help="serve the pan-London world of the first N boroughs (agency_stubs.london): node "
                             "names are its agencies, e.g. csc_camden, police")
    args = parser.parse_args()
    configure_logging("warning", io.StringIO())  # per-lookup logging would measure the console, not the node
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
