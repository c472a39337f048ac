"""`bench.bench_redaction` still runs against the shipped policy (it broke once when an agency joined)."""

from __future__ import annotations

from bench.bench_redaction import SCENARIOS, run


def test_every_scenario_redacts_the_typical_answer_under_the_shipped_rules() -> None:
    results = run(iterations=5, budget_s=1.0)
    assert [r["scenario"] for r in results] == list(SCENARIOS)
    assert all(r["records"] == 50 and r["iterations"] == 5 for r in results)
