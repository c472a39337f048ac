"""The bench's many-borough partnership: a valid policy in which each borough agency mirrors its home agency."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from agency_stubs import World
from bench.boroughs import borough_names, generate, home_agency
from bench.node_host import borough_dataset
from gateway.partnership import load_plan
from gateway.policy.holder import validate


def test_each_borough_agency_is_declared_and_granted_what_its_home_agency_is(tmp_path: Path, policy_dir: Path) -> None:
    """Two boroughs: the generated policy loads with no blocking finding, declares 2 × 6 record holders, and
    the police researcher's decisions for a borough agency are the home agency's under the moved names."""
    names = generate(policy_dir, tmp_path / "p", 2)
    assert names == borough_names(load_plan(policy_dir).record_holders, 2)
    assert load_plan(tmp_path / "p").record_holders == tuple(names)
    snapshot, findings = validate(tmp_path / "p", date(2026, 11, 29))
    assert snapshot is not None, findings
    original, _ = validate(policy_dir, date(2026, 11, 29))
    assert original is not None
    home = original.decisions_for("mash_researcher_police", "safeguarding_screening")
    moved = snapshot.decisions_for("mash_researcher_police", "safeguarding_screening")
    assert set(moved) == {n for n in names if home_agency(n) in home}
    for name in names:
        got = {c.replace(name, home_agency(name), 1): (d.level, d.review) for c, d in moved[name].items()}
        assert got == {c: (d.level, d.review) for c, d in home[home_agency(name)].items()}


def test_a_borough_node_holds_its_home_agencys_records_under_its_own_names(shared_world: World) -> None:
    police = shared_world.dataset("police")
    moved = borough_dataset(police, "police_b07")
    assert moved.agency == "police_b07"
    assert moved.categories == {"police_b07" + c[len("police"):] for c in police.categories}
    assert len(list(moved.records())) == len(list(police.records()))
    assert all(r.agency == "police_b07" and r.category.startswith("police_b07.") for r in moved.records())
