"""ReferralService over real mTLS: screening on arrival, the steps, bad input, and notices for receivers."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from hub_helpers import SCREENING, error_reason, field_violations, rich_status, subject

from agency_stubs.cast import KAI_ALLOCATED_TEAM, KAI_ALLOCATED_WORKER, KAI_MERCER, NOAH_FENWICK
from gateway.api.tls import client_credentials
from gateway.audit import decode_entry
from gateway.demo.partnership import Partnership
from gateway.domain import AuditEvent, AuditKind
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2 as ref_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2_grpc as ref_grpc

pytestmark = pytest.mark.slow


class Client:
    """One agency system's ReferralService stub, acting for one practitioner."""

    def __init__(self, partnership: Partnership, agency: str, system: str, user: str, role: str) -> None:
        channel = partnership.channel(client_credentials(partnership.pki, agency, system))
        self.stub = ref_grpc.ReferralServiceStub(channel)
        self.metadata = (("x-mash-user", user), ("x-mash-role", role))

    async def call(self, rpc: str, request: Any) -> Any:
        return await getattr(self.stub, rpc)(request, metadata=self.metadata, timeout=10)


@pytest.fixture
def police(partnership: Partnership) -> Client:
    return Client(partnership, "police", "case-system", "pc.1234", "police_officer")


@pytest.fixture
def manager(partnership: Partnership) -> Client:
    return Client(partnership, "hub", "mash-console", "mash.manager.1", "mash_manager")


@pytest.fixture
def csc(partnership: Partnership) -> Client:
    return Client(partnership, "csc", "case-system", "case-system", "social_worker")


def notification(member: Any = KAI_MERCER, **overrides: Any) -> ref_pb.SubmitReferralRequest:
    fields: dict[str, Any] = {"mash": "children", "subject": common_pb2.SubjectIdentifiers(**subject(member)),
                              "concern": "Police attended a domestic incident; the child was present",
                              "categories": ["domestic_abuse"], "borough": "hackney"}
    fields.update(overrides)
    return ref_pb.SubmitReferralRequest(**fields)


async def _take(stream: AsyncIterator[ref_pb.WatchNotificationsResponse], n: int) -> list[Any]:
    taken = []
    async for message in stream:
        taken.append(message)
        if len(taken) == n:
            break
    return taken


async def test_a_child_open_to_childrens_services_is_routed_within_a_second(police: Client, csc: Client) -> None:
    """Kai is open: routed automatically to the allocated team and worker; the receiver gets a reference only."""
    started = time.monotonic()
    response = await police.call("SubmitReferral", notification())
    assert time.monotonic() - started < 1.0
    referral = response.referral
    assert referral.state == ref_pb.REFERRAL_STATE_ROUTED
    assert (referral.team, referral.worker, referral.routing) == (KAI_ALLOCATED_TEAM, KAI_ALLOCATED_WORKER,
                                                                  "automatic")
    watch = csc.stub.WatchNotifications(ref_pb.WatchNotificationsRequest(), metadata=csc.metadata, timeout=10)
    (notice,) = await _take(watch, 1)
    watch.cancel()
    assert (notice.kind, notice.referral_id) == (ref_pb.NOTIFICATION_KIND_ROUTED, referral.referral_id)
    for secret in (KAI_MERCER.family_name, KAI_MERCER.nhs_number, "domestic incident"):
        assert secret not in str(notice)


async def test_a_child_not_open_is_left_for_the_mash_to_rate(police: Client) -> None:
    """Noah is not known to children's social care: screened, not routed."""
    referral = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral
    assert referral.state == ref_pb.REFERRAL_STATE_SCREENED
    assert referral.screening == "NOT_OPEN"
    assert not referral.team


