"""The shared PostgreSQL audit log's capacity with several writer processes, as gateway replicas share it.

`python -m bench.bench_audit_writers --processes 1 2 3` runs, for each count, that many processes against a
fresh schema, each with its own `AuditLog` and `--writers` tasks appending `--batch` entries per call (one
query's answers) for `--seconds`; then it checks the log is one gap-free order that verifies. Entries/s
over all processes, divided by the entries a query writes (one per agency answered), bounds the queries/s of
every gateway replica together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from typing import Any

from bench.bench_audit import _event
from gateway.audit.backends import open_store
from gateway.audit.checkpoint import PublicKeys
from gateway.audit.log import AuditLog
from gateway.audit.store import StoreError
from gateway.audit.verify import verify_store
from gateway.domain import SystemClock

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


async def _append(url: str, start_at: float, seconds: float, writers: int, batch: int, tag: int) -> dict[str, Any]:
    store = await open_store(url)
    try:
        log = await AuditLog.open(store, None, SystemClock(), checkpoint_interval=None)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.perf_counter() + seconds
        latencies: list[float] = []

        async def writer(w: int) -> int:
            done = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                base = (tag * 100 + w) * 1_000_000 + done
                await log.append([_event(base + i) for i in range(batch)])
                latencies.append(time.perf_counter() - started)
                done += batch
            return done

        counts = await asyncio.gather(*(writer(w) for w in range(writers)))
        latencies.sort()
        return {"entries": sum(counts), "p50_ms": 1000 * statistics.median(latencies),
                "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}
    finally:
        await store.close()


def _process(url: str, start_at: float, seconds: float, writers: int, batch: int, tag: int,
             out: Any) -> None:
    out.put(asyncio.run(_append(url, start_at, seconds, writers, batch, tag)))


def run(server: str, processes: int, seconds: float, writers: int, batch: int) -> dict[str, Any]:
    import psycopg

    schema = f"audit_writers_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{server}?options=-csearch_path%3D{schema}"
    try:
        asyncio.run(_migrate(url))
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        start_at = time.time() + 3.0  # every process has opened its store and log by then
        procs = [context.Process(target=_process, args=(url, start_at, seconds, writers, batch, p, queue))
                 for p in range(processes)]
        for proc in procs:
            proc.start()
        results = [queue.get(timeout=seconds + 120) for _ in procs]
        for proc in procs:
            proc.join(30)
        report = asyncio.run(_verify(url))
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    entries = sum(r["entries"] for r in results)
    return {"processes": processes, "writers_per_process": writers, "batch": batch, "seconds": seconds,
            "entries": entries, "entries_per_s": round(entries / seconds, 1),
            "append_p50_ms": round(statistics.median(r["p50_ms"] for r in results), 2),
            "append_p99_ms": round(max(r["p99_ms"] for r in results), 2), **report}


async def _migrate(url: str) -> None:
    store = await open_store(url)
    await store.close()


async def _verify(url: str) -> dict[str, Any]:
    store = await open_store(url)
    try:
        size = await store.size()
        try:
            gap_free = len(await store.leaf_hashes(0)) == size  # a gap raises StoreError
        except StoreError:
            gap_free = False
        # Every leaf re-hashed from its bytes, and every filter column checked; no checkpoints were signed.
        report = await verify_store(store, PublicKeys({}), require_coverage=False)
        return {"stored": size, "gap_free": gap_free, "verifies": report.ok}
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--writers", type=int, default=16, help="appending tasks per process")
    parser.add_argument("--batch", type=int, default=6, help="entries per append (one per agency answered)")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rows = []
    for count in args.processes:
        row = run(args.postgres, count, args.seconds, args.writers, args.batch)
        print(f"  {count} process(es): {row['entries_per_s']} entries/s, append p50 {row['append_p50_ms']} ms, "
              f"gap-free {row['gap_free']}, verifies {row['verifies']}", file=sys.stderr, flush=True)
        rows.append(row)
    print(json.dumps({"benchmark": "shared_audit_log_writers", "rows": rows}))
    return 0 if all(r["gap_free"] and r["verifies"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
