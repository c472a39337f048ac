"""Policy engine benchmark: decision-set latency, Casbin enforce() for comparison, and snapshot build time.

Run with `python -m bench.bench_policy`. For each size it writes a synthetic policy directory (the shipped
vocabularies plus generated roles and purposes, and that many random allow/deny lines spread over the
six agency files), then measures building and validating the snapshot, the full decision set of one
query (decisions_for over six agencies and every record category, every decision read), and a few
Casbin enforce() calls at the same size. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gateway.policy import lint, load_snapshot
from gateway.policy.casbin_model import enforce_level

SHIPPED = Path(__file__).resolve().parent.parent / "policies"
AGENCIES = ("police", "health", "csc", "education", "housing", "probation")
LEVELS = ("EXISTS", "PERTINENT", "FULL")


def _vocabulary_size(lines: int) -> tuple[int, int]:
    """Synthetic (roles, purposes) so that `lines` distinct lines exist without crowding the space."""
    if lines <= 500:
        return 10, 4
    if lines <= 5000:
        return 30, 8
    return 60, 12


def write_policy(target: Path, lines: int, seed: int = 7) -> None:
    """A copy of the shipped policy with synthetic roles, purposes and `lines` policy lines in total."""
    rng = random.Random(seed)
    shutil.copytree(SHIPPED, target)
    shutil.rmtree(target / "tests")  # the shipped cases speak about the shipped lines only
    n_roles, n_purposes = _vocabulary_size(lines)
    groups = [f"bench_group_{i}" for i in range(max(2, n_roles // 10))]
    with (target / "vocabulary" / "roles.yaml").open("a", encoding="utf-8") as out:
        for g in groups:
            out.write(f"  {g}:\n    description: synthetic group\n")
    roles_text = (target / "vocabulary" / "roles.yaml").read_text(encoding="utf-8")
    synthetic_roles = "".join(
        f"  bench_role_{i}:\n    agency: {AGENCIES[i % 6]}\n    inside_mash: false\n"
        f"    description: synthetic role\n    member_of: [{rng.choice(groups)}]\n"
        for i in range(n_roles)
    )
    roles_text = roles_text.replace("\ngroups:\n", "\n" + synthetic_roles + "\ngroups:\n", 1)
    (target / "vocabulary" / "roles.yaml").write_text(roles_text, encoding="utf-8")
    purposes = ["safeguarding", "child_protection", "safeguarding_screening", "s47_enquiry", "s17_assessment"]
    with (target / "vocabulary" / "purposes.yaml").open("a", encoding="utf-8") as out:
        for i in range(n_purposes):
            parent = rng.choice(purposes)
            out.write(
                f"  bench_purpose_{i}:\n    parent: {parent}\n    description: synthetic purpose\n"
                "    legal_bases: [uk_gdpr_6_1_e]\n"
            )
            purposes.append(f"bench_purpose_{i}")
    snapshot = load_snapshot(target)  # the shipped lines, to learn the categories
    categories = {
        a: [a, *(c for c, v in snapshot.record_categories.items() if v.agency == a and c != a)]
        for a in AGENCIES
    }
    all_roles = [*snapshot.roles, *(f"bench_role_{i}" for i in range(n_roles)), *groups]
    remaining = lines - len(snapshot.lines)
    seen = {ln.casbin_row() for ln in snapshot.lines}
    extra: dict[str, list[str]] = {a: [] for a in AGENCIES}
    while remaining > 0:
        agency = rng.choice(AGENCIES)
        deny = rng.random() < 0.15
        row = (
            f"role:{rng.choice(all_roles)}",
            f"agency:{agency}",
            f"cat:{rng.choice(categories[agency])}",
            f"purpose:{rng.choice(purposes)}",
            rng.choice(LEVELS),
            "deny" if deny else "allow",
        )
        if row in seen:
            continue
        seen.add(row)
        extra[agency].append("p, " + ", ".join(row))
        remaining -= 1
    for agency, rows in extra.items():
        with (target / "agencies" / f"{agency}.csv").open("a", encoding="utf-8") as out:
            out.write("\n".join(rows) + "\n")


def _percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_size(lines: int, queries: int, enforce_calls: int, builds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
        directory = Path(tmp) / "policies"
        write_policy(directory, lines)
        build_times = []
        for _ in range(builds):
            start = time.perf_counter()
            snapshot = load_snapshot(directory)
            build_times.append(time.perf_counter() - start)
        assert len(snapshot.lines) == lines, (len(snapshot.lines), lines)
        start = time.perf_counter()
        lint(snapshot, date(2026, 11, 26))
        lint_time = time.perf_counter() - start
        rng = random.Random(lines)
        roles = [r for r, v in snapshot.roles.items() if not v.group]
        purposes = [p for p, v in snapshot.purposes.items() if not v.group]
        pairs = [(rng.choice(roles), rng.choice(purposes)) for _ in range(queries)]
        samples = []
        cells = 0
        for role, purpose in pairs:
            start = time.perf_counter_ns()
            decisions = snapshot.decisions_for(role, purpose)
            n = 0
            for per_category in decisions.values():
                for decision in per_category.values():
                    n += decision.level  # read every decision, as the service does
            samples.append((time.perf_counter_ns() - start) / 1000)
            cells = max(cells, sum(len(v) for v in decisions.values()))
        start = time.perf_counter()
        enforcer = snapshot.enforcer()
        casbin_build = time.perf_counter() - start
        enforce_samples = []
        for role, purpose in pairs[:enforce_calls]:
            category = rng.choice([c for c, v in snapshot.record_categories.items() if not v.group])
            agency = snapshot.record_categories[category].agency
            start = time.perf_counter()
            level = enforce_level(enforcer, role, purpose, agency, category)
            # enforce_level makes one enforce() call per level; report the cost of one call.
            enforce_samples.append((time.perf_counter() - start) / 3 * 1000)
            assert level is snapshot.decide(role, purpose, agency, category).level
        return {
            "lines": lines,
            "cells_per_query": cells,
            "decision_set_p50_us": statistics.median(samples),
            "decision_set_p99_us": _percentile(samples, 0.99),
            "enforce_per_call_ms": statistics.median(enforce_samples),
            "enforce_full_set_estimate_ms": statistics.median(enforce_samples) * 3 * cells,
            "snapshot_build_s": min(build_times),
            "policy_check_s": lint_time,
            "casbin_enforcer_build_s": casbin_build,
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="200,2000,20000", help="policy sizes in lines, comma-separated")
    parser.add_argument("--queries", type=int, default=5000, help="decision-set queries per size")
    parser.add_argument("--enforce-calls", type=int, default=5, help="enforce() calls per size (slow)")
    parser.add_argument("--builds", type=int, default=3, help="snapshot builds per size (best is kept)")
    args = parser.parse_args(argv)
    results = [
        bench_size(int(s), args.queries, args.enforce_calls, args.builds) for s in args.sizes.split(",")
    ]
    table = Table(
        "policy lines",
        "decision set p50 (µs)",
        "p99 (µs)",
        "enforce() per call (ms)",
        "enforce() for one full set (ms)",
        "snapshot build (s)",
        "policy check (s)",
        title="policy engine",
    )
    for r in results:
        table.add_row(
            f"{r['lines']:,}",
            f"{r['decision_set_p50_us']:.1f}",
            f"{r['decision_set_p99_us']:.1f}",
            f"{r['enforce_per_call_ms']:.2f}",
            f"{r['enforce_full_set_estimate_ms']:,.0f}",
            f"{r['snapshot_build_s']:.2f}",
            f"{r['policy_check_s']:.2f}",
        )
    Console(width=120).print(table)
    print(json.dumps({"benchmark": "policy", "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
