"""The demo's pan-London step: a generated three-borough partnership where the locator routes a question only
to the nodes that know the child, and a borough's MASH reaches another borough only under the pan-London
agreement.

It runs on its own partnership (its own policy, PKI, state and audit log), generated from the shipped
policy by `agency_stubs.london_policy` with the borough world of `agency_stubs.london`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agency_stubs.london import build_london
from agency_stubs.london_policy import PAN_LONDON_AGREEMENT, generate_partnership
from gateway.demo.partnership import Partnership
from gateway.demo.story import LEVEL, STATUS, StoryReport
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb

BOROUGHS = 3
PEOPLE_PER_BOROUGH = 100
S47: dict[str, Any] = {"purpose": "s47_enquiry", "legal_basis": "children_act_1989_s47"}


def _table(title: str, answers: Iterable[hub_pb.AgencyAnswer], asked: set[str]) -> Table:
    """The answers other than NO_MATCH (which every node that does not know the child gives), one row each."""
    table = Table(title=title, title_justify="left")
    for column in ("agency", "node asked", "status", "level", "records"):
        table.add_column(column)
    quiet = 0
    for answer in answers:
        if answer.status == hub_pb.ANSWER_STATUS_NO_MATCH and answer.agency not in asked:
            quiet += 1
            continue
        table.add_row(answer.agency, "yes" if answer.agency in asked else "no", STATUS[answer.status],
                      LEVEL[answer.level], str(len(answer.records)))
    table.caption = f"and {quiet} agencies answering NO_MATCH: their nodes were not asked (no locator token matched)"
    return table


async def play_pan_london(state_dir: Path, console: Console, report: StoryReport) -> None:
    """Generate the partnership under `state_dir`, run it, and play the step; checks go to `report`."""
    step = "pan-London"
    console.rule(f"[bold]13. Pan-London: {BOROUGHS} boroughs, and a locator that asks only who knows the child")
    generated = generate_partnership(state_dir / "policies", BOROUGHS, pki=state_dir / "pki")
    world = build_london(boroughs=BOROUGHS, people_per_borough=PEOPLE_PER_BOROUGH)
    async with Partnership(state_dir, generated.policy_dir, world=world) as partnership:
        await partnership.enrol_in_locator()
        console.print(f"Generated {generated.policy_dir}: boroughs {', '.join(generated.areas)}; "
                      f"{len(partnership.nodes)} agency nodes (each borough's social care, education, housing "
                      "and youth offending service, "
                      "and London-wide police, health, probation and adult social care), each with its own "
                      "certificate, all enrolled in the gateway's locator.")
        person, agencies = next(((p, a) for p, a in world.known_in_several_boroughs()
                                 if len(a) == 2 and all(x.startswith("csc_") for x in a)),
                                world.known_in_several_boroughs()[0])
        home, other = agencies[0], agencies[-1]
        mash = world.datasets[home].area
        subject = {"nhs_number": person.nhs_number, "given_name": person.given_name,
                   "family_name": person.family_name, "date_of_birth": person.date_of_birth.isoformat()}
        console.print(f"A child known to {home} and, after a move, to {other}. "
                      f"The {mash} MASH manager asks (s47 enquiry).")
        hub = partnership.client(f"hub_{mash}", "mash-console", user=f"mash.manager.{mash}", role="mash_manager")

        partnership.lookups.clear()
        own = await hub.query(subject=subject, agreement=generated.agreement(mash), case_reference="MASH-LDN-0001",
                              **S47)
        asked = set(partnership.lookups)
        console.print(_table(f"Under {generated.agreement(mash)} (the borough's own agreement)", own.answers, asked))
        refused = next(a for a in own.answers if a.agency == other)
        console.print(f"→ {other}: {STATUS[refused.status]} — {refused.detail}: it is not a party to "
                      f"{generated.agreement(mash)}, and a borough agreement is not a cross-area agreement.")
        report.expect(step, f"under its own borough agreement the MASH does not reach {other}: withheld, its node "
                            "never asked", refused.status == hub_pb.ANSWER_STATUS_WITHHELD and other not in asked)

        partnership.lookups.clear()
        pan = await hub.query(subject=subject, agreement=PAN_LONDON_AGREEMENT, case_reference="MASH-LDN-0002", **S47)
        asked = set(partnership.lookups)
        console.print(_table(f"Under {PAN_LONDON_AGREEMENT} (cross-borough: screening and child protection)",
                             pan.answers, asked))
        matched = {a.agency for a in pan.answers if a.status == hub_pb.ANSWER_STATUS_MATCH}
        console.print(f"→ {len(asked)} of {len(partnership.nodes)} nodes heard of the question "
                      f"({', '.join(sorted(asked))}), counted at every node.")
        report.expect(step, "under the pan-London agreement both boroughs answer with records",
                      {home, other} <= matched
                      and all(a.records for a in pan.answers if a.agency in (home, other)))
        report.expect(step, "the locator asks only the nodes that know the child (counted at every node)",
                      asked == matched and len(asked) < len(partnership.nodes))