async def test_an_unreachable_childrens_services_node_is_never_read_as_not_open(partnership: Partnership,
                                                                                police: Client) -> None:
    """With the CSC node down the referral waits for a person, marked UNAVAILABLE."""
    await partnership.stop_node("csc")
    referral = (await police.call("SubmitReferral", notification())).referral
    assert referral.state == ref_pb.REFERRAL_STATE_SCREENED
    assert referral.screening == "UNAVAILABLE"


async def test_an_invalid_step_is_failed_precondition_with_the_current_state(police: Client,
                                                                             manager: Client) -> None:
    """Closing a screened referral: FAILED_PRECONDITION, ErrorInfo INVALID_TRANSITION, current state SCREENED."""
    referral = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await manager.call("CloseReferral", ref_pb.CloseReferralRequest(referral_id=referral.referral_id))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "INVALID_TRANSITION"
    info = error_details_pb2.ErrorInfo()
    rich_status(caught.value).details[0].Unpack(info)
    assert info.metadata["current_state"] == "SCREENED"


async def test_bad_input_is_invalid_argument_with_field_violations_and_no_values(police: Client) -> None:
    """Every bad field is named; none of the values comes back."""
    bad = notification(mash="pets", subject=common_pb2.SubjectIdentifiers(nhs_number="99900012XX",
                                                                          given_name="Zebedee\x07"),
                       categories=["gossip"], concern="")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await police.call("SubmitReferral", bad)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(caught.value)
    assert {"mash", "subject.nhs_number", "subject.given_name", "categories[0]", "concern"} <= set(violations)
    text = str(caught.value.details()) + repr(violations)
    for value in ("pets", "99900012XX", "Zebedee", "gossip"):
        assert value not in text


