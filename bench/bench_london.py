"""Pan-London benchmark: a generated 32-borough partnership (132 agency nodes, each its own endpoint and
certificate), hub queries with the locator against the same queries broadcast to every node, in one run.

Run with `python -m bench.bench_london`; it prints a table and then one JSON line.

The policy comes from `agency_stubs.london_policy.generate_partnership` and the records from
`agency_stubs.london.build_london` (`--people-per-borough` people in each of `--boroughs` boroughs). The
nodes and the gateway share this process, as in the locator bench: the broadcast's cost is the gateway
and 132 nodes answering every query on the same cores, which is what the locator saves. A Camden MASH
manager asks about generated people by NHS number under the pan-London agreement (s47 enquiry), so every
borough's agencies are in scope. Modes: broadcast (`locator = false`); the locator with skipped answers
held (the default, docs/locator.md#routing); the locator without holding. Each mode runs at one caller and
at `--concurrency` callers for `--seconds` each, and counts the lookups all nodes received.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agency_stubs.london import LondonWorld, build_london
from agency_stubs.london_policy import PAN_LONDON_AGREEMENT, generate_partnership
from bench.bench_locator import _count_lookups, _pct, _run_queries
from gateway.demo.partnership import Partnership
from gateway.logs import configure_logging

REQUEST: dict[str, Any] = {"purpose": "s47_enquiry", "legal_basis": "children_act_1989_s47",
                           "agreement": PAN_LONDON_AGREEMENT, "case_reference": "BENCH-LDN-1"}
MODES = ("broadcast", "locator", "locator-no-hold")


async def bench_mode(mode: str, policy_dir: Path, world: LondonWorld, seconds: float,
                     concurrency: int) -> dict[str, Any]:
    subjects = [{"nhs_number": p.nhs_number} for p in list(world.people)[::7][:500]]
    settings: dict[str, Any] = {"locator": mode != "broadcast", "locator_hold_skipped": mode == "locator"}
    out: dict[str, Any] = {"mode": mode}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        async with Partnership(Path(tmp) / "state", policy_dir, world=world, settings=settings) as partnership:
            out["nodes"] = len(partnership.nodes)
            out["start_s"] = round(time.perf_counter() - started, 1)
            if mode != "broadcast":
                enrolling = time.perf_counter()
                await partnership.enrol_in_locator()
                out["enrol_all_s"] = round(time.perf_counter() - enrolling, 1)
            client = partnership.client("hub_camden", "mash-console", user="bench", role="mash_manager")
            for subject in subjects[:20]:  # warm up channels, caches and the hold samples
                await client.query(subject=subject, timeout=30, **REQUEST)
            counted = [0]
            for node in partnership.nodes.values():
                _count_lookups(node.servicer, counted)
            for callers in (1, concurrency):
                counted[0] = 0
                latencies, elapsed = await _run_queries(client, subjects, seconds, callers, REQUEST)
                out[f"c{callers}"] = {
                    "queries": len(latencies), "queries_per_s": round(len(latencies) / elapsed, 1),
                    "p50_ms": round(statistics.median(latencies) * 1000, 2),
                    "p99_ms": round(_pct(latencies, 0.99) * 1000, 2),
                    "node_lookups_per_query": round(counted[0] / max(1, len(latencies)), 2),
                }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boroughs", type=int, default=32)
    parser.add_argument("--people-per-borough", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    configure_logging("warning", io.StringIO())
    result: dict[str, Any] = {"benchmark": "london", "boroughs": args.boroughs, "load": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        generated = generate_partnership(Path(tmp) / "policies", args.boroughs)
        result["generate_s"] = round(time.perf_counter() - started, 1)
        world = build_london(boroughs=args.boroughs, people_per_borough=args.people_per_borough)
        result["people"] = len(world.people)
        result["modes"] = [asyncio.run(bench_mode(mode, generated.policy_dir, world, args.seconds, args.concurrency))
                           for mode in MODES]
    by_mode = {m["mode"]: m for m in result["modes"]}
    for key in ("c1", f"c{args.concurrency}"):
        base = by_mode["broadcast"][key]
        for mode in ("locator", "locator-no-hold"):
            row = by_mode[mode][key]
            row["throughput_ratio"] = round(row["queries_per_s"] / max(base["queries_per_s"], 1e-9), 2)
            row["p50_ratio"] = round(base["p50_ms"] / max(row["p50_ms"], 1e-9), 2)
    table = Table(title=f"Pan-London queries: broadcast vs locator ({args.boroughs} boroughs, "
                        f"{by_mode['broadcast']['nodes']} nodes, mTLS, {result['people']:,} people)")
    for column in ("mode", "callers", "queries/s", "× broadcast", "p50 ms", "p99 ms", "node lookups/query"):
        table.add_column(column)
    for row in result["modes"]:
        for key in ("c1", f"c{args.concurrency}"):
            r = row[key]
            table.add_row(row["mode"], key[1:], str(r["queries_per_s"]), str(r.get("throughput_ratio", "1.0")),
                          str(r["p50_ms"]), str(r["p99_ms"]), str(r["node_lookups_per_query"]))
    Console().print(table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
