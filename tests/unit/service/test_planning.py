"""Planning is a pure function of the policy view; the fan-out follows the record holders it declares."""

from __future__ import annotations

import shutil
from pathlib import Path

from service_helpers import make_service

from gateway.domain import AgencyContact, DisclosureLevel, SubjectIdentifiers
from gateway.keyring import Keyring
from gateway.policy import PolicyHolder
from gateway.service.planning import PlanMemo, Routing, plan_request, record_holders
from gateway.service.ports import LookupCommand, LookupResult
from gateway.service.query import Caller, QueryCommand
from gateway.testing import FixedClock

RESEARCHER = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "r.1", "mash_researcher_police")
SCREENING = QueryCommand("req-p", SubjectIdentifiers(nhs_number="9990000018"), "safeguarding_screening",
                         "dpa_2018_sch1_para18", "mash-isa-2026", "MASH-1")


def nobody(agency: str, command: LookupCommand) -> LookupResult:
    return LookupResult(agency, (), AgencyContact(agency))


def test_record_holders_are_the_declared_agencies_that_hold_records_in_declared_order(holder: PolicyHolder) -> None:
    """The hub asks but holds nothing, so it is never a record holder; the others keep their declared order."""
    declared = list(holder.current.agencies)
    assert record_holders(holder.current) == tuple(a for a in declared if a != "hub")


def test_a_plan_can_be_narrowed_to_chosen_agencies(holder: PolicyHolder) -> None:
    """Given agencies (as a locator would choose them), only those are planned, in the order given."""
    plans = plan_request(holder.current, role="mash_researcher_police", purpose="safeguarding_screening",
                         agreement="mash-isa-2026", categories=(), requester="police", agencies=("csc", "police"))
    assert [p.agency for p in plans] == ["csc", "police"]
    assert all(p.level > DisclosureLevel.NONE for p in plans)


async def test_the_fan_out_follows_the_vocabularys_order_not_a_fixed_list(
    tmp_path: Path, policy_dir: Path, keys: dict[str, Keyring]
) -> None:
    """Declaring probation first makes it the first answer; nothing outside the vocabulary is asked."""
    copy = tmp_path / "policies"
    shutil.copytree(policy_dir, copy)
    agencies = copy / "vocabulary" / "agencies.yaml"
    text = agencies.read_text()
    probation = "  probation:\n    title: Probation\n    holds_records: true\n"
    assert probation in text
    agencies.write_text(text.replace(probation, "").replace("agencies:\n", "agencies:\n" + probation))
    reordered = PolicyHolder.from_directory(copy, clock=FixedClock())
    service, transport, _ = make_service(reordered, keys, nobody)
    result = await service.query(RESEARCHER, SCREENING, timeout=5)
    assert [o.agency for o in result.answers] == ["probation", "police", "health", "csc", "education", "housing",
                                                  "asc"]
    assert [a for a, _, _ in transport.calls] == [o.agency for o in result.answers]


def test_remembered_plans_equal_fresh_ones_and_routing_applies_per_request(holder: PolicyHolder) -> None:
    """The query path's memo gives exactly what planning gives, for each combination it is asked; the
    locator's routing, which differs per subject, is applied to every request afresh."""
    memo = PlanMemo()
    asks = [
        dict(role="mash_researcher_police", purpose="safeguarding_screening", agreement="mash-isa-2026",
             categories=(), requester="police"),
        dict(role="mash_researcher_police", purpose="safeguarding_screening", agreement="mash-isa-2026",
             categories=("health",), requester="police"),
        dict(role="mash_researcher_health", purpose="safeguarding_screening", agreement="mash-isa-2026",
             categories=(), requester="health"),
    ]
    for _ in range(2):
        for ask in asks:
            assert memo.plan(holder.current, **ask) == plan_request(holder.current, **ask)  # type: ignore[arg-type]
    only_police = Routing(enrolled=frozenset({"police", "health"}), matched=frozenset({"police"}),
                          hold={"health": 0.25})
    routed = {p.agency: p for p in memo.plan(holder.current, **asks[0], routing=only_police)}  # type: ignore[arg-type]
    assert routed["police"].asked
    assert not routed["health"].asked
    assert routed["health"].hold == 0.25
    unrouted = memo.plan(holder.current, **asks[0])  # type: ignore[arg-type]
    assert all(p.asked for p in unrouted), "one request's routing must not stick to the remembered plans"


def test_a_new_policy_snapshot_is_planned_afresh(tmp_path: Path, policy_dir: Path, holder: PolicyHolder) -> None:
    """After a reload the memo plans under the new snapshot: nothing planned under the old one is reused."""
    copy = tmp_path / "policies"
    shutil.copytree(policy_dir, copy)
    agencies = copy / "vocabulary" / "agencies.yaml"
    probation = "  probation:\n    title: Probation\n    holds_records: true\n"
    agencies.write_text(agencies.read_text().replace(probation, "").replace("agencies:\n", "agencies:\n" + probation))
    reordered = PolicyHolder.from_directory(copy, clock=FixedClock())
    memo = PlanMemo()
    ask = dict(role="mash_researcher_police", purpose="safeguarding_screening", agreement="mash-isa-2026",
               categories=(), requester="police")
    assert memo.plan(holder.current, **ask)[0].agency == "police"  # type: ignore[arg-type]
    assert memo.plan(reordered.current, **ask)[0].agency == "probation"  # type: ignore[arg-type]
