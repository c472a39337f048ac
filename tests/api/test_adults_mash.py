"""The adults' MASH end to end over real mTLS: adult social care answers from its seeded records."""

from __future__ import annotations

import grpc
import pytest
from hub_helpers import error_reason, field_violations, subject

from agency_stubs.cast import JODIE_MERCER, KAI_MERCER
from gateway.api.tls import client_credentials
from gateway.audit import decode_entry
from gateway.demo.partnership import Partnership
from gateway.domain import AuditEvent, AuditKind
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2 as ref_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2_grpc as ref_grpc

pytestmark = pytest.mark.slow

EDITH = {"nhs_number": "9990017018", "given_name": "Edith", "family_name": "Marlowe", "date_of_birth": "1938-02-11"}
S42 = {"purpose": "care_act_s42_enquiry", "legal_basis": "care_act_2014_s42",
       "agreement": "adult-safeguarding-isa-2026"}


def _stub(partnership: Partnership, agency: str, system: str) -> ref_grpc.ReferralServiceStub:
    return ref_grpc.ReferralServiceStub(partnership.channel(client_credentials(partnership.pki, agency, system)))


def _as(user: str, role: str) -> tuple[tuple[str, str], ...]:
    return (("x-mash-user", user), ("x-mash-role", role))


async def test_an_adult_at_risk_is_researched_and_her_section_42_package_reaches_adult_social_care(
        partnership: Partnership) -> None:
    """Submit, rate, research with asc answering, decide a s42 enquiry: asc's package is pertinent only."""
    police = _stub(partnership, "police", "case-system")
    hub = _stub(partnership, "hub", "mash-console")
    manager = _as("mash.manager.1", "mash_manager")
    submitted = await police.SubmitReferral(ref_pb.SubmitReferralRequest(
        mash="adults", subject=common_pb2.SubjectIdentifiers(**subject(JODIE_MERCER)),
        concern="Neighbour reports shouting and a fall", categories=["domestic_abuse"], borough="hackney"),
        metadata=_as("pc.1234", "police_officer"), timeout=10)
    rid = submitted.referral.referral_id
    # Screened on arrival against adult social care's open cases: her case there is closed, so the MASH rates it.
    assert (submitted.referral.state, submitted.referral.screening) == (ref_pb.REFERRAL_STATE_SCREENED, "NOT_OPEN")
    await hub.RateReferral(ref_pb.RateReferralRequest(referral_id=rid, rating="red"), metadata=manager, timeout=10)

    researcher = partnership.client("asc", "case-system", user="r.asc", role="mash_researcher_asc")
    answer = await researcher.query(subject=subject(JODIE_MERCER), referral_id=rid, **S42)
    by_agency = {a.agency: a for a in answer.answers}
    assert by_agency["asc"].status == hub_pb.ANSWER_STATUS_MATCH
    assert {r.category for r in by_agency["asc"].records} >= {"asc.s42_enquiry", "asc.care_and_support"}
    assert by_agency["police"].status == hub_pb.ANSWER_STATUS_MATCH
    assert not by_agency["education"].records  # no adult agreement covers education

    await hub.CompleteResearch(ref_pb.CompleteResearchRequest(referral_id=rid), metadata=manager, timeout=10)
    await hub.DecideReferral(ref_pb.DecideReferralRequest(
        referral_id=rid, decision="care_act_s42_enquiry", reason="Adult at risk of serious harm",
        receiving_team="Adult Safeguarding Team"), metadata=manager, timeout=10)
    asc = _stub(partnership, "asc", "case-system")
    package = await asc.GetPertinentInformation(ref_pb.GetPertinentInformationRequest(referral_id=rid),
                                                metadata=_as("case-system", "asc_social_worker"), timeout=10)
    (enquiry,) = [r for a in package.answers if a.agency == "asc" for r in a.records
                  if r.category == "asc.s42_enquiry"]
    shown = str(enquiry)
    assert "R. Adeyemi" in shown  # whom to call
    for secret in ("Dean Ashby", "coercive control"):  # the alleged source and the narrative stay in the MASH
        assert secret not in shown


async def test_an_adult_open_to_adult_social_care_is_routed_on_arrival_to_adult_social_care(
        partnership: Partnership) -> None:
    """The adults' MASH asks adult social care (not children's social care) on arrival; an open, allocated case
    is routed at once to its team, and adult social care's system is told, with a reference only."""
    police = _stub(partnership, "police", "case-system")
    submitted = await police.SubmitReferral(ref_pb.SubmitReferralRequest(
        mash="adults", subject=common_pb2.SubjectIdentifiers(**EDITH), concern="Bank reports cash withdrawals",
        categories=["financial_abuse"], borough="hackney"), metadata=_as("pc.1234", "police_officer"), timeout=10)
    referral = submitted.referral
    assert (referral.state, referral.routing) == (ref_pb.REFERRAL_STATE_ROUTED, "automatic")
    assert (referral.team, referral.worker) == ("Adult Safeguarding Team (North)", "T. Osei")
    asc = _stub(partnership, "asc", "case-system")
    watch = asc.WatchNotifications(ref_pb.WatchNotificationsRequest(),
                                   metadata=_as("case-system", "asc_social_worker"), timeout=10)
    async for notice in watch:
        assert (notice.kind, notice.referral_id) == (ref_pb.NOTIFICATION_KIND_ROUTED, referral.referral_id)
        assert "Edith" not in str(notice)
        assert EDITH["nhs_number"] not in str(notice)
        break
    watch.cancel()
    assert partnership.gateway is not None
    assert partnership.gateway.deps.referral_store is not None
    csc = "spiffe://mash.local/agency/csc/system/case-system"
    assert await partnership.gateway.deps.referral_store.notifications(csc, after=0, limit=10) == []


