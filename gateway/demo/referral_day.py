"""The seed's MASH day on the referral workflow: notifications in, screened, rated, researched, decided, routed.

It runs on its own partnership (its own state directory and audit log) whose clock can jump forward, so an
Amber referral can be shown breaching its deadline without waiting a working day.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.api.tls import client_credentials
from gateway.audit import decode_entry, load_public_keys, verify_store
from gateway.demo.partnership import Partnership
from gateway.demo.story import StoryReport, personal_data_in
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2 as ref_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2_grpc as ref_grpc

STATE = {v.number: v.name.removeprefix("REFERRAL_STATE_") for v in ref_pb.ReferralState.DESCRIPTOR.values}
EDITH = {"nhs_number": "9990017018", "given_name": "Edith", "family_name": "Marlowe", "date_of_birth": "1938-02-11"}
"""An adult at risk in adult social care's seeded records (agency_stubs/records/asc.yaml), her case open."""


@dataclass
class OffsetClock:
    """The real clock plus an offset the demo can move forward (to show a deadline passing)."""

    offset: timedelta = field(default_factory=timedelta)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class _Desk:
    """One agency system's ReferralService stub, acting for one practitioner."""

    def __init__(self, partnership: Partnership, agency: str, system: str, user: str, role: str) -> None:
        channel = partnership.channel(client_credentials(partnership.pki, agency, system))
        self.stub = ref_grpc.ReferralServiceStub(channel)
        self.metadata = (("x-mash-user", user), ("x-mash-role", role))

    async def __call__(self, rpc: str, request: Any) -> Any:
        return await getattr(self.stub, rpc)(request, metadata=self.metadata, timeout=10)

    async def notices(self, count: int) -> list[ref_pb.WatchNotificationsResponse]:
        """Take `count` notices (resuming after the last acknowledged one), then acknowledge them."""
        call = self.stub.WatchNotifications(ref_pb.WatchNotificationsRequest(), metadata=self.metadata, timeout=10)
        taken = []
        async for notice in call:
            taken.append(notice)
            if len(taken) == count:
                break
        call.cancel()
        if taken:
            await self("AcknowledgeNotifications",
                       ref_pb.AcknowledgeNotificationsRequest(up_to_sequence=taken[-1].sequence))
        return taken