async def test_unknown_state_numbers_in_a_filter_are_invalid(manager: Client) -> None:
    """A state number this gateway does not know is a field violation, not an empty queue."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await manager.call("ListReferrals", ref_pb.ListReferralsRequest(states=[ref_pb.REFERRAL_STATE_RATED, 99]))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"states[1]"}


async def test_a_police_officer_may_submit_but_not_rate(police: Client) -> None:
    """Rating is for MASH roles: PERMISSION_DENIED with reason WORKFLOW_PERMISSION."""
    referral = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await police.call("RateReferral", ref_pb.RateReferralRequest(referral_id=referral.referral_id, rating="red"))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "WORKFLOW_PERMISSION"


async def test_a_referral_is_rated_researched_decided_and_closed(police: Client, manager: Client) -> None:
    """The whole path over the wire; the history lists every step with who and in which role."""
    rid = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral.referral_id
    rated = (await manager.call("RateReferral", ref_pb.RateReferralRequest(referral_id=rid, rating="red"))).referral
    assert rated.state == ref_pb.REFERRAL_STATE_RATED
    assert rated.HasField("research_due")
    await manager.call("StartResearch", ref_pb.StartResearchRequest(referral_id=rid))
    await manager.call("CompleteResearch", ref_pb.CompleteResearchRequest(referral_id=rid))
    decided = (await manager.call("DecideReferral", ref_pb.DecideReferralRequest(
        referral_id=rid, decision="s47_strategy_discussion", reason="Strategy discussion needed today",
        receiving_team="Assessment Team 1"))).referral
    assert decided.state == ref_pb.REFERRAL_STATE_DECIDED
    await manager.call("CloseReferral", ref_pb.CloseReferralRequest(referral_id=rid))
    got = await manager.call("GetReferral", ref_pb.GetReferralRequest(referral_id=rid))
    assert got.referral.state == ref_pb.REFERRAL_STATE_CLOSED
    assert got.referral.decision_reason == "Strategy discussion needed today"
    assert [h.action for h in got.history] == ["submit", "screen", "rate", "start_research", "complete_research",
                                               "decide", "close"]
    assert got.history[2].role == "mash_manager"


async def test_the_queue_pages_with_a_total_and_hides_content_from_researchers(partnership: Partnership,
                                                                               police: Client,
                                                                               manager: Client) -> None:
    """Two pages, the total on each; a researcher sees the referral but not who it is about."""
    for _ in range(3):
        await police.call("SubmitReferral", notification(NOAH_FENWICK))
    first = await manager.call("ListReferrals", ref_pb.ListReferralsRequest(page_size=2))
    assert (len(first.referrals), first.total) == (2, 3)
    assert first.referrals[0].subject.family_name == NOAH_FENWICK.family_name
    second = await manager.call("ListReferrals", ref_pb.ListReferralsRequest(page_size=2,
                                                                             page_token=first.next_page_token))
    assert (len(second.referrals), second.next_page_token) == (1, "")
    researcher = Client(partnership, "police", "case-system", "r.7", "mash_researcher_police")
    seen = await researcher.call("ListReferrals", ref_pb.ListReferralsRequest(page_size=5))
    assert seen.total == 3
    assert all(not r.content_visible and not r.subject.family_name and not r.concern for r in seen.referrals)


async def test_an_offline_receiver_loses_nothing_and_resumes_after_its_acknowledgement(police: Client,
                                                                                       csc: Client) -> None:
    """Notices wait while nobody watches; after an ack a reconnect gets only newer ones, then live ones."""
    first = (await police.call("SubmitReferral", notification())).referral.referral_id
    second = (await police.call("SubmitReferral", notification())).referral.referral_id
    watch = csc.stub.WatchNotifications(ref_pb.WatchNotificationsRequest(), metadata=csc.metadata, timeout=10)
    got = await _take(watch, 2)
    watch.cancel()
    assert [n.referral_id for n in got] == [first, second]
    acked = await csc.call("AcknowledgeNotifications",
                           ref_pb.AcknowledgeNotificationsRequest(up_to_sequence=got[0].sequence))
    assert acked.acknowledged_sequence == got[0].sequence
    watch = csc.stub.WatchNotifications(ref_pb.WatchNotificationsRequest(), metadata=csc.metadata, timeout=10)
    resumed = asyncio.ensure_future(_take(watch, 2))
    await asyncio.sleep(0.2)
    third = (await police.call("SubmitReferral", notification())).referral.referral_id
    assert [n.referral_id for n in await asyncio.wait_for(resumed, 5)] == [second, third]
    watch.cancel()


async def test_a_researchers_query_is_linked_to_the_referral(partnership: Partnership, police: Client,
                                                            manager: Client) -> None:
    """A Query naming a rated referral starts its research and records the agencies that answered."""
    rid = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral.referral_id
    await manager.call("RateReferral", ref_pb.RateReferralRequest(referral_id=rid, rating="red"))
    researcher = partnership.client("police", "case-system", user="r.7", role="mash_researcher_police")
    answer = await researcher.query(subject=subject(NOAH_FENWICK), referral_id=rid,
                                    **{k: v for k, v in SCREENING.items() if k != "case_reference"})
    answered = sorted(a.agency for a in answer.answers
                      if a.status in (hub_pb.ANSWER_STATUS_MATCH, hub_pb.ANSWER_STATUS_NO_MATCH))
    got = (await manager.call("GetReferral", ref_pb.GetReferralRequest(referral_id=rid)))
    assert got.referral.state == ref_pb.REFERRAL_STATE_RESEARCHING
    assert list(got.referral.agencies_answered) == answered
    assert "health" in answered
    assert [h.action for h in got.history][-2:] == ["start_research", "record_answers"]
    health = Client(partnership, "health", "gp-system", "gp-system", "health_visitor")
    watch = health.stub.WatchNotifications(ref_pb.WatchNotificationsRequest(), metadata=health.metadata, timeout=10)
    (notice,) = await _take(watch, 1)
    watch.cancel()
    assert (notice.kind, notice.referral_id) == (ref_pb.NOTIFICATION_KIND_OWNER_NOTICE, rid)


@pytest.mark.parametrize("rpc", ["query", "stream"])
async def test_a_retried_linked_query_replays_without_recording_the_research_again(
        partnership: Partnership, police: Client, manager: Client, rpc: str) -> None:
    """The same request id retried replays the answer; the referral records the answers and health's owner
    notice once, not once per retry."""
    rid = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral.referral_id
    await manager.call("RateReferral", ref_pb.RateReferralRequest(referral_id=rid, rating="red"))
    researcher = partnership.client("police", "case-system", user="r.7", role="mash_researcher_police")
    ask = getattr(researcher, rpc)
    base = {k: v for k, v in SCREENING.items() if k != "case_reference"}
    first = await ask(request_id=f"req-link-{rpc}", subject=subject(NOAH_FENWICK), referral_id=rid, **base)
    again = await ask(request_id=f"req-link-{rpc}", subject=subject(NOAH_FENWICK), referral_id=rid, **base)
    assert again == first  # the replay: same answers, same receipts
    got = await manager.call("GetReferral", ref_pb.GetReferralRequest(referral_id=rid))
    assert [h.action for h in got.history].count("record_answers") == 1
    assert partnership.gateway is not None
    assert partnership.gateway.deps.referral_store is not None
    health = "spiffe://mash.local/agency/health/system/gp-system"
    notices = await partnership.gateway.deps.referral_store.notifications(health, after=0, limit=10)
    assert [(n.kind.value, n.referral_id) for n in notices] == [("OWNER_NOTICE", rid)]


@pytest.mark.parametrize("rpc", ["query", "stream"])
async def test_a_retried_linked_query_replays_even_after_the_referral_was_decided(
        partnership: Partnership, police: Client, manager: Client, rpc: str) -> None:
    """The referral is decided between the first attempt and its retry: the retry still gets the first answer
    (no FAILED_PRECONDITION), nothing is disclosed or recorded again; a new request about it is refused."""
    rid = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral.referral_id
    await manager.call("RateReferral", ref_pb.RateReferralRequest(referral_id=rid, rating="red"))
    researcher = partnership.client("police", "case-system", user="r.7", role="mash_researcher_police")
    ask = getattr(researcher, rpc)
    base = {k: v for k, v in SCREENING.items() if k != "case_reference"}
    first = await ask(request_id=f"req-late-{rpc}", subject=subject(NOAH_FENWICK), referral_id=rid, **base)
    await manager.call("CompleteResearch", ref_pb.CompleteResearchRequest(referral_id=rid))
    await manager.call("DecideReferral", ref_pb.DecideReferralRequest(
        referral_id=rid, decision="s47_strategy_discussion", reason="Strategy discussion today",
        receiving_team="Assessment Team 1"))
    assert partnership.gateway is not None
    audit = partnership.gateway.deps.audit.store
    entries_before = len(await audit.scan(0, 10_000))
    again = await ask(request_id=f"req-late-{rpc}", subject=subject(NOAH_FENWICK), referral_id=rid, **base)
    assert again == first  # the replay: same answers, same receipts
    assert len(await audit.scan(0, 10_000)) == entries_before  # no second disclosure, no refusal
    got = await manager.call("GetReferral", ref_pb.GetReferralRequest(referral_id=rid))
    assert got.referral.state == ref_pb.REFERRAL_STATE_DECIDED
    assert [h.action for h in got.history].count("record_answers") == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # not a retry: the decided referral refuses research
        await ask(request_id=f"req-new-{rpc}", subject=subject(NOAH_FENWICK), referral_id=rid, **base)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_linked_query_about_an_unrated_referral_is_refused(partnership: Partnership,
                                                                   police: Client) -> None:
    """Research can only be linked to a rated referral; a malformed id is a field violation."""
    rid = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral.referral_id
    researcher = partnership.client("police", "case-system", user="r.7", role="mash_researcher_police")
    base = {k: v for k, v in SCREENING.items() if k != "case_reference"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await researcher.query(subject=subject(NOAH_FENWICK), referral_id=rid, **base)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await researcher.query(subject=subject(NOAH_FENWICK), referral_id="ref-<script>", **base)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"referral_id"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await researcher.query(subject=subject(NOAH_FENWICK), referral_id=rid, case_reference="OTHER-1", **base)
    assert set(field_violations(caught.value)) == {"case_reference"}


def _content(answers: Any) -> list[tuple[str, int, list[str]]]:
    # Pseudonyms are fresh per request, so only their presence is compared.
    return sorted((a.agency, a.status, [re.sub(r"pn:\w+:[0-9a-f]+", "pn:…", str(r)) for r in a.records])
                  for a in answers)


async def _decided(police: Client, manager: Client, decision: str = "s47_strategy_discussion") -> str:
    rid = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral.referral_id
    await manager.call("RateReferral", ref_pb.RateReferralRequest(referral_id=rid, rating="amber"))
    await manager.call("StartResearch", ref_pb.StartResearchRequest(referral_id=rid))
    await manager.call("CompleteResearch", ref_pb.CompleteResearchRequest(referral_id=rid))
    await manager.call("DecideReferral", ref_pb.DecideReferralRequest(
        referral_id=rid, decision=decision, reason="Needs a strategy discussion", receiving_team="Assessment Team 1"))
    return rid


async def test_the_receivers_package_is_what_a_direct_query_by_that_role_releases(
        partnership: Partnership, police: Client, manager: Client, csc: Client) -> None:
    """The social worker's package equals a direct s47 query by a social worker: nothing more is released."""
    rid = await _decided(police, manager)
    package = await csc.call("GetPertinentInformation", ref_pb.GetPertinentInformationRequest(referral_id=rid))
    direct = await partnership.client("csc", "case-system", user="case-system", role="social_worker").query(
        subject=subject(NOAH_FENWICK), purpose="s47_enquiry", legal_basis="children_act_1989_s47",
        agreement="mash-isa-2026", case_reference=rid)

    assert _content(package.answers) == _content(direct.answers)
    assert any(a.records for a in package.answers)


