"""The agreement coverage behind `policy check`'s "no agreement covers" finding, looked up per category.

It used to be a table of every (party, purpose, category) triple each agreement covers: millions of triples
and about 2 GB at 32 boroughs, built at every start-up. The lookup must answer exactly as that table did.
"""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pytest

from bench.boroughs import generate
from gateway.policy.checks import _covered
from gateway.policy.snapshot import PolicySnapshot, load_snapshot


def _table(snapshot: PolicySnapshot) -> dict[tuple[str, str, str], frozenset[str]]:
    """The definition: every triple an agreement's parties, purposes and party categories make."""
    index, vocab = snapshot.index, snapshot.vocabulary
    covered: dict[tuple[str, str, str], set[str]] = {}
    for agreement in vocab.agreements.values():
        purposes = {d for p in agreement.purposes for d in index.purpose_descendants.get(p, ())}
        categories = {d for c in agreement.categories for d in index.category_descendants.get(c, ())
                      if vocab.record_categories[d].agency in agreement.parties}
        for triple in product(agreement.parties, purposes, categories):
            covered.setdefault(triple, set()).add(agreement.name)
    return {triple: frozenset(names) for triple, names in covered.items()}


@pytest.mark.parametrize("boroughs", [0, 3], ids=["shipped", "three-boroughs"])
def test_the_lookup_answers_every_triple_as_the_full_table(policy_dir: Path, tmp_path: Path, boroughs: int) -> None:
    """For every agency, purpose and category of the partnership (covered or not), the same agreements."""
    directory = policy_dir if not boroughs else tmp_path / "p"
    if boroughs:
        generate(policy_dir, directory, boroughs)
    snapshot = load_snapshot(directory)
    table, lookup = _table(snapshot), _covered(snapshot)
    vocab = snapshot.vocabulary
    agencies = {vocab.roles[r].agency for r in vocab.roles} | {p for a in vocab.agreements.values() for p in a.parties}
    checked = 0
    for triple in product(sorted(agencies), sorted(vocab.purposes), sorted(vocab.record_categories)):
        assert lookup(*triple) == table.get(triple, frozenset()), triple
        checked += 1
    assert table
    assert checked > len(table)  # uncovered triples were asked too
