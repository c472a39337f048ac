"""Run one simulated agency node until interrupted: `python -m agency_stubs --agency police --port 50061`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
import structlog

from agency_stubs.node import serve_node
from agency_stubs.world import DEFAULT_SEED, build_world
from gateway.domain import AGENCIES

GATEWAY_IDENTITY = "spiffe://mash.local/gateway"


def node_credentials(tls_dir: Path, agency: str) -> grpc.ServerCredentials:
    """Mutual-TLS server credentials from a directory laid out by `mash-gateway pki init`."""
    ca = (tls_dir / "ca.pem").read_bytes()
    cert = (tls_dir / "nodes" / f"{agency}.pem").read_bytes()
    key = (tls_dir / "nodes" / f"{agency}.key").read_bytes()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agency_stubs", description=__doc__)
    p.add_argument("--agency", required=True, choices=AGENCIES)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--people", type=int, default=2000)
    p.add_argument("--tls-dir", type=Path, help="PKI directory from `mash-gateway pki init`; enables mTLS")
    p.add_argument("--allow", action="append", default=None, metavar="SPIFFE_ID",
                   help=f"caller identity allowed to query (repeatable; with TLS defaults to {GATEWAY_IDENTITY})")
    p.add_argument("--latency", type=float, default=0.0, help="seconds to wait before answering a lookup")
    return p


async def _run(args: argparse.Namespace) -> None:
    dataset = build_world(args.seed, args.people).dataset(args.agency)
    credentials = node_credentials(args.tls_dir, args.agency) if args.tls_dir else None
    allowed = args.allow if args.allow is not None else ([GATEWAY_IDENTITY] if credentials else None)
    node = await serve_node(dataset, credentials=credentials, host=args.host, port=args.port,
                            allowed_callers=allowed, latency=args.latency)
    structlog.get_logger("agency_stubs").info("node_started", agency=node.agency, address=node.address,
                                              tls=credentials is not None)
    print(f"{node.agency} node listening on {node.address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await node.stop(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.tls_dir is not None and not (args.tls_dir / "ca.pem").is_file():
        print(f"no ca.pem in the TLS directory {args.tls_dir}", file=sys.stderr)
        return 2
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