async def test_only_the_receiving_role_gets_the_package_and_only_after_a_decision(
        partnership: Partnership, police: Client, manager: Client, csc: Client) -> None:
    """Another role is PERMISSION_DENIED (NOT_THE_RECEIVER); an undecided referral has no package yet."""
    rid = await _decided(police, manager)
    officer = Client(partnership, "police", "case-system", "pc.1234", "police_officer")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await officer.call("GetPertinentInformation", ref_pb.GetPertinentInformationRequest(referral_id=rid))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "NOT_THE_RECEIVER"
    undecided = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral.referral_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await csc.call("GetPertinentInformation", ref_pb.GetPertinentInformationRequest(referral_id=undecided))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION


# -- previewing the package (MASH staff see what a decision's receiving role would get)

async def _events(partnership: Partnership) -> list[AuditEvent]:
    assert partnership.gateway is not None
    return [decode_entry(r.data).event for r in await partnership.gateway.deps.audit.store.scan(0, 10_000)]


async def test_a_proposed_decisions_preview_is_the_package_its_receiver_then_gets(
        partnership: Partnership, police: Client, manager: Client, csc: Client) -> None:
    """Before deciding, the manager previews s47: the same answers the social worker fetches after the decision,
    and the preview is audited under the manager's user, as the receiving role, marked as a preview."""
    rid = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral.referral_id
    await manager.call("RateReferral", ref_pb.RateReferralRequest(referral_id=rid, rating="amber"))
    preview = await manager.call("PreviewPertinentInformation", ref_pb.PreviewPertinentInformationRequest(
        referral_id=rid, decision="s47_strategy_discussion"))
    assert (preview.decision, preview.receiving_role, preview.purpose) == (
        "s47_strategy_discussion", "social_worker", "s47_enquiry")
    assert any(a.records for a in preview.answers)

    await _decided_from_rated(manager, rid)
    package = await csc.call("GetPertinentInformation", ref_pb.GetPertinentInformationRequest(referral_id=rid))
    assert _content(preview.answers) == _content(package.answers)
    recorded = await manager.call("PreviewPertinentInformation",
                                  ref_pb.PreviewPertinentInformationRequest(referral_id=rid))
    assert recorded.decision == "s47_strategy_discussion", "no decision given previews the recorded one"

    previews = [e for e in await _events(partnership) if e.request_id == preview.request_id]
    assert previews, "the preview's answers are audited"
    assert {(e.kind, e.user, e.role, e.details.get("preview_by_role"), e.case_reference) for e in previews} == {
        (AuditKind.DISCLOSURE, "mash.manager.1", "social_worker", "mash_manager", rid)}
    assert all(e.caller.endswith("/system/mash-console") for e in previews)


