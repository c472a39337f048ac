"""Serve one or more simulated agency nodes from one process, with mTLS and jittered latency.

`python -m bench.node_host --pki DIR --agencies police,health --latency 0.003 --jitter 0.001` prints one JSON
line mapping each node name to its address, then serves until stdin closes or SIGTERM. A node name may
carry a borough suffix (`police@b07`) so that many nodes of one agency can share a process.
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
from agency_stubs.node import AgencyNodeServicer
from agency_stubs.world import DEFAULT_SEED, build_world
from gateway.api.tls import server_credentials
from gateway.generated.mash.gateway.v1 import agency_service_pb2_grpc as agency_grpc
from gateway.logs import configure_logging
from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout

GATEWAY_IDENTITY = f"spiffe://{DEFAULT_TRUST_DOMAIN}/gateway"


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
    world = build_world(DEFAULT_SEED, args.people)
    servers: list[grpc.aio.Server] = []
    addresses: dict[str, str] = {}
    for name in args.agencies.split(","):
        agency = name.split("@", 1)[0]
        servicer = JitteredNode(world.dataset(agency), allowed_callers={GATEWAY_IDENTITY}, latency=args.latency,
                                jitter=args.jitter)
        server = grpc.aio.server()
        agency_grpc.add_AgencyServiceServicer_to_server(servicer, server)
        port = server.add_secure_port("127.0.0.1:0", server_credentials(pki.ca_cert, *pki.node(agency)))
        await server.start()
        servers.append(server)
        addresses[name] = f"127.0.0.1:{port}"
    print(json.dumps(addresses), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)  # the harness closing our stdin means "stop"
    await stop.wait()
    await asyncio.gather(*(s.stop(0) for s in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--agencies", required=True, help="comma-separated node names, e.g. police,health@b02")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--jitter", type=float, default=0.0, help="± seconds around --latency")
    parser.add_argument("--people", type=int, default=2000)
    args = parser.parse_args()
    configure_logging("warning", io.StringIO())  # per-lookup logging would measure the console, not the node
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
