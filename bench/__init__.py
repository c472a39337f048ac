"""Benchmarks. `python -m bench` runs them all; each module also runs on its own (`python -m bench.bench_audit`)."""