async def _decided_from_rated(manager: Client, rid: str) -> None:
    await manager.call("StartResearch", ref_pb.StartResearchRequest(referral_id=rid))
    await manager.call("CompleteResearch", ref_pb.CompleteResearchRequest(referral_id=rid))
    await manager.call("DecideReferral", ref_pb.DecideReferralRequest(
        referral_id=rid, decision="s47_strategy_discussion", reason="Needs a strategy discussion",
        receiving_team="Assessment Team 1"))


async def test_the_referral_carries_its_decision_time_beside_its_decision_deadline(
        police: Client, manager: Client) -> None:
    rid = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral.referral_id
    before = (await manager.call("GetReferral", ref_pb.GetReferralRequest(referral_id=rid))).referral
    assert not before.HasField("decided_at")
    await _decided(police, manager)  # a second referral, to show decided_at is per referral
    await manager.call("RateReferral", ref_pb.RateReferralRequest(referral_id=rid, rating="amber"))
    await _decided_from_rated(manager, rid)
    after = (await manager.call("GetReferral", ref_pb.GetReferralRequest(referral_id=rid))).referral
    assert after.HasField("decided_at")
    assert after.HasField("decision_due")
    decided = next(t for t in (await manager.call("GetReferral", ref_pb.GetReferralRequest(referral_id=rid))).history
                   if t.action == "decide")
    gap = after.decided_at.ToDatetime() - decided.at.ToDatetime()
    assert abs(gap.total_seconds()) < 1, "decided_at is the time of the decide step in the history"


