"""Locator benchmark: enrolment throughput, index lookups as the index grows, and hub queries routed by
the locator against the same queries broadcast to every node.

Run with `python -m bench.bench_locator`; it prints tables and then one JSON line.

- Enrolment: one node enrols `--people` synthetic people (two inputs each: NHS number, name and date of
  birth) through the real LocatorService over mTLS: blind, Evaluate in batches of 1,000, finalise, Enrol.
- Index lookups: a SQLite index filled with random 16-byte tokens across six nodes, growing to
  `--max-tokens` (default 10 million), and at each size `--lookups` lookups of two tokens (a subject's
  NHS number and name-and-birth-date tokens), timed through the store's async API (which includes the hop
  to a worker thread) and as the bare SQL on its own connection (the index's own cost). Target: p99 ≤ 1 ms.
- Queries: six nodes over a 2,000-person world, every node enrolled, against the same partnership with
  the locator off; p50, p99 and throughput at one caller and at `--concurrency` callers, and the lookups
  the nodes received. With `locator_hold_skipped` (the default) a skipped agency's answer is held as long
  as a recent real lookup there took, so latency is close to broadcasting; the win is in node work and
  in what nodes learn. The run without holding shows the latency the locator could give.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agency_stubs import build_world
from agency_stubs.dataset import AgencyDataset, PersonEntry
from agency_stubs.locator_enrolment import LocatorEnrolment, enrol_running_node
from gateway.api.tls import channel_credentials
from gateway.demo.partnership import HubClient, Partnership
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.linkage import nhs_check_digit
from gateway.locator.sqlite_store import SqliteLocatorStore
from gateway.locator.store import LocatorStore, open_locator_store
from gateway.logs import configure_logging

ROOT = Path(__file__).resolve().parents[1]
REQUEST: dict[str, Any] = {"purpose": "safeguarding_screening", "legal_basis": "dpa_2018_sch1_para18",
                           "agreement": "mash-isa-2026", "case_reference": "BENCH-1"}
NODES = ("police", "health", "csc", "education", "housing", "probation")
NOW = datetime(2026, 11, 29, tzinfo=UTC)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _people(n: int) -> list[PersonEntry]:
    rng = random.Random(11)
    out = []
    for i in range(n):
        while True:
            nine = f"{rng.randrange(100_000_000, 999_999_999):09d}"
            check = nhs_check_digit(nine)
            if check is not None:
                break
        out.append(PersonEntry(f"HLT-B{i:07d}", f"Given{i}", f"Family{i % 9973}",
                               date(1940 + i % 80, 1 + i % 12, 1 + i % 28), nhs_number=nine + str(check)))
    return out


async def bench_enrolment(people: int) -> dict[str, Any]:
    """One node enrols `people` people through the real service."""
    settings = {"locator_evaluation_burst": 10 * people, "locator_evaluation_cap": 10 * people}
    with tempfile.TemporaryDirectory() as tmp:
        async with Partnership(Path(tmp) / "state", ROOT / "policies", people=0, agencies=("health",),
                               settings=settings) as partnership:
            node = partnership.nodes["health"]
            dataset = AgencyDataset("health", _people(people), mash_contact=node.servicer.dataset.mash_contact)
            channel = partnership.channel(channel_credentials(partnership.pki.ca_cert, *partnership.pki.node("health")))
            enrolment = LocatorEnrolment(channel)
            node.servicer.features = (*node.servicer.features, agency_pb.FEATURE_LOCATOR_ENROLMENT)
            started = time.perf_counter()
            report = await enrolment.sync(dataset)
            elapsed = time.perf_counter() - started
            again = time.perf_counter()
            unchanged = await enrolment.sync(dataset)
            resync = time.perf_counter() - again
    return {"people": people, "tokens": report.enrolled, "seconds": round(elapsed, 1),
            "people_per_s": round(people / elapsed, 1), "resync_unchanged_s": round(resync, 2),
            "resync_added": unchanged.added}


def _sql_times(path: Path, held: list[bytes], lookups: int, seed: float) -> list[float]:
    """The lookup's own SQL on a separate connection, without the hop to a worker thread: the index's cost."""
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    times = []
    try:
        for i in range(lookups):
            wanted = [held[rng.randrange(len(held))], rng.randbytes(16)] if i % 2 else [rng.randbytes(16)] * 2
            t0 = time.perf_counter()
            conn.execute("SELECT node FROM locator_tokens WHERE key_id = ? AND token IN (?, ?)",
                         ("k1", *wanted)).fetchall()
            conn.execute("SELECT node FROM locator_nodes WHERE key_id = ? AND complete = 1", ("k1",)).fetchall()
            times.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return times


async def bench_index(max_tokens: int, lookups: int, directory: Path, postgres: str = "") -> list[dict[str, Any]]:
    """Lookup p50/p99 at growing index sizes (tokens spread over six nodes); SQLite, or PostgreSQL at `postgres`
    (in a schema of its own, dropped afterwards)."""
    schema = ""
    if postgres:
        import psycopg

        schema = f"locator_bench_{os.getpid()}"
        async with await psycopg.AsyncConnection.connect(postgres, autocommit=True) as conn:
            await conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
        store: LocatorStore = await open_locator_store(f"{postgres}?options=-csearch_path%3D{schema}")
    else:
        store = await SqliteLocatorStore.open(f"sqlite:///{directory / 'locator.sqlite'}")
    rng = random.Random(5)
    sizes = [s for s in (10_000, 100_000, 1_000_000, 3_000_000, 10_000_000) if s <= max_tokens]
    results = []
    held: list[bytes] = []
    filled = 0
    try:
        for size in sizes:
            started = time.perf_counter()
            while filled < size:
                batch = [rng.randbytes(16) for _ in range(min(10_000, size - filled))]
                await store.enrol(NODES[(filled // 10_000) % len(NODES)], "k1", batch, complete=True, now=NOW)
                held += batch[:2]
                filled += len(batch)
            fill = time.perf_counter() - started
            times = []
            for i in range(lookups):
                wanted = [held[rng.randrange(len(held))], rng.randbytes(16)] if i % 2 else [rng.randbytes(16)] * 2
                t0 = time.perf_counter()
                await store.lookup("k1", wanted)
                times.append(time.perf_counter() - t0)
            if postgres:
                size_mb, sql = 0.0, times
            else:
                size_mb = await asyncio.to_thread(os.path.getsize, directory / "locator.sqlite") / 1e6
                sql = await asyncio.to_thread(_sql_times, directory / "locator.sqlite", held, lookups, rng.random())
            results.append({"tokens": size, "fill_s": round(fill, 1), "file_mb": round(size_mb, 1),
                            "p50_ms": round(statistics.median(times) * 1000, 3),
                            "p99_ms": round(_pct(times, 0.99) * 1000, 3),
                            "sql_p50_ms": round(statistics.median(sql) * 1000, 3),
                            "sql_p99_ms": round(_pct(sql, 0.99) * 1000, 3)})
            print(f"  index {size:>10,} tokens: store p50 {results[-1]['p50_ms']} ms, p99 {results[-1]['p99_ms']} ms;"
                  f" SQL p50 {results[-1]['sql_p50_ms']} ms, p99 {results[-1]['sql_p99_ms']} ms", flush=True)
    finally:
        await store.close()
        if postgres:
            import psycopg

            async with await psycopg.AsyncConnection.connect(postgres, autocommit=True) as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())
    return results


async def _run_queries(client: HubClient, subjects: list[dict[str, str]], seconds: float,
                       concurrency: int, request: dict[str, Any] = REQUEST) -> tuple[list[float], float]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await client.query(subject=subjects[i % len(subjects)], timeout=30, **request)
            latencies.append(time.perf_counter() - t0)
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n * 37) for n in range(concurrency)))
    return latencies, time.perf_counter() - started


def _count_lookups(servicer: Any, counted: list[int]) -> None:
    """Count every lookup the node answers (single or batched)."""
    answer = servicer._answer

    def counting(request: Any) -> Any:
        counted[0] += 1
        return answer(request)

    servicer._answer = counting


async def bench_queries(mode: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """Queries about people from the world (each known to a few agencies), with the locator or not."""
    world = build_world()
    subjects = [{"nhs_number": p.nhs_number} for p in list(world.people)[:500]]
    settings: dict[str, Any] = {"locator": mode != "broadcast", "locator_hold_skipped": mode == "locator"}
    with tempfile.TemporaryDirectory() as tmp:
        async with Partnership(Path(tmp) / "state", ROOT / "policies", world=world,
                               settings=settings) as partnership:
            if mode != "broadcast":
                for agency in NODES:
                    channel = partnership.channel(channel_credentials(partnership.pki.ca_cert,
                                                                      *partnership.pki.node(agency)))
                    await enrol_running_node(partnership.nodes[agency], channel)
            client = partnership.client("police", "case-system", user="bench", role="mash_researcher_police")
            for subject in subjects[:30]:  # warm up channels, caches and the hold samples
                await client.query(subject=subject, **REQUEST)
            counted = [0]
            for node in partnership.nodes.values():
                _count_lookups(node.servicer, counted)
            out: dict[str, Any] = {"mode": mode}
            for callers in (1, concurrency):
                counted[0] = 0
                latencies, elapsed = await _run_queries(client, subjects, seconds, callers)
                node_lookups = counted[0]
                out[f"c{callers}"] = {
                    "queries": len(latencies), "queries_per_s": round(len(latencies) / elapsed, 1),
                    "p50_ms": round(statistics.median(latencies) * 1000, 2),
                    "p99_ms": round(_pct(latencies, 0.99) * 1000, 2),
                    "node_lookups_per_query": round(node_lookups / max(1, len(latencies)), 2),
                }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--max-tokens", type=int, default=10_000_000)
    parser.add_argument("--lookups", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--only", choices=("enrol", "index", "queries"), nargs="*")
    parser.add_argument("--postgres", default="", metavar="URL",
                        help="also time the index on PostgreSQL, e.g. postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    configure_logging("warning", io.StringIO())
    only = set(args.only or ("enrol", "index", "queries"))
    console = Console()
    result: dict[str, Any] = {"benchmark": "locator", "load": os.getloadavg()[0]}
    if "queries" in only:
        result["queries"] = [asyncio.run(bench_queries(mode, args.seconds, args.concurrency))
                             for mode in ("broadcast", "locator", "locator-no-hold")]
        table = Table(title="Hub queries: broadcast vs locator (6 nodes, mTLS, 2,000-person world)")
        for column in ("mode", "callers", "queries/s", "p50 ms", "p99 ms", "node lookups/query"):
            table.add_column(column)
        for row in result["queries"]:
            for key in ("c1", f"c{args.concurrency}"):
                r = row[key]
                table.add_row(row["mode"], key[1:], str(r["queries_per_s"]), str(r["p50_ms"]), str(r["p99_ms"]),
                              str(r["node_lookups_per_query"]))
        console.print(table)
    if "enrol" in only:
        result["enrolment"] = asyncio.run(bench_enrolment(args.people))
        console.print(f"Enrolment: {result['enrolment']}")
    if "index" in only:
        with tempfile.TemporaryDirectory() as tmp:
            result["index"] = asyncio.run(bench_index(args.max_tokens, args.lookups, Path(tmp)))
        if args.postgres:
            result["index_postgres"] = asyncio.run(bench_index(args.max_tokens, args.lookups, Path(), args.postgres))
        table = Table(title="Locator index lookups (SQLite, two tokens per lookup)")
        for column in ("tokens", "fill s", "file MB", "store p50 ms", "store p99 ms", "SQL p50 ms", "SQL p99 ms"):
            table.add_column(column)
        for r in result["index"]:
            table.add_row(f"{r['tokens']:,}", str(r["fill_s"]), str(r["file_mb"]), str(r["p50_ms"]), str(r["p99_ms"]),
                          str(r["sql_p50_ms"]), str(r["sql_p99_ms"]))
        console.print(table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
