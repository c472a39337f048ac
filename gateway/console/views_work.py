"""IG officers (policy), the MASH team (referral queue and referral pages) and agency reviewers (reviews)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio
from starlette.datastructures import FormData
from starlette.responses import Response

from gateway.console.charts import duration, stacked_bars
from gateway.console.views_audit import level_name, when
from gateway.console.web import Page, Refused
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2 as referral_pb
from gateway.generated.mash.gateway.v1 import review_service_pb2 as review_pb

Handler = Callable[[Page], Awaitable[Response]]

LEVEL_MARKS = {"none": "–", "exists": "E", "pertinent": "P", "full": "F"}
RATING_ORDER = {"red": 0, "amber": 1, "green": 2}
LEVELS = ("exists", "pertinent", "full")


def _text(form: FormData, name: str) -> str:
    return str(form.get(name, "")).strip()


def _names(form: FormData, name: str) -> list[str]:
    """Every value posted under `name` (a multiple select), each split at commas, in order, without repeats."""
    parts = (part.strip() for value in form.getlist(name) for part in str(value).replace("\n", ",").split(","))
    return list(dict.fromkeys(part for part in parts if part))


ENDING_SOON_DAYS = 60


async def vocabulary(current: Page) -> policy_pb.GetVocabularyResponse:
    """The active policy's declared names, from the gateway (any role the console may assert can read them)."""
    return await current.console.gateway.policy.GetVocabulary(policy_pb.GetVocabularyRequest(),
                                                              metadata=current.meta, timeout=10)


def choices(vocab: policy_pb.GetVocabularyResponse) -> dict[str, Any]:
    """What the policy forms offer: record-holding agencies, roles that can see records, purposes and record
    categories that a request can name (groups left out), categories grouped under their agency."""
    by_agency: dict[str, list[policy_pb.VocabularyCategory]] = {}
    for c in vocab.record_categories:
        if not c.group:
            by_agency.setdefault(c.agency, []).append(c)
    return {
        "agency_choices": [a for a in vocab.agencies if a.holds_records],
        "role_choices": [r for r in vocab.roles if r.sees_records and not r.group],
        "purpose_choices": [p for p in vocab.purposes if not p.group],
        "categories_by_agency": sorted(by_agency.items(), key=lambda item: item[0]),
    }


def countdown(ts: object) -> tuple[str, bool]:
    """("in 3 h 20 min" or "2 h overdue", overdue?) for a deadline; ("", False) when unset."""
    due = when(ts) if ts is not None else None  # type: ignore[arg-type]
    if due is None:
        return "", False
    left = due - datetime.now(UTC)
    if left.total_seconds() < 0:
        return f"{duration(-left)} overdue", True
    return f"in {duration(left)}", False


# ---------------------------------------------------------------- policy (IG officers)

async def policy_home(current: Page) -> Response:
    current.require("policy")
    version = await current.console.gateway.policy.GetPolicyVersion(policy_pb.GetPolicyVersionRequest(),
                                                                    metadata=current.meta, timeout=10)
    return current.render("policy.html", version=version, explained=None, form={},
                          **choices(await vocabulary(current)))


async def explain(current: Page) -> Response:
    """Why one role gets what it gets from one agency's category for one purpose, with every matching line."""
    current.require("policy")
    form = await current.form()
    fields = {f: _text(form, f) for f in ("role", "purpose", "agency", "category")}
    version = await current.console.gateway.policy.GetPolicyVersion(policy_pb.GetPolicyVersionRequest(),
                                                                    metadata=current.meta, timeout=10)
    explained = await current.console.gateway.policy.ExplainDecision(
        policy_pb.ExplainDecisionRequest(**fields), metadata=current.meta, timeout=10)
    return current.render("policy.html", version=version, explained=explained, form=fields,
                          level_name=level_name, **choices(await vocabulary(current)),
                          effect=lambda e: policy_pb.PolicyEffect.Name(e).removeprefix("POLICY_EFFECT_").lower())


async def history(current: Page) -> Response:
    """Policy activations and refused changes, newest first, from the gateway's audit log (the read is audited)."""
    current.require("policy")
    reply = await current.console.gateway.policy.ListPolicyActivations(
        policy_pb.ListPolicyActivationsRequest(page_size=100), metadata=current.meta, timeout=10)
    return current.render("policy_history.html", activations=reply.activations, total=reply.total_size)


async def policy_tests(current: Page) -> Response:
    """The active policy's own tests run by the gateway now: every case, failures marked in words."""
    current.require("policy")
    run = await current.console.gateway.policy.RunPolicyTests(policy_pb.RunPolicyTestsRequest(),
                                                              metadata=current.meta, timeout=60)
    return current.render("policy_tests.html", run=run,
                          failures=[r for r in run.results if not r.passed])