@pytest.mark.parametrize(("decision", "why"), [
    ("adopt_a_pet", "is not a decision of this referral's MASH"),
    ("no_further_action", "sends no pertinent-information package"),
    ("", "is required: the referral has no decision yet"),
])
async def test_a_decision_with_no_package_to_preview_is_invalid_and_audited(
        partnership: Partnership, police: Client, manager: Client, decision: str, why: str) -> None:
    rid = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral.referral_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await manager.call("PreviewPertinentInformation",
                           ref_pb.PreviewPertinentInformationRequest(referral_id=rid, decision=decision))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == {"decision": why}
    refusals = [e for e in await _events(partnership) if e.kind is AuditKind.REFUSAL]
    assert refusals
    assert refusals[-1].status == "INVALID_ARGUMENT"
    assert not decision or decision not in refusals[-1].reason, "the refused text is not copied into the log"


async def test_a_role_that_may_not_see_referral_content_may_not_preview(
        partnership: Partnership, police: Client, manager: Client) -> None:
    """The police officer's system may submit referrals but not see their content: PERMISSION_DENIED, audited,
    and no disclosure is made."""
    rid = (await police.call("SubmitReferral", notification(NOAH_FENWICK))).referral.referral_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await police.call("PreviewPertinentInformation", ref_pb.PreviewPertinentInformationRequest(
            referral_id=rid, decision="s47_strategy_discussion"))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "WORKFLOW_PERMISSION"
    events = await _events(partnership)
    assert not [e for e in events if e.details.get("preview_by_role")]
    assert events[-1].kind is AuditKind.REFUSAL
