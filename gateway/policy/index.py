"""The decision index: every (role, purpose, category) decision precomputed from the policy lines once.

It implements the Casbin model in `casbin_model.py` directly from the lines and hierarchies, so that
building it is linear in the size of the answer rather than one Casbin scan per cell; the property
tests prove it agrees with `casbin.Enforcer.enforce`. For one request cell Casbin's semantics are:
the best level any matching allow line grants, capped just below the lowest level any matching deny
line forbids; a line matches when its role, purpose and category are the request's own or one of
their ancestors (``*`` matching anything) and its agency is the request's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from gateway.domain import DisclosureLevel
from gateway.policy.rules import ANY, Effect, PolicyLine
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
    lines that capped the answer below that (the lowest matching deny level), if any did. `review` is
    the higher level the owning agency may release after a reviewer approves (NONE when no review line
    offers more than `level`), granted by the review lines in `reviewed_by`.
    """

    level: DisclosureLevel
    allowed_by: tuple[str, ...] = ()
    denied_by: tuple[str, ...] = ()
    review: DisclosureLevel = DisclosureLevel.NONE
    reviewed_by: tuple[str, ...] = ()


T = TypeVar("T")

NOTHING = Decision(DisclosureLevel.NONE)

_NO_DENY = int(DisclosureLevel.FULL) + 1

# (best allow level, allow lines at that level, lowest deny level, deny lines at that level)
Cell = tuple[int, tuple[PolicyLine, ...], int, tuple[PolicyLine, ...]]
_EMPTY: Cell = (0, (), _NO_DENY, ())

Key = tuple[str, str, str]  # (role, purpose, category)
# (best review level, review lines at that level, lowest level a deny line forbids)
ReviewCell = tuple[int, tuple[PolicyLine, ...], int]


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


def _merge_review(a: ReviewCell, b: ReviewCell) -> ReviewCell:
    if a[0] != b[0]:
        best, lines = (a[0], a[1]) if a[0] > b[0] else (b[0], b[1])
    else:
        best, lines = a[0], a[1] + b[1]
    return best, lines, min(a[2], b[2])


def review_level_of(cell: Cell, review: ReviewCell | None) -> DisclosureLevel:
    """What an approval may release: the best review line's level, capped by the deny lines (never by
    review lines); NONE unless that is more than the cell grants without review."""
    if review is None:
        return DisclosureLevel.NONE
    level = min(review[0], review[2] - 1)
    return DisclosureLevel(level) if level > level_of(cell) else DisclosureLevel.NONE


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
    review_cells: Mapping[Key, ReviewCell]
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
    reviews: dict[Key, ReviewCell] = {}
    # Without an approval a review line forbids its level like a deny (Casbin sees it as one); the
    # review cells keep apart what an approval may release and the real denies that still cap it.
    for line in lines:
        key = (line.role, line.purpose, line.category)
        level = int(line.level)
        if line.effect is Effect.ALLOW:
            cell: Cell = (level, (line,), _NO_DENY, ())
        else:
            cell = (0, (), level, (line,))
            found: ReviewCell = (level, (line,), _NO_DENY) if line.effect is Effect.REVIEW else (0, (), level)
            reviews[key] = _merge_review(reviews[key], found) if key in reviews else found
        stage[key] = _merge(stage[key], cell) if key in stage else cell
    below = (cat_below, purpose_below, role_below)
    stage = _push_down(stage, below, _merge)
    reviews = _push_down(reviews, below, _merge_review)

    interned: dict[tuple[int, tuple[str, ...], tuple[str, ...], int, tuple[str, ...]], Decision] = {}
    # Each line's "file:line" text, made once: a line reaches many cells, and Location objects per cell
    # and sort were a tenth of building a 20,000-line snapshot. Sorting by (file, line) is Location order.
    wheres: dict[int, str] = {}

    def where(line: PolicyLine) -> str:
        found = wheres.get(id(line))
        if found is None:
            found = wheres[id(line)] = f"{line.file}:{line.line}"
        return found

    def decision(cell: Cell, review: ReviewCell | None) -> Decision:
        level = level_of(cell)
        allowed = tuple(map(where, sorted(cell[1], key=_order))) if cell[0] else ()
        capped = cell[2] <= cell[0]
        denied = (
            tuple(where(ln) for ln in sorted(cell[3], key=_order) if ln.effect is Effect.DENY) if capped else ()
        )
        after_review = review_level_of(cell, review)
        reviewed = tuple(map(where, sorted(review[1], key=_order))) if review and after_review else ()
        key = (int(level), allowed, denied, int(after_review), reviewed)
        found = interned.get(key)
        if found is None:
            found = interned[key] = (
                Decision(level, allowed, denied, after_review, reviewed)
                if (allowed or denied or reviewed)
                else (NOTHING if level is DisclosureLevel.NONE else Decision(level))
            )
        return found

    decisions = {key: decision(cell, reviews.get(key)) for key, cell in stage.items()}
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
        review_cells=MappingProxyType(reviews),
        by_query=MappingProxyType(by_query),
        role_ancestors=MappingProxyType(role_anc),
        purpose_ancestors=MappingProxyType(purpose_anc),
        category_ancestors=MappingProxyType(cat_anc),
        role_descendants=MappingProxyType(role_below),
        purpose_descendants=MappingProxyType(purpose_below),
        category_descendants=MappingProxyType(cat_below),
    )


def _push_down(
    stage: Mapping[Key, T], below: tuple[Mapping[str, tuple[str, ...]], ...], merge: Callable[[T, T], T]
) -> dict[Key, T]:
    """Copy each cell to every (role, purpose, category) at or below it, category then purpose then role axis."""
    result = dict(stage)
    for axis, names_below in zip((2, 1, 0), below, strict=True):
        pushed: dict[Key, T] = {}
        for key, cell in result.items():
            for name in names_below.get(key[axis], ()):
                target: Key = (
                    (name, key[1], key[2])
                    if axis == 0
                    else ((key[0], name, key[2]) if axis == 1 else (key[0], key[1], name))
                )
                existing = pushed.get(target)
                pushed[target] = cell if existing is None else merge(existing, cell)
        result = pushed
    return result


def _order(line: PolicyLine) -> tuple[str, int]:
    return line.file, line.line  # the order of `line.location`, without making one
