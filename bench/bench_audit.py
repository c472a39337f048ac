"""Audit log benchmark: durable appends/s (SQLite, PostgreSQL), full verification entries/s, proof latency.

Run with `python -m bench.bench_audit`; it is bounded in time, prints a table and then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.audit.backends import open_store
from gateway.audit.checkpoint import CheckpointSigner, PublicKeys
from gateway.audit.log import AuditLog
from gateway.audit.merkle import MerkleTree, verify_inclusion
from gateway.audit.store import DisclosureStore
from gateway.audit.verify import verify_store
from gateway.domain import AuditEvent, AuditKind, FieldDisclosure, ManifestEntry, SystemClock

TARGETS = {"sqlite_appends_per_s": 2000, "postgres_appends_per_s": 1000, "verify_entries_per_s": 50000,
           "inclusion_proof_p99_ms": 1.0}


def _event(n: int) -> AuditEvent:
    """A realistic disclosure entry (about 1 KB encoded) with tokens, a sealed value and a manifest."""
    return AuditEvent(
        kind=AuditKind.DISCLOSURE, occurred_at=datetime.now(UTC), request_id=f"bench-{n}",
        caller="spiffe://mash.local/agency/csc/system/case-system", user=f"user-{n % 50}", role="social_worker",
        purpose="s47_enquiry", legal_basis="children_act_1989_s47", agreement="mash-isa-2026",
        case_reference=f"CASE-{n % 1000}",
        subject_tokens=(f"nhs:k1:{hashlib.sha256(b'n%d' % n).hexdigest()}",
                        f"ndob:k1:{hashlib.sha256(b'd%d' % n).hexdigest()}"),
        sealed_identifiers="s1:" + "A" * 160, agency="police", status="MATCH", level="PERTINENT",
        categories=("police.domestic_abuse", "police.intelligence"),
        manifest=tuple(ManifestEntry(f"r{i}", f"field{i}", "person.address", FieldDisclosure.REDACTED,
                                     "postcode_district", "pertinent") for i in range(3)),
        payload_digest=hashlib.sha256(b"%d" % n).hexdigest(), policy_version="a" * 64,
        deciding_rules=("policies/police.csv:12",),
    )


async def bench_appends(store: DisclosureStore, seconds: float, writers: int) -> dict[str, Any]:
    """Appends/s with `writers` concurrent tasks, each appending one entry per call and awaiting durability."""
    log = await AuditLog.open(store, None, SystemClock(), checkpoint_interval=None)
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def writer(w: int) -> int:
        done = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await log.append([_event(w * 1_000_000 + done)])
            latencies.append(time.perf_counter() - started)
            done += 1
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"appends": sum(counts), "per_s": sum(counts) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


async def bench_verify(path: Path, entries: int) -> dict[str, Any]:
    """Fill a SQLite log with `entries` entries and checkpoints, then time a full verification."""
    store = await open_store(f"sqlite:///{path}")
    try:
        signer = CheckpointSigner.generate("cp1")
        log = await AuditLog.open(store, signer, SystemClock(), checkpoint_interval=None)
        batch = 2000
        for start in range(0, entries, batch):
            await log.append([_event(i) for i in range(start, min(entries, start + batch))])
            if (start // batch) % 10 == 9:
                await log.checkpoint()
        await log.checkpoint()
        report = await verify_store(store, PublicKeys({"cp1": signer.public_key}))
        if not report.ok:
            raise SystemExit(f"verification unexpectedly failed: {report.summary()}")
        return {"entries": report.entries, "checkpoints": report.checkpoints, "seconds": report.seconds,
                "per_s": report.entries / report.seconds, "open_s": await _time_open(store, signer),
                "log_proof": await _time_log_proofs(store, signer, report.entries)}
    finally:
        await store.close()


async def _time_log_proofs(store: DisclosureStore, signer: CheckpointSigner, size: int,
                           samples: int = 200) -> dict[str, float]:
    """Inclusion proofs through a freshly opened AuditLog at random indices: its tree is compact, so most of
    these re-read (and re-check) a block of entries from the store first."""
    log = await AuditLog.open(store, signer, SystemClock(), checkpoint_interval=None)
    rng = random.Random(9162)
    took: list[float] = []
    for index in (rng.randrange(size) for _ in range(samples)):
        started = time.perf_counter()
        await log.inclusion_proof(index, size)
        took.append(time.perf_counter() - started)
    took.sort()
    return {"p50_ms": 1000 * statistics.median(took), "p99_ms": 1000 * took[int(0.99 * (samples - 1))]}


async def _time_open(store: DisclosureStore, signer: CheckpointSigner) -> float:
    """Seconds for AuditLog.open to load the tree (hashing every entry's bytes) and check the checkpoint."""
    started = time.perf_counter()
    await AuditLog.open(store, signer, SystemClock(), checkpoint_interval=None)
    return time.perf_counter() - started


async def bench_open(path: Path, entries: int) -> dict[str, Any]:
    """Fill a SQLite log with `entries` entries in large batches and one checkpoint, then time opening it."""
    store = await open_store(f"sqlite:///{path}")
    try:
        signer = CheckpointSigner.generate("cp1")
        log = await AuditLog.open(store, signer, SystemClock(), checkpoint_interval=None)
        for start in range(0, entries, 4000):
            await log.append([_event(i) for i in range(start, min(entries, start + 4000))])
        await log.checkpoint()
        return {"entries": entries, "open_s": await _time_open(store, signer)}
    finally:
        await store.close()


def bench_proofs(size: int, samples: int) -> dict[str, Any]:
    """Inclusion proof latency (generation + verification) in an in-memory tree of `size` synthetic leaves."""
    started = time.perf_counter()
    tree = MerkleTree(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(size))
    build = time.perf_counter() - started
    root = tree.root()
    rng = random.Random(6962)
    generate: list[float] = []
    for index in (rng.randrange(size) for _ in range(samples)):
        t = time.perf_counter()
        proof = tree.inclusion_proof(index, size)
        generate.append(time.perf_counter() - t)
        verify_inclusion(index, size, tree.leaf(index), proof, root)
    generate.sort()
    return {"tree_size": size, "build_s": build, "p50_ms": 1000 * statistics.median(generate),
            "p99_ms": 1000 * generate[int(0.99 * (samples - 1))], "max_ms": 1000 * generate[-1]}


async def _postgres(url: str, seconds: float, writers: int) -> dict[str, Any] | str:
    import psycopg

    schema = f"audit_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        return f"unreachable ({exc.__class__.__name__})"
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in url else "?"
        store = await open_store(f"{url}{sep}options=-csearch_path%3D{schema}")
        try:
            return await bench_appends(store, seconds, writers)
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"bench": "audit", "writers": args.writers}
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(f"sqlite:///{Path(tmp) / 'appends.sqlite'}")
        try:
            results["sqlite"] = await bench_appends(store, args.seconds, args.writers)
        finally:
            await store.close()
        if args.postgres:
            results["postgres"] = await _postgres(args.postgres, args.seconds, args.writers)
        results["verify"] = await bench_verify(Path(tmp) / "verify.sqlite", args.verify_entries)
        if args.open_entries:
            results["open"] = await bench_open(Path(tmp) / "open.sqlite", args.open_entries)
    results["proof"] = bench_proofs(args.tree_size, args.proof_samples)
    return results


