"""Run every benchmark in turn, each in its own process so one cannot warm or skew another."""

from __future__ import annotations

import subprocess
import sys

MODULES = ("bench.bench_gateway", "bench.bench_baseline", "bench.bench_policy", "bench.bench_redaction",
           "bench.bench_audit", "bench.bench_workflow", "bench.bench_locator",
           "bench.bench_london")


def main() -> int:
    failed = 0
    for module in MODULES:
        print(f"\n=== {module} ===", flush=True)
        failed += subprocess.run([sys.executable, "-m", module], check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