async def release_form(current: Page) -> Response:
    current.require("policy")
    return current.render("policy_release.html", release=None, form={})


async def release_view(current: Page) -> Response:
    """A proposed release against the serving policy: ▲ widenings first, then ▼, and who still has to approve."""
    current.require("policy")
    form = await current.form()
    release_id = _text(form, "release_id")
    found = await current.console.gateway.policy.GetPolicyRelease(
        policy_pb.GetPolicyReleaseRequest(release_id=release_id), metadata=current.meta, timeout=30)
    return current.render("policy_release.html", release=found, form={"release_id": release_id})


async def matrix_form(current: Page) -> Response:
    current.require("policy")
    return current.render("policy_matrix.html", form={}, grid=None, marks=LEVEL_MARKS,
                          **choices(await vocabulary(current)))


async def agreements(current: Page) -> Response:
    """Every data-sharing agreement of the active policy, the soonest to end first, those ending within 60 days
    (and those already ended) marked."""
    current.require("policy")
    vocab = await vocabulary(current)

    def standing(days_left: int) -> str:
        return "ended" if days_left < 0 else "ending soon" if days_left <= ENDING_SOON_DAYS else "in force"

    rows = sorted(vocab.agreements, key=lambda a: (a.valid_until, a.name))
    return current.render("policy_agreements.html", agreements=rows, standing=standing,
                          policy_version=vocab.policy_version, soon=ENDING_SOON_DAYS)


async def matrix(current: Page) -> Response:
    """Effective access to one agency: role × category, a column per purpose, built from ExplainDecision."""
    current.require("policy")
    form = await current.form()
    agency, roles, categories, purposes = (_text(form, "agency"), _names(form, "roles"),
                                           _names(form, "categories"), _names(form, "purposes"))
    if not (agency and roles and categories and purposes):
        raise Refused(400, "Give the agency and at least one role, category and purpose.")
    if len(roles) * len(categories) * len(purposes) > 2000:
        raise Refused(400, "That is more than 2,000 cells; narrow the lists.")
    grid: dict[tuple[str, str, str], tuple[str, bool, str]] = {}
    for role in roles:
        for category in categories:
            for purpose in purposes:
                try:
                    explained = await current.console.gateway.policy.ExplainDecision(
                        policy_pb.ExplainDecisionRequest(role=role, purpose=purpose, agency=agency, category=category),
                        metadata=current.meta, timeout=10)
                except grpc.aio.AioRpcError as exc:  # a name the policy does not know is refused for that cell only
                    if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                        raise
                    grid[(role, category, purpose)] = ("?", False, "not a valid request cell")
                    continue
                review = any(r.effect == policy_pb.POLICY_EFFECT_REVIEW for r in explained.matching_rules)
                level = level_name(explained.level)
                grid[(role, category, purpose)] = (LEVEL_MARKS.get(level, "?"), review,
                                                   ", ".join([*explained.allowed_by, *explained.denied_by]))
    fields = {"agency": agency, "roles": roles, "categories": categories, "purposes": purposes}
    return current.render("policy_matrix.html", form=fields, grid=grid, roles=roles, categories=categories,
                          purposes=purposes, marks=LEVEL_MARKS, agency=agency, **choices(await vocabulary(current)))


# ---------------------------------------------------------------- referrals (MASH managers and researchers)

def _state(state: int) -> str:
    name = referral_pb.ReferralState.Name(referral_pb.ReferralState.ValueType(state))
    return name.removeprefix("REFERRAL_STATE_").lower()


async def _queue(current: Page, token: str = "", overdue_only: bool = False) -> Response:
    response = await current.console.gateway.referrals.ListReferrals(
        referral_pb.ListReferralsRequest(page_size=100, page_token=token, overdue_only=overdue_only),
        metadata=current.meta, timeout=10)
    rows = sorted(response.referrals, key=lambda r: (RATING_ORDER.get(r.rating, 3 if r.rating else 4),
                                                     r.due.seconds or 2**62))
    return current.render("referrals.html", referrals=rows, total=response.total,
                          next_token=response.next_page_token, overdue_only=overdue_only,
                          countdown=countdown, state=_state, when=when)


async def queue(current: Page) -> Response:
    current.require("referrals")
    return await _queue(current)


async def queue_page(current: Page) -> Response:
    current.require("referrals")
    form = await current.form()
    return await _queue(current, _text(form, "page_token"), form.get("overdue_only") == "1")


