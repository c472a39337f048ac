"""The decision index agrees with casbin.Enforcer.enforce on random policies with hierarchies and denies."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.domain import DisclosureLevel
from gateway.policy.casbin_model import CANONICAL_MODEL, build_enforcer, enforce_level
from gateway.policy.index import build_index
from gateway.policy.rules import ANY, Effect, PolicyLine
from gateway.policy.vocabulary import Agency, Purpose, RecordCategory, Role, Vocabulary

MODEL_TEXT = """
[request_definition]
r = {r}
[policy_definition]
p = {p}
[role_definition]
g = _, _
g2 = _, _
g3 = _, _
g4 = _, _
[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
[matchers]
m = {m}
""".format(
    r=CANONICAL_MODEL[("r", "r")],
    p=CANONICAL_MODEL[("p", "p")],
    m=CANONICAL_MODEL[("m", "m")].replace("p_", "p.").replace("r_", "r."),
)
LEVELS = [DisclosureLevel.EXISTS, DisclosureLevel.PERTINENT, DisclosureLevel.FULL]


@dataclass(frozen=True)
class RandomPolicy:
    vocab: Vocabulary
    lines: tuple[PolicyLine, ...]


@st.composite
def random_policies(draw: st.DrawFn) -> RandomPolicy:
    """Roles in nested groups, a purpose tree, two agencies with nested categories, and mixed lines."""
    n_groups = draw(st.integers(1, 3))
    groups = [f"grp{i}" for i in range(n_groups)]
    roles: dict[str, Role] = {}
    for i, name in enumerate(groups):
        above = groups[i + 1 :]
        parents = draw(st.lists(st.sampled_from(above), max_size=2, unique=True)) if above else []
        roles[name] = Role(name, "", False, "group", tuple(parents), group=True)
    for i in range(draw(st.integers(1, 5))):
        parents = draw(st.lists(st.sampled_from(groups), max_size=2, unique=True))
        roles[f"role{i}"] = Role(f"role{i}", "a0", False, "role", tuple(parents))

    purposes: dict[str, Purpose] = {}
    for i in range(draw(st.integers(1, 5))):
        parent = draw(st.sampled_from(["", *list(purposes)]))
        purposes[f"pur{i}"] = Purpose(f"pur{i}", "purpose", parent)

    agencies = {"a0": Agency("a0", "A0", True), "a1": Agency("a1", "A1", True)}
    categories: dict[str, RecordCategory] = {
        a: RecordCategory(a, a, "", "root", group=True) for a in agencies
    }
    for agency in agencies:
        for i in range(draw(st.integers(1, 4))):
            same = [c for c in categories if categories[c].agency == agency]
            parent = draw(st.sampled_from(same))
            categories[f"{agency}.c{i}"] = RecordCategory(f"{agency}.c{i}", agency, parent, "category")

    role_names = list(roles)
    purpose_names = list(purposes)
    lines: list[PolicyLine] = []
    seen: set[tuple[str, ...]] = set()
    for number in range(1, draw(st.integers(0, 14)) + 1):
        effect = draw(st.sampled_from([Effect.ALLOW, Effect.ALLOW, Effect.DENY, Effect.REVIEW]))
        wildcard_ok = effect is Effect.DENY
        role = draw(st.sampled_from(role_names + ([ANY] if wildcard_ok else [])))
        purpose = draw(st.sampled_from(purpose_names + ([ANY] if wildcard_ok else [])))
        category = draw(st.sampled_from(list(categories)))
        line = PolicyLine(
            f"agencies/{categories[category].agency}.csv",
            number,
            role,
            categories[category].agency,
            category,
            purpose,
            draw(st.sampled_from(LEVELS)),
            effect,
        )
        if line.casbin_row() not in seen:
            seen.add(line.casbin_row())
            lines.append(line)
    vocab = Vocabulary(
        agencies=MappingProxyType(agencies),
        roles=MappingProxyType(roles),
        purposes=MappingProxyType(purposes),
        legal_bases=MappingProxyType({}),
        record_categories=MappingProxyType(categories),
        field_categories=MappingProxyType({}),
        agreements=MappingProxyType({}),
        bindings=MappingProxyType({}),
        declared_at=MappingProxyType({}),
    )
    return RandomPolicy(vocab, tuple(lines))


def _enforcer(policy: RandomPolicy):  # type: ignore[no-untyped-def]
    vocab = policy.vocab
    return build_enforcer(
        MODEL_TEXT,
        (ln.enforcer_row() for ln in policy.lines),
        [(n, p) for n, r in vocab.roles.items() for p in r.member_of],
        [(n, p.parent) for n, p in vocab.purposes.items() if p.parent],
        [(n, c.parent) for n, c in vocab.record_categories.items() if c.parent],
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_policies())
def test_index_matches_casbin_on_every_cell(policy: RandomPolicy) -> None:
    """For every declared role, purpose and category, the index level is the highest enforce() allows."""
    index = build_index(policy.vocab, policy.lines)
    enforcer = _enforcer(policy)
    for role in policy.vocab.roles:
        for purpose in policy.vocab.purposes:
            for category, info in policy.vocab.record_categories.items():
                want = enforce_level(enforcer, role, purpose, info.agency, category)
                decision = index.decisions.get((role, purpose, category))
                have = decision.level if decision is not None else DisclosureLevel.NONE
                assert have is want, (role, purpose, category, [ln.text() for ln in policy.lines])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_policies(), st.data())
def test_deciding_lines_are_the_matching_extremes(policy: RandomPolicy, data: st.DataObject) -> None:
    """allowed_by: the matching allows at the top allow level; denied_by: the lowest denies that capped."""
    index = build_index(policy.vocab, policy.lines)
    role = data.draw(st.sampled_from(list(policy.vocab.roles)))
    purpose = data.draw(st.sampled_from(list(policy.vocab.purposes)))
    category = data.draw(st.sampled_from(list(policy.vocab.record_categories)))
    role_up = index.role_ancestors[role] | {ANY}
    purpose_up = index.purpose_ancestors[purpose] | {ANY}
    cat_up = index.category_ancestors[category]
    matching = [
        ln for ln in policy.lines if ln.role in role_up and ln.purpose in purpose_up and ln.category in cat_up
    ]
    allows = [ln for ln in matching if ln.effect is Effect.ALLOW]
    denies = [ln for ln in matching if ln.effect is Effect.DENY]
    caps = [ln for ln in matching if ln.effect is not Effect.ALLOW]  # a review line caps until approved
    top = max((ln.level for ln in allows), default=DisclosureLevel.NONE)
    low = min((ln.level for ln in caps), default=None)
    decision = index.decisions.get((role, purpose, category))
    allowed_by = set(decision.allowed_by) if decision else set()
    denied_by = set(decision.denied_by) if decision else set()
    assert allowed_by == {ln.where for ln in allows if ln.level == top}
    capped = low is not None and low <= top
    assert denied_by == ({ln.where for ln in denies if ln.level == low} if capped else set())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_policies(), st.data())
def test_mismatched_or_unknown_requests_are_refused_by_both(
    policy: RandomPolicy, data: st.DataObject
) -> None:
    """A category asked of another agency, or an undeclared name, is NONE for Casbin and the index alike."""
    index = build_index(policy.vocab, policy.lines)
    enforcer = _enforcer(policy)
    role = data.draw(st.sampled_from([*policy.vocab.roles, "stranger"]))
    purpose = data.draw(st.sampled_from([*policy.vocab.purposes, "whim"]))
    category = data.draw(st.sampled_from([*policy.vocab.record_categories, "a0.unknown"]))
    owner = (
        policy.vocab.record_categories[category].agency
        if category in policy.vocab.record_categories
        else "a0"
    )
    other = "a1" if owner == "a0" else "a0"
    assert enforce_level(enforcer, role, purpose, other, category) is DisclosureLevel.NONE
    want = enforce_level(enforcer, role, purpose, owner, category)
    decision = index.decisions.get((role, purpose, category))
    assert (decision.level if decision else DisclosureLevel.NONE) is want


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_policies(), st.data())
def test_review_offers_the_best_review_line_capped_by_denies_only(policy: RandomPolicy, data: st.DataObject) -> None:
    """After review a cell may reach its best matching review level, capped by deny lines, and only above its grant."""
    index = build_index(policy.vocab, policy.lines)
    role = data.draw(st.sampled_from(list(policy.vocab.roles)))
    purpose = data.draw(st.sampled_from(list(policy.vocab.purposes)))
    category = data.draw(st.sampled_from(list(policy.vocab.record_categories)))
    matching = [
        ln for ln in policy.lines
        if ln.role in index.role_ancestors[role] | {ANY} and ln.purpose in index.purpose_ancestors[purpose] | {ANY}
        and ln.category in index.category_ancestors[category]
    ]
    reviews = [ln for ln in matching if ln.effect is Effect.REVIEW]
    deny = min((int(ln.level) for ln in matching if ln.effect is Effect.DENY), default=4)
    best = max((int(ln.level) for ln in reviews), default=0)
    decision = index.decisions.get((role, purpose, category))
    level = decision.level if decision else DisclosureLevel.NONE
    offered = min(best, deny - 1)
    want = DisclosureLevel(offered) if offered > level else DisclosureLevel.NONE
    assert (decision.review if decision else DisclosureLevel.NONE) is want
    want_lines = {ln.where for ln in reviews if ln.level == best} if want else set()
    assert set(decision.reviewed_by if decision else ()) == want_lines
