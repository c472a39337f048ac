"""Run one simulated agency node until interrupted: `python -m agency_stubs --agency police --port 50061`.

The agency must be one the policy declares as holding records. The six agencies of the synthetic world
answer from generated records; any other serves the people in `--records FILE`, else the seeded records
shipped for it (adult social care has some), else nobody.
"""

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
import yaml

from agency_stubs.catalogue import SIMULATED_AGENCIES
from agency_stubs.dataset import AgencyDataset
from agency_stubs.holding import policy_dataset, seeded_records
from agency_stubs.node import serve_node
from agency_stubs.world import DEFAULT_SEED, build_world
from gateway.errors import PolicyError
from gateway.policy.snapshot import load_snapshot

GATEWAY_IDENTITY = "spiffe://mash.local/gateway"


def node_credentials(tls_dir: Path, agency: str) -> grpc.ServerCredentials:
    """Mutual-TLS server credentials from a directory laid out by `mash-gateway pki init`."""
    ca = (tls_dir / "ca.pem").read_bytes()
    cert = (tls_dir / "nodes" / f"{agency}.pem").read_bytes()
    key = (tls_dir / "nodes" / f"{agency}.key").read_bytes()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agency_stubs", description=__doc__)
    p.add_argument("--agency", required=True, help="an agency the policy declares with holds_records: true")
    p.add_argument("--policy-dir", type=Path, default=Path("policies"),
                   help="policy directory declaring the agency and its record categories (default: policies)")
    p.add_argument("--records", type=Path, default=None, metavar="FILE",
                   help="YAML file of the people and records to serve (docs/agency-nodes.md); "
                        "default: generated records for the six simulated agencies, the seeded file shipped "
                        "for adult social care (asc), nobody for any other")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--people", type=int, default=2000)
    p.add_argument("--tls-dir", type=Path, help="PKI directory from `mash-gateway pki init`; enables mTLS")
    p.add_argument("--allow", action="append", default=None, metavar="SPIFFE_ID",
                   help=f"caller identity allowed to query (repeatable; with TLS defaults to {GATEWAY_IDENTITY})")
    p.add_argument("--latency", type=float, default=0.0, help="seconds to wait before answering a lookup")
    p.add_argument("--locator", metavar="GATEWAY", default=None,
                   help="enrol this node's people in the gateway's locator at GATEWAY (host:port; needs --tls-dir)")
    return p


def _dataset(args: argparse.Namespace) -> AgencyDataset:
    """The agency's holding; ValueError saying why it cannot be served."""
    try:
        snapshot = load_snapshot(args.policy_dir)
    except PolicyError as exc:
        raise ValueError(f"cannot load the policy in {args.policy_dir}: {exc}") from exc
    agency = snapshot.agencies.get(args.agency)
    if agency is None:
        raise ValueError(f"the policy in {args.policy_dir} declares no agency {args.agency!r}")
    if not agency.holds_records:
        raise ValueError(f"{args.agency!r} holds no records (holds_records: false), so it has no node")
    if args.records is None and args.agency in SIMULATED_AGENCIES:
        return build_world(args.seed, args.people).dataset(args.agency)
    try:
        return policy_dataset(snapshot, args.agency, args.records or seeded_records(args.agency))
    except OSError as exc:
        raise ValueError(f"cannot read {args.records}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{args.records} is not valid YAML") from exc


async def _run(args: argparse.Namespace, dataset: AgencyDataset) -> None:
    credentials = node_credentials(args.tls_dir, args.agency) if args.tls_dir else None
    allowed = args.allow if args.allow is not None else ([GATEWAY_IDENTITY] if credentials else None)
    node = await serve_node(dataset, credentials=credentials, host=args.host, port=args.port,
                            allowed_callers=allowed, latency=args.latency)
    structlog.get_logger("agency_stubs").info("node_started", agency=node.agency, address=node.address,
                                              tls=credentials is not None)
    print(f"{node.agency} node listening on {node.address}", flush=True)
    enrolling = None
    if args.locator and args.tls_dir:
        from agency_stubs.locator_enrolment import keep_enrolled

        enrolling = asyncio.ensure_future(keep_enrolled(node, args.locator, args.tls_dir))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if enrolling is not None:
        enrolling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await enrolling
    await node.stop(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["london"]:  # `python -m agency_stubs london ...`: write a pan-London policy directory
        from agency_stubs.london_policy import main as london_main

        return london_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.tls_dir is not None and not (args.tls_dir / "ca.pem").is_file():
        print(f"no ca.pem in the TLS directory {args.tls_dir}", file=sys.stderr)
        return 2
    try:
        dataset = _dataset(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_run(args, dataset))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