def deadline_counts(referrals: list[referral_pb.Referral], now: datetime,
                    step: str) -> list[tuple[str, tuple[int, int, int]]]:
    """Per rating (red, amber, green, then others): how many met the `step` ("research" or "decision")
    deadline, missed it (done late, or not done after it) and are still within it; unrated ones are left out."""
    counts: dict[str, list[int]] = {}
    for r in referrals:
        due, done = ((when(r.research_due), when(r.research_completed_at)) if step == "research"
                     else (when(r.decision_due), when(r.decided_at)))
        if not r.rating or due is None:
            continue
        slot = counts.setdefault(r.rating, [0, 0, 0])
        if done is not None:
            slot[0 if done <= due else 1] += 1
        else:
            slot[1 if now > due else 2] += 1
    return [(rating, (c[0], c[1], c[2])) for rating, c in
            sorted(counts.items(), key=lambda item: (RATING_ORDER.get(item[0], 3), item[0]))]


async def compliance(current: Page) -> Response:
    """Research and decision deadlines met, missed and still running, per rating, over every referral held."""
    current.require("referrals")
    stub = current.console.gateway.referrals
    states = [v for v in referral_pb.ReferralState.values() if v]
    token, seen = "", list[referral_pb.Referral]()
    for _ in range(50):  # at most 10,000 referrals
        page = await stub.ListReferrals(referral_pb.ListReferralsRequest(states=states, page_size=200,
                                                                         page_token=token),
                                        metadata=current.meta, timeout=10)
        seen.extend(page.referrals)
        token = page.next_page_token
        if not token:
            break
    now = datetime.now(UTC)
    research, decision = deadline_counts(seen, now, "research"), deadline_counts(seen, now, "decision")
    return current.render("referral_compliance.html", research=research, decision=decision, truncated=bool(token),
                          research_svg=stacked_bars(research, "Research deadlines by rating"),
                          decision_svg=stacked_bars(decision, "Decision deadlines by rating"))


async def _referral_page(current: Page, referral_id: str, message: str = "",
                         compared: dict[str, Any] | None = None) -> Response:
    response = await current.console.gateway.referrals.GetReferral(
        referral_pb.GetReferralRequest(referral_id=referral_id), metadata=current.meta, timeout=10)
    vocab = await vocabulary(current)
    mash = next((m for m in vocab.mashes if m.name == response.referral.mash), None)
    return current.render("referral.html", referral=response.referral, history=response.history,
                          message=message, countdown=countdown, state=_state, when=when, mash=mash,
                          purposes=[p for p in vocab.purposes if not p.group], agreements=vocab.agreements,
                          legal_bases=sorted({b for p in vocab.purposes for b in p.legal_bases}),
                          compared=compared or {}, **ANSWER_HELPERS)


async def compare(current: Page) -> Response:
    """Research beside the package: the acting MASH role's research query (linked to the referral, audited) and,
    agency by agency beside it, what the chosen decision's receiving role would get (the gateway's preview)."""
    current.require("referrals")
    form = await current.form()
    rid = _text(form, "referral_id")
    fields = {f: _text(form, f) for f in ("decision", "purpose", "legal_basis", "agreement")}
    held = await current.console.gateway.referrals.GetReferral(referral_pb.GetReferralRequest(referral_id=rid),
                                                               metadata=current.meta, timeout=10)
    if not held.referral.content_visible:
        raise Refused(403, f"Your role {current.session.role} may not see this referral's subject to research it.")
    research = await current.console.gateway.hub.Query(hub_pb.QueryRequest(
        subject=held.referral.subject, referral_id=rid, purpose=fields["purpose"],
        legal_basis=fields["legal_basis"], agreement=fields["agreement"]), metadata=current.meta, timeout=20)
    package = await current.console.gateway.referrals.PreviewPertinentInformation(
        referral_pb.PreviewPertinentInformationRequest(referral_id=rid, decision=fields["decision"]),
        metadata=current.meta, timeout=20)
    left = {a.agency: a for a in research.answers}
    right = {a.agency: a for a in package.answers}
    rows = [(agency, left.get(agency), right.get(agency)) for agency in sorted({*left, *right})]
    return await _referral_page(current, rid, compared={"rows": rows, "package": package, "form": fields})


async def referral(current: Page) -> Response:
    current.require("referrals")
    form = await current.form()
    return await _referral_page(current, _text(form, "referral_id"))


