"""Planning a request: what each record-holding agency may disclose, and whether its node is asked at all,
as a pure function of the policy view and the locator's routing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from gateway.domain import DisclosureLevel, SubjectIdentifiers
from gateway.service.ports import PolicyView


@dataclass(frozen=True, slots=True)
class AgencyPlan:
    """What a request may learn from one agency: content of some categories, existence for the rest."""

    agency: str
    content: Mapping[str, DisclosureLevel]  # record category → PERTINENT or FULL, within the requested categories
    existence: tuple[str, ...]  # every other category the caller may at least know exists
    rules: tuple[str, ...]
    requested: bool = True  # False when the request's categories do not touch this agency
    # Requested categories a reviewer of this agency may release more of (→ the level an approval may
    # release); nothing of them beyond `content`/`existence` is fetched until a reviewer approves.
    review: Mapping[str, DisclosureLevel] = field(default_factory=dict)
    # False when the locator shows the agency's node does not hold the subject: the node is not asked and the
    # answer is NO_MATCH, exactly as if it had been asked, released no sooner than `hold` seconds.
    asked: bool = True
    hold: float = 0.0
    # Why nothing is asked of this agency although it is a party, when the areas rule refuses it (the
    # requester and the agency serve different areas and the agreement is not cross-area); "" otherwise.
    refusal: str = ""

    @property
    def level(self) -> DisclosureLevel:
        if self.content:
            return max(self.content.values())
        return DisclosureLevel.EXISTS if self.existence else DisclosureLevel.NONE


@dataclass(frozen=True, slots=True)
class Routing:
    """What the locator knows of a subject: the agencies whose enrolment is complete, and those among them
    (or any other) whose enrolled tokens matched the subject. Agencies not enrolled are asked as before."""

    enrolled: frozenset[str] = frozenset()
    matched: frozenset[str] = frozenset()
    # Seconds to hold a skipped agency's answer (a recent lookup time of its node), so a caller cannot tell
    # "not asked" from "asked, nothing you may see" by timing.
    hold: Mapping[str, float] = field(default_factory=dict)

    def asks(self, agency: str) -> bool:
        return agency not in self.enrolled or agency in self.matched


class Router(Protocol):
    """Finds which agencies hold a subject (the locator); None means ask every agency."""

    async def route(self, subject: SubjectIdentifiers) -> Routing | None: ...


def route_plans(plans: Sequence[AgencyPlan], routing: Routing | None) -> tuple[AgencyPlan, ...]:
    """The plans with the locator's node selection applied; without routing every node is asked."""
    if routing is None:
        return tuple(plans)
    return tuple(p if routing.asks(p.agency) else replace(p, asked=False, hold=routing.hold.get(p.agency, 0.0))
                 for p in plans)


def record_holders(policy: PolicyView) -> tuple[str, ...]:
    """The agencies that answer hub questions, in the order the policy vocabulary declares them."""
    return tuple(name for name, agency in policy.agencies.items() if agency.holds_records)


def plan_request(
    policy: PolicyView,
    *,
    role: str,
    purpose: str,
    agreement: str,
    categories: Sequence[str],
    requester: str,
    agencies: Sequence[str] | None = None,
    routing: Routing | None = None,
) -> tuple[AgencyPlan, ...]:
    """One plan per agency (every record holder unless `agencies` narrows it): policy levels capped by the
    agreement, content only for the requested categories (all of them when `categories` is empty).

    Existence is asked about every category the caller may know of at an agency the request touches,
    never only the requested ones: otherwise a request for a single protected category (sexual
    health, a refuge) would turn "known to health" into "known to the sexual-health service".

    With `routing`, an agency whose node enrolled completely in the locator and holds no matching token
    is planned as not asked (see `route_plans`).

    `requester` is the calling certificate's agency (required, so no caller can skip the areas rule by
    omission): an agency serving another area than the requester's is planned like a non-party (nothing at
    all is asked of it) unless the agreement is cross-area.
    """
    cited = policy.agreements[agreement]
    # A category sits under its own agency's root only (the vocabulary enforces it), so each agency's
    # categories are compared with the agreement's categories of that agency alone: linear in the
    # partnership's size, not quadratic, when an agreement covers many agencies.
    covered: dict[str, list[str]] = {}
    for c in cited.categories:
        covered.setdefault(c.split(".", 1)[0], []).append(c)
    parties = frozenset(cited.parties)
    decisions = policy.decisions_for(role, purpose)
    plans = []
    for agency in record_holders(policy) if agencies is None else agencies:
        cells = decisions.get(agency, {})
        touched = not categories or any(
            policy.category_within(c, wanted) or policy.category_within(wanted, c)
            for c in cells for wanted in categories
        )
        allowed: dict[str, DisclosureLevel] = {}
        review: dict[str, DisclosureLevel] = {}
        rules: list[str] = []
        refusal = policy.area_refusal(agreement, requester, agency) if agency in parties else ""
        if touched and agency in parties and not refusal:
            own = covered.get(agency, ())
            for category, decision in cells.items():
                if not any(policy.category_within(category, c) for c in own):
                    continue
                if decision.review > decision.level and (
                    not categories or any(policy.category_within(category, w) for w in categories)
                ):
                    review[category] = decision.review
                    rules += [f"{category}: {r}" for r in decision.reviewed_by]
                if decision.level <= DisclosureLevel.NONE:
                    continue
                allowed[category] = decision.level
                rules += [f"{category}: {r}" for r in (*decision.allowed_by, *decision.denied_by)]
        content = {
            c: level for c, level in allowed.items()
            if level >= DisclosureLevel.PERTINENT
            and (not categories or any(policy.category_within(c, w) for w in categories))
        }
        existence = tuple(c for c in allowed if c not in content)
        plans.append(AgencyPlan(agency, content, existence, tuple(rules), requested=touched, review=review,
                                refusal=refusal if touched else ""))
    return route_plans(plans, routing)


class PlanMemo:
    """`plan_request` for the hub query path, remembered per policy snapshot.

    Planning is a pure function of the snapshot and (role, purpose, agreement, categories, requester), and
    a busy gateway asks the same few combinations again and again; the locator's routing, which differs
    per subject, is applied afresh to every request (`route_plans`). The memo holds only the snapshot it
    was last asked about: a new snapshot (a policy reload) starts it empty, so no plan outlives its policy.
    At most `size` combinations are kept; beyond that the memo starts again.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._policy: PolicyView | None = None
        self._plans: dict[tuple[str, str, str, tuple[str, ...], str], tuple[AgencyPlan, ...]] = {}

    def plan(self, policy: PolicyView, *, role: str, purpose: str, agreement: str, categories: Sequence[str],
             requester: str, routing: Routing | None = None) -> tuple[AgencyPlan, ...]:
        if policy is not self._policy:
            self._policy, self._plans = policy, {}
        key = (role, purpose, agreement, tuple(categories), requester)
        plans = self._plans.get(key)
        if plans is None:
            if len(self._plans) >= self._size:
                self._plans.clear()
            plans = self._plans[key] = plan_request(policy, role=role, purpose=purpose, agreement=agreement,
                                                    categories=categories, requester=requester)
        return route_plans(plans, routing)