def _table(results: dict[str, Any]) -> Table:
    table = Table(title="audit log benchmark")
    for column in ("measure", "result", "target", "met"):
        table.add_column(column)

    def row(name: str, value: float | None, unit: str, target: float, higher_is_better: bool = True) -> None:
        if value is None:
            table.add_row(name, "not run", f"{target:g} {unit}", "-")
            return
        met = value >= target if higher_is_better else value <= target
        table.add_row(name, f"{value:,.3f} {unit}" if value < 10 else f"{value:,.0f} {unit}",
                      f"{'>=' if higher_is_better else '<='} {target:g} {unit}", "yes" if met else "NO")

    writers = results["writers"]
    row(f"SQLite durable appends, {writers} writers", results["sqlite"]["per_s"], "entries/s",
        TARGETS["sqlite_appends_per_s"])
    pg = results.get("postgres")
    row(f"PostgreSQL durable appends, {writers} writers", pg["per_s"] if isinstance(pg, dict) else None,
        "entries/s", TARGETS["postgres_appends_per_s"])
    row(f"full verification ({results['verify']['entries']:,} entries)", results["verify"]["per_s"],
        "entries/s", TARGETS["verify_entries_per_s"])
    row(f"inclusion proof p99 at {results['proof']['tree_size']:,} entries", results["proof"]["p99_ms"], "ms",
        TARGETS["inclusion_proof_p99_ms"], higher_is_better=False)
    table.add_row(f"AuditLog.open ({results['verify']['entries']:,} entries)",
                  f"{results['verify']['open_s']:.2f} s", "-", "-")
    log_proof = results["verify"]["log_proof"]
    table.add_row(f"AuditLog inclusion proof, random index, {results['verify']['entries']:,} entries (block re-read)",
                  f"p50 {log_proof['p50_ms']:.2f} ms, p99 {log_proof['p99_ms']:.2f} ms", "-", "-")
    if "open" in results:
        table.add_row(f"AuditLog.open ({results['open']['entries']:,} entries)",
                      f"{results['open']['open_s']:.2f} s", "-", "-")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each append benchmark")
    parser.add_argument("--writers", type=int, default=16, help="concurrent appending tasks")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="PostgreSQL URL ('' to skip); a temporary schema is created and dropped")
    parser.add_argument("--verify-entries", type=int, default=100_000)
    parser.add_argument("--open-entries", type=int, default=0,
                        help="also time AuditLog.open on a log of this many entries (0: skip; 1000000 takes minutes)")
    parser.add_argument("--tree-size", type=int, default=1_000_000)
    parser.add_argument("--proof-samples", type=int, default=10_000)
    args = parser.parse_args()
    results = asyncio.run(run(args))
    Console().print(_table(results))
    print(json.dumps(results, sort_keys=True, default=str))  # the machine-readable result line


if __name__ == "__main__":
    main()