async def referral_act(current: Page) -> Response:
    """One step on a referral (screen, rate, research, decide, close); the gateway checks the state."""
    current.require("referrals")
    form = await current.form()
    rid, action = _text(form, "referral_id"), _text(form, "action")
    stub, meta = current.console.gateway.referrals, current.meta
    if action == "screen":
        await stub.MarkScreened(referral_pb.MarkScreenedRequest(referral_id=rid), metadata=meta, timeout=10)
    elif action == "rate":
        await stub.RateReferral(referral_pb.RateReferralRequest(referral_id=rid, rating=_text(form, "rating")),
                                metadata=meta, timeout=10)
    elif action == "start_research":
        await stub.StartResearch(referral_pb.StartResearchRequest(referral_id=rid), metadata=meta, timeout=10)
    elif action == "complete_research":
        await stub.CompleteResearch(referral_pb.CompleteResearchRequest(referral_id=rid), metadata=meta, timeout=10)
    elif action == "decide":
        await stub.DecideReferral(referral_pb.DecideReferralRequest(
            referral_id=rid, decision=_text(form, "decision"), reason=_text(form, "reason"),
            receiving_team=_text(form, "receiving_team")), metadata=meta, timeout=10)
    elif action == "close":
        await stub.CloseReferral(referral_pb.CloseReferralRequest(referral_id=rid), metadata=meta, timeout=10)
    else:
        raise Refused(400, "Unknown action.")
    return await _referral_page(current, rid, message=f"Done: {action.replace('_', ' ')}.")


# ---------------------------------------------------------------- reviews (agency reviewers)

async def _reviews_page(current: Page, message: str = "") -> Response:
    response = await current.console.gateway.reviews.ListReviews(review_pb.ListReviewsRequest(limit=200),
                                                                 metadata=current.meta, timeout=10)
    return current.render("reviews.html", reviews=response.reviews, message=message, countdown=countdown,
                          when=when, level_name=level_name, levels=LEVELS)


def _disclosure(value: int) -> str:
    return hub_pb.FieldDisclosure.Name(hub_pb.FieldDisclosure.ValueType(value)).removeprefix(
        "FIELD_DISCLOSURE_").lower() if value else ""


def _answer_status(value: int) -> str:
    return hub_pb.AnswerStatus.Name(hub_pb.AnswerStatus.ValueType(value)).removeprefix("ANSWER_STATUS_")


ANSWER_HELPERS: dict[str, Any] = {"disclosure": _disclosure, "answer_status": _answer_status,
                                  "level_name": level_name}


async def open_review(current: Page) -> Response:
    """The review and the agency's own records under it, fetched from its node now (the opening is audited)."""
    current.require("reviews")
    form = await current.form()
    opened = await current.console.gateway.reviews.OpenReview(
        review_pb.OpenReviewRequest(review_id=_text(form, "review_id")), metadata=current.meta, timeout=15)
    return current.render("review_open.html", review=opened.review, records=opened.records, countdown=countdown,
                          levels=LEVELS, **ANSWER_HELPERS)


async def reviews(current: Page) -> Response:
    current.require("reviews")
    return await _reviews_page(current)


async def decide_review(current: Page) -> Response:
    """Approve as requested, approve at a lower level, or decline with a reason."""
    current.require("reviews")
    form = await current.form()
    verdict = _text(form, "verdict")
    request = review_pb.DecideReviewRequest(review_id=_text(form, "review_id"), reason=_text(form, "reason"))
    if verdict == "approve":
        request.verdict = review_pb.REVIEW_VERDICT_APPROVE
    elif verdict == "approve_lower":
        level = _text(form, "level")
        if level not in LEVELS:
            raise Refused(400, "Choose the level to approve.")
        request.verdict = review_pb.REVIEW_VERDICT_APPROVE
        request.level = common_pb2.DisclosureLevel.Value(f"DISCLOSURE_LEVEL_{level.upper()}")
    elif verdict == "decline":
        if not request.reason:
            raise Refused(400, "Give a reason to decline.")
        request.verdict = review_pb.REVIEW_VERDICT_DECLINE
    else:
        raise Refused(400, "Choose approve, approve lower or decline.")
    decided = await current.console.gateway.reviews.DecideReview(request, metadata=current.meta, timeout=10)
    state = hub_pb.ReviewState.Name(decided.review.state).removeprefix("REVIEW_STATE_").lower()
    return await _reviews_page(current, message=f"Review decided: {state}.")


GET: dict[str, Handler] = {
    "/policy": policy_home,
    "/policy/matrix": matrix_form,
    "/policy/agreements": agreements,
    "/policy/history": history,
    "/policy/release": release_form,
    "/policy/tests": policy_tests,
    "/referrals": queue,
    "/referrals/compliance": compliance,
    "/reviews": reviews,
}
POST: dict[str, Handler] = {
    "/policy/explain": explain,
    "/policy/matrix": matrix,
    "/policy/release": release_view,
    "/referrals": queue_page,
    "/referrals/view": referral,
    "/referrals/act": referral_act,
    "/referrals/compare": compare,
    "/reviews/open": open_review,
    "/reviews/decide": decide_review,
}