async def test_a_section_42_query_citing_the_childrens_agreement_is_refused(partnership: Partnership) -> None:
    """The children's MASH agreement does not cover adult safeguarding: PERMISSION_DENIED, nothing disclosed."""
    researcher = partnership.client("asc", "case-system", user="r.asc", role="mash_researcher_asc")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await researcher.query(subject=subject(JODIE_MERCER), case_reference="MASH-A-1",
                               **{**S42, "agreement": "mash-isa-2026"})
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value)


@pytest.mark.parametrize(("mash", "person"), [("adults", subject(KAI_MERCER)), ("children", EDITH)])
async def test_a_referral_to_the_mash_for_the_other_age_is_refused_on_mash(
        partnership: Partnership, mash: str, person: dict[str, str]) -> None:
    """A child (by date of birth, on the day submitted) to the adults' MASH, or an adult to the children's:
    INVALID_ARGUMENT with one violation on `mash` that repeats neither the date of birth nor the name."""
    police = _stub(partnership, "police", "case-system")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await police.SubmitReferral(ref_pb.SubmitReferralRequest(
            mash=mash, subject=common_pb2.SubjectIdentifiers(**person), concern="A concern",
            categories=["neglect"], borough="hackney"), metadata=_as("pc.1234", "police_officer"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"mash"}
    for value in (person["date_of_birth"], person["date_of_birth"][:4], person["given_name"]):
        assert value not in str(field_violations(caught.value))
        assert value not in (caught.value.details() or "")


async def _events(partnership: Partnership, kind: AuditKind) -> list[AuditEvent]:
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 10_000)
    return [e for e in (decode_entry(r.data).event for r in rows) if e.kind is kind]


async def test_screen_referral_asks_adult_social_care_for_an_adult_at_risk(partnership: Partnership) -> None:
    """ScreenReferral with subject_kind ADULT runs the adults' open-case check directly: Edith's adult social care
    case is open, so its team and worker come back. Unset is the children's check, as before the field: it asks
    children's social care's records, which the adult safeguarding agreement does not cover, so it is refused."""
    manager = partnership.client("hub", "mash-console", user="mash.manager.1", role="mash_manager")
    adult = await manager.screen(request_id="scr-edith-adult", subject=EDITH, case_reference="MASH-A-2",
                                 subject_kind=hub_pb.SUBJECT_KIND_ADULT, **S42)
    assert (adult.result, adult.case_status) == (hub_pb.SCREEN_RESULT_OPEN, "open")
    assert (adult.allocated_team, adult.allocated_worker) == ("Adult Safeguarding Team (North)", "T. Osei")
    assert adult.contact.agency == "asc"
    (disclosure,) = [e for e in await _events(partnership, AuditKind.DISCLOSURE)
                     if e.request_id == "scr-edith-adult"]
    assert disclosure.agency == "asc"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await manager.screen(request_id="scr-edith-child", subject=EDITH, case_reference="MASH-A-2", **S42)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "AGREEMENT_CATEGORY"


async def test_screen_referral_refuses_a_subject_kind_it_does_not_know_and_a_kind_changed_on_retry(
        partnership: Partnership) -> None:
    """An enum number this gateway does not know is INVALID_ARGUMENT on subject_kind, audited, nothing asked;
    the same request id asked again for the other kind is a different request, refused on request_id."""
    manager = partnership.client("hub", "mash-console", user="mash.manager.1", role="mash_manager")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await manager.screen(request_id="scr-bad-kind", subject=EDITH, case_reference="MASH-A-3", subject_kind=99,
                             **S42)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"subject_kind"}
    (refusal,) = [e for e in await _events(partnership, AuditKind.REFUSAL) if e.request_id == "scr-bad-kind"]
    assert refusal.status == "INVALID_ARGUMENT"
    assert "subject_kind" in refusal.reason
    assert not [e for e in await _events(partnership, AuditKind.DISCLOSURE) if e.request_id == "scr-bad-kind"]

    await manager.screen(request_id="scr-kind-1", subject=EDITH, case_reference="MASH-A-3",
                         subject_kind=hub_pb.SUBJECT_KIND_ADULT, **S42)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await manager.screen(request_id="scr-kind-1", subject=EDITH, case_reference="MASH-A-3", **S42)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"request_id"}