def _referrals_table(title: str, referrals: list[ref_pb.Referral]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("referral", "state", "screening", "rating", "due (UTC)", "overdue", "team", "answered"):
        table.add_column(column)
    for r in referrals:
        due = r.due.ToDatetime(tzinfo=UTC).strftime("%a %H:%M") if r.HasField("due") else "-"
        table.add_row(r.referral_id[:12] + "…", STATE[r.state], r.screening or "-", r.rating or "-", due,
                      "yes" if r.overdue else "", r.team or "-", ", ".join(r.agencies_answered) or "-")
    return table


def _notification(member: Any, concern: str, category: str) -> ref_pb.SubmitReferralRequest:
    subject = common_pb2.SubjectIdentifiers(nhs_number=member.nhs_number, given_name=member.given_name,
                                            family_name=member.family_name, date_of_birth=member.date_of_birth)
    return ref_pb.SubmitReferralRequest(mash="children", subject=subject, concern=concern, categories=[category],
                                        borough="hackney")


async def play_referral_day(state_dir: Path, policy_dir: Path, console: Console, report: StoryReport) -> None:
    """Play the day on a fresh partnership under `state_dir`; every step records its checks in `report`."""
    from agency_stubs import cast

    clock = OffsetClock()
    async with Partnership(state_dir, policy_dir, clock=clock) as partnership:
        police = _Desk(partnership, "police", "case-system", "pc.4471", "police_officer")
        manager = _Desk(partnership, "hub", "mash-console", "mash.manager.1", "mash_manager")
        csc = _Desk(partnership, "csc", "case-system", "case-system", "social_worker")
        step = "referrals"

        console.rule("[bold]7. The MASH day: a police notification, screened as not open")
        first = (await police("SubmitReferral", _notification(
            cast.NOAH_FENWICK, "Officers attended a disturbance; the child was found alone at night",
            "neglect"))).referral
        rid = first.referral_id
        console.print(_referrals_table("SubmitReferral (police)", [first]))
        report.expect(step, "a child not open to children's services is screened and left for the MASH",
                      first.state == ref_pb.REFERRAL_STATE_SCREENED and first.screening == "NOT_OPEN")

        console.rule("[bold]8. Rated Red: research and decision within 4 working hours")
        rated = (await manager("RateReferral", ref_pb.RateReferralRequest(referral_id=rid, rating="red"))).referral
        console.print(_referrals_table("RateReferral (MASH manager)", [rated]))
        report.expect(step, "a Red rating sets research and decision deadlines from workflow.yaml",
                      rated.HasField("research_due") and rated.HasField("decision_due"))

        researcher = partnership.client("police", "case-system", user="researcher.police.7",
                                        role="mash_researcher_police")
        research = await researcher.stream(
            subject={"nhs_number": cast.NOAH_FENWICK.nhs_number}, purpose="safeguarding_screening",
            legal_basis="dpa_2018_sch1_para18", agreement="mash-isa-2026", referral_id=rid)
        answered = {m.answer.agency for m in research
                    if m.answer.status in (hub_pb.ANSWER_STATUS_MATCH, hub_pb.ANSWER_STATUS_NO_MATCH)}
        await manager("CompleteResearch", ref_pb.CompleteResearchRequest(referral_id=rid))
        got = await manager("GetReferral", ref_pb.GetReferralRequest(referral_id=rid))
        console.print(_referrals_table("After research under the referral", [got.referral]))
        report.expect(step, "the researcher's query is linked: the referral shows which agencies answered",
                      set(got.referral.agencies_answered) == answered and len(answered) >= 5)
        report.expect(step, "research is complete within its Red deadline",
                      got.referral.research_completed_at.ToDatetime(tzinfo=UTC)
                      <= got.referral.research_due.ToDatetime(tzinfo=UTC))

        console.rule("[bold]9. Decided: s47 strategy discussion, routed with the pertinent information")
        decided = (await manager("DecideReferral", ref_pb.DecideReferralRequest(
            referral_id=rid, decision="s47_strategy_discussion", receiving_team="Assessment Team 1",
            reason="Child left alone at night with prior concerns; strategy discussion today"))).referral
        (notice,) = await csc.notices(1)
        package = await csc("GetPertinentInformation", ref_pb.GetPertinentInformationRequest(referral_id=rid))
        console.print(f"→ {STATE[decided.state]}; the social work system is told "
                      f"({ref_pb.NotificationKind.Name(notice.kind)} for {notice.referral_id[:12]}…, no content) "
                      f"and fetches its package: {sum(len(a.records) for a in package.answers)} record(s) "
                      "redacted for a social worker.")
        report.expect(step, "the decision notifies the receiving system with a reference only",
                      notice.kind == ref_pb.NOTIFICATION_KIND_DECISION and notice.referral_id == rid)
        report.expect(step, "the social worker's pertinent-information package arrives",
                      any(a.records for a in package.answers))

        console.rule("[bold]10. A child already open to children's services is routed automatically")
        started = time.monotonic()
        routed = (await police("SubmitReferral", _notification(
            cast.KAI_MERCER, "Domestic incident at the home address; the child was present",
            "domestic_abuse"))).referral
        (routed_notice,) = await csc.notices(1)
        took = time.monotonic() - started
        console.print(_referrals_table(f"SubmitReferral (police), routed in {took * 1000:.0f} ms", [routed]))
        report.expect(step, "an open case is routed to its allocated team within a second, automatically",
                      routed.state == ref_pb.REFERRAL_STATE_ROUTED and routed.routing == "automatic"
                      and routed_notice.referral_id == routed.referral_id and took < 1.0)

        console.rule("[bold]11. An Amber referral breaches its deadline")
        amber = (await police("SubmitReferral", _notification(
            cast.NOAH_FENWICK, "School reports repeated absence and hunger", "neglect"))).referral
        await manager("RateReferral", ref_pb.RateReferralRequest(referral_id=amber.referral_id, rating="amber"))
        clock.offset += timedelta(days=7)  # a week later, nobody has researched it
        assert partnership.gateway is not None
        assert partnership.gateway.deps.referrals is not None
        breaches = await partnership.gateway.deps.referrals.record_breaches()
        overdue = await manager("ListReferrals", ref_pb.ListReferralsRequest(overdue_only=True))
        console.print(_referrals_table(f"ListReferrals --overdue ({overdue.total})", list(overdue.referrals)))
        report.expect(step, "the Amber referral shows as overdue in the queue",
                      [r.referral_id for r in overdue.referrals] == [amber.referral_id])
        report.expect(step, "the breach is audited", breaches == 1)

        console.rule("[bold]12. The adults' MASH: an adult at risk open to adult social care goes to her team")
        asc = _Desk(partnership, "asc", "case-system", "case-system", "asc_social_worker")
        adult = (await police("SubmitReferral", ref_pb.SubmitReferralRequest(
            mash="adults", subject=common_pb2.SubjectIdentifiers(**EDITH), borough="hackney",
            concern="Bank reports large cash withdrawals by a relative", categories=["financial_abuse"]))).referral
        (asc_notice,) = await asc.notices(1)
        console.print(_referrals_table("SubmitReferral (police) to the adults' MASH", [adult]))
        report.expect(step, "an adult open to adult social care is routed to the allocated team automatically",
                      adult.state == ref_pb.REFERRAL_STATE_ROUTED and adult.routing == "automatic"
                      and asc_notice.referral_id == adult.referral_id)

        audit = partnership.gateway.deps.audit
        kinds: Counter[str] = Counter()
        blob: list[str] = []
        start = 0
        while rows := await audit.store.scan(start, 500):
            for row in rows:
                blob.append(row.data.decode("utf-8", errors="replace"))
                event = decode_entry(row.data).event
                if event.case_reference == rid:
                    kinds[event.kind.value] += 1
            start += len(rows)
        table = Table(title=f"Audit entries linked to {rid[:12]}…", title_justify="left")
        table.add_column("kind")
        table.add_column("entries", justify="right")
        for kind, count in sorted(kinds.items()):
            table.add_row(kind, str(count))
        console.print(table)
        report.expect(step, "the audit log links every step and every disclosure to the referral",
                      kinds["referral_transition"] >= 7 and kinds["disclosure"] >= 6)
        await audit.checkpoint()
        verdict = await verify_store(audit.store, load_public_keys(state_dir / "keys" / "checkpoint"))
        report.expect(step, "the referral day's audit log verifies", verdict.ok)
        people = (cast.KAI_MERCER, cast.NOAH_FENWICK)
        needles = [v for p in people for v in (p.nhs_number, p.given_name, p.family_name, p.date_of_birth)]
        needles += list(EDITH.values())
        report.expect(step, "its entries hold no names, NHS numbers or dates of birth, nor the concern text",
                      not personal_data_in("\n".join(blob), [*needles, "alone at night", "strategy discussion today"]))
