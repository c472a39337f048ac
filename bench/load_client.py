"""Closed-loop load from a process of its own: `concurrency` callers each send a hub query, wait for the
answer and send the next, for `seconds`; prints one JSON line with counts and latency percentiles.

`python -m bench.load_client --pki DIR --target 127.0.0.1:PORT --concurrency 16 --seconds 5`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from agency_stubs.world import DEFAULT_SEED, build_world
from gateway.api.tls import client_credentials
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2_grpc as hub_grpc
from gateway.pki import PkiLayout
from gateway.pki.authority import gateway_server_name

METADATA = (("x-mash-user", "bench"), ("x-mash-role", "mash_researcher_police"))


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))]


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    people = list(build_world(DEFAULT_SEED, args.people).people)[:500]
    requests = [hub_pb.QueryRequest(subject=common_pb.SubjectIdentifiers(nhs_number=p.nhs_number),
                                    purpose="safeguarding_screening", legal_basis="dpa_2018_sch1_para18",
                                    agreement="mash-isa-2026", case_reference="BENCH-1") for p in people]
    pki = PkiLayout(args.pki)
    # Each channel its own connection (a local subchannel pool), so a server of several processes on one
    # port (SO_REUSEPORT) sees them spread over its processes, as it would see many clients.
    channels = [grpc.aio.secure_channel(args.target, client_credentials(pki, "police", "case-system"),
                                        options=[("grpc.ssl_target_name_override", gateway_server_name()),
                                                 ("grpc.use_local_subchannel_pool", 1)])
                for _ in range(args.channels)]
    stubs = [hub_grpc.HubServiceStub(channel) for channel in channels]
    await asyncio.gather(*(asyncio.wait_for(channel.channel_ready(), 30) for channel in channels))
    warmup = max(args.warmup, len(stubs))
    for k, request in enumerate(requests[:warmup]):
        await stubs[k % len(stubs)].Query(request, metadata=METADATA, timeout=args.timeout)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    missing_receipts = 0

    async def caller(offset: int, stop_at: float) -> None:
        stub = stubs[(offset // 37) % len(stubs)]
        i = offset
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            nonlocal missing_receipts
            try:
                response = await stub.Query(requests[i % len(requests)], metadata=METADATA, timeout=args.timeout)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
            else:
                latencies.append(time.perf_counter() - started)
                missing_receipts += sum(not a.HasField("receipt") for a in response.answers)
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(n * 37, started + args.seconds) for n in range(args.concurrency)))
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    latencies.sort()
    return {
        "queries": len(latencies), "warmup": warmup, "errors": errors, "seconds": round(elapsed, 3),
        "answers_without_receipt": missing_receipts,
        "queries_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=20, help="queries sent before measuring")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=1, help="connections the callers share, round robin")
    print(json.dumps(asyncio.run(_run(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
