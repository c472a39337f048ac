"""The decision index: every (role, purpose, category) decision precomputed from the policy lines once.

It implements the Casbin model in `casbin_model.py` directly from the lines and hierarchies, so that
building it is linear in the size of the answer rather than one Casbin scan per cell; the property
tests prove it agrees with `casbin.Enforcer.enforce`. For one request cell Casbin's semantics are:
the best level any matching allow line grants, capped just below the lowest level any matching deny
line forbids; a line matches when its role, purpose and category are the request's own or one of
their ancestors (``*`` matching anything) and its agency is the request's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.domain import DisclosureLevel
from gateway.policy.rules import ANY, Effect, PolicyLine
from gateway.policy.sources import Location
from gateway.policy.vocabulary import (
    Vocabulary,
    ancestors,
    category_parents,
    purpose_parents,
    role_parents,
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The granted level and the policy lines ("file:line") that decided it.

    `allowed_by` holds the matching allow lines with the highest level; `denied_by` holds the deny
    lines that capped the answer below that (the lowest matching deny level), if any did.
    """

    level: DisclosureLevel
    allowed_by: tuple[str, ...] = ()
    denied_by: tuple[str, ...] = ()


NOTHING = Decision(DisclosureLevel.NONE)

_NO_DENY = int(DisclosureLevel.FULL) + 1

# (best allow level, allow lines at that level, lowest deny level, deny lines at that level)
Cell = tuple[int, tuple[PolicyLine, ...], int, tuple[PolicyLine, ...]]
_EMPTY: Cell = (0, (), _NO_DENY, ())

Key = tuple[str, str, str]  # (role, purpose, category)


def _merge(a: Cell, b: Cell) -> Cell:
    if a[0] > b[0]:
        allow, allow_lines = a[0], a[1]
    elif b[0] > a[0]:
        allow, allow_lines = b[0], b[1]
    else:
        allow, allow_lines = a[0], a[1] + b[1]
    if a[2] < b[2]:
        deny, deny_lines = a[2], a[3]
    elif b[2] < a[2]:
        deny, deny_lines = b[2], b[3]
    else:
        deny, deny_lines = a[2], a[3] + b[3]
    return allow, allow_lines, deny, deny_lines


def level_of(cell: Cell) -> DisclosureLevel:
    """The level a cell grants: the best allow, capped just below the lowest deny."""
    return DisclosureLevel(max(0, min(cell[0], cell[2] - 1)))


def _descendants(
    names: Iterable[str], parents_of: Mapping[str, frozenset[str]]
) -> dict[str, tuple[str, ...]]:
    """For each name, every name at or below it (names whose ancestors include it)."""
    below: dict[str, list[str]] = {n: [] for n in names}
    for name, above in parents_of.items():
        for ancestor in above:
            below.setdefault(ancestor, []).append(name)
    return {n: tuple(sorted(v)) for n, v in below.items()}


@dataclass(frozen=True, slots=True)
class DecisionIndex:
    """Precomputed decisions and the raw cells behind them (kept for `policy check`)."""

    decisions: Mapping[Key, Decision]
    cells: Mapping[Key, Cell]
    by_query: Mapping[tuple[str, str], Mapping[str, Mapping[str, Decision]]]
    role_ancestors: Mapping[str, frozenset[str]]
    purpose_ancestors: Mapping[str, frozenset[str]]
    category_ancestors: Mapping[str, frozenset[str]]
    role_descendants: Mapping[str, tuple[str, ...]]
    purpose_descendants: Mapping[str, tuple[str, ...]]
    category_descendants: Mapping[str, tuple[str, ...]]


def build_index(vocab: Vocabulary, lines: Iterable[PolicyLine]) -> DecisionIndex:
    """Compute every decision for every declared role, purpose and category from validated lines."""
    role_anc = {r: ancestors(r, role_parents(vocab)) for r in vocab.roles}
    purpose_anc = {p: ancestors(p, purpose_parents(vocab)) for p in vocab.purposes}
    cat_anc = {c: ancestors(c, category_parents(vocab)) for c in vocab.record_categories}
    role_below = _descendants(vocab.roles, role_anc)
    purpose_below = _descendants(vocab.purposes, purpose_anc)
    cat_below = _descendants(vocab.record_categories, cat_anc)
    role_below[ANY] = tuple(sorted(vocab.roles))
    purpose_below[ANY] = tuple(sorted(vocab.purposes))

    # Group the lines by their own (role, purpose, category), then push each group down one
    # hierarchy at a time; each line reaches each cell below it exactly once.
    stage: dict[Key, Cell] = {}
    for line in lines:
        if line.effect is Effect.ALLOW:
            cell: Cell = (int(line.level), (line,), _NO_DENY, ())
        elif line.effect is Effect.DENY:
            cell = (0, (), int(line.level), (line,))
        else:  # REVIEW lines are refused at load time; nothing to index yet
            continue
        key = (line.role, line.purpose, line.category)
        stage[key] = _merge(stage[key], cell) if key in stage else cell
    for axis, below in ((2, cat_below), (1, purpose_below), (0, role_below)):
        pushed: dict[Key, Cell] = {}
        for key, cell in stage.items():
            for name in below.get(key[axis], ()):
                target: Key = (
                    (name, key[1], key[2])
                    if axis == 0
                    else ((key[0], name, key[2]) if axis == 1 else (key[0], key[1], name))
                )
                existing = pushed.get(target)
                pushed[target] = cell if existing is None else _merge(existing, cell)
        stage = pushed

    interned: dict[tuple[int, tuple[str, ...], tuple[str, ...]], Decision] = {}

    def decision(cell: Cell) -> Decision:
        level = level_of(cell)
        allowed = tuple(ln.where for ln in sorted(cell[1], key=_order)) if cell[0] else ()
        capped = cell[2] <= cell[0]
        denied = tuple(ln.where for ln in sorted(cell[3], key=_order)) if capped else ()
        key = (int(level), allowed, denied)
        found = interned.get(key)
        if found is None:
            found = interned[key] = (
                Decision(level, allowed, denied)
                if (allowed or denied)
                else (NOTHING if level is DisclosureLevel.NONE else Decision(level))
            )
        return found

    decisions = {key: decision(cell) for key, cell in stage.items()}
    record_categories = [c for c in vocab.record_categories.values() if not c.group]
    holding = [a.name for a in vocab.agencies.values() if a.holds_records]
    by_query: dict[tuple[str, str], Mapping[str, Mapping[str, Decision]]] = {}
    for role in vocab.roles:
        for purpose in vocab.purposes:
            per_agency: dict[str, dict[str, Decision]] = {a: {} for a in holding}
            for category in record_categories:
                per_agency[category.agency][category.name] = decisions.get(
                    (role, purpose, category.name), NOTHING
                )
            by_query[(role, purpose)] = MappingProxyType(
                {a: MappingProxyType(v) for a, v in per_agency.items()}
            )
    return DecisionIndex(
        decisions=MappingProxyType(decisions),
        cells=MappingProxyType(stage),
        by_query=MappingProxyType(by_query),
        role_ancestors=MappingProxyType(role_anc),
        purpose_ancestors=MappingProxyType(purpose_anc),
        category_ancestors=MappingProxyType(cat_anc),
        role_descendants=MappingProxyType(role_below),
        purpose_descendants=MappingProxyType(purpose_below),
        category_descendants=MappingProxyType(cat_below),
    )


def _order(line: PolicyLine) -> Location:
    return line.location
