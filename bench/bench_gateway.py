"""End-to-end benchmark: hub queries through the real gateway (mTLS, six agency nodes, SQLite audit log).

Run with `python -m bench.bench_gateway`; bounded in time, prints a table and then one JSON line. Every
query is validated, decided, fanned out to six nodes, redacted and durably audited (six entries) before
its answer returns, so this measures the whole path a hub query takes on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agency_stubs import build_world
from agency_stubs.cast import KAI_MERCER
from gateway.demo.partnership import HubClient, Partnership
from gateway.logs import configure_logging

ROOT = Path(__file__).resolve().parents[1]
REQUEST: dict[str, Any] = {"purpose": "safeguarding_screening", "legal_basis": "dpa_2018_sch1_para18",
           "agreement": "mash-isa-2026", "case_reference": "BENCH-1"}


async def _worker(client: HubClient, subjects: list[dict[str, str]], stop_at: float, latencies: list[float],
                  offset: int) -> None:
    i = offset
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        await client.query(subject=subjects[i % len(subjects)], timeout=10, **REQUEST)
        latencies.append(time.perf_counter() - started)
        i += 1


async def run(seconds: float, concurrency: int) -> dict[str, Any]:
    world = build_world()
    subjects = [{"nhs_number": p.nhs_number} for p in list(world.people)[:500]]
    subjects.append({"nhs_number": KAI_MERCER.nhs_number})
    with tempfile.TemporaryDirectory() as tmp:
        async with Partnership(Path(tmp) / "state", ROOT / "policies", world=world) as partnership:
            client = partnership.client("police", "case-system", user="bench", role="mash_researcher_police")
            for _ in range(20):  # warm up channels and caches
                await client.query(subject=subjects[0], **REQUEST)
            latencies: list[float] = []
            started = time.perf_counter()
            await asyncio.gather(*(_worker(client, subjects, started + seconds, latencies, n * 37)
                                   for n in range(concurrency)))
            elapsed = time.perf_counter() - started
            assert partnership.gateway is not None
            entries = await partnership.gateway.deps.audit.store.size()
    latencies.sort()
    return {
        "benchmark": "gateway_query",
        "concurrency": concurrency,
        "queries": len(latencies),
        "queries_per_s": round(len(latencies) / elapsed, 1),
        "audit_entries_per_s": round(len(latencies) * 6 / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "audit_entries": entries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    configure_logging("warning", io.StringIO())  # measure the gateway, not the console renderer
    results = [asyncio.run(run(args.seconds, c)) for c in args.concurrency]
    table = Table(title="Hub queries through the gateway (6 agencies, mTLS, SQLite audit)")
    for column in ("concurrent callers", "queries", "queries/s", "audit entries/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(str(r["concurrency"]), str(r["queries"]), str(r["queries_per_s"]),
                      str(r["audit_entries_per_s"]), str(r["p50_ms"]), str(r["p99_ms"]))
    Console().print(table)
    print(json.dumps({"gateway": results}))


if __name__ == "__main__":
    main()
