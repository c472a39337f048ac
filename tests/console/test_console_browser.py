"""The console in headless Chromium against a real gateway and stub nodes: sign-in, refusals, CSRF, each
group's pages, accessibility (axe-core), and that no identifier reaches a URL or the console's access log.

The tests run in file order; the last one checks every URL the browser asked for during the whole run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from agency_stubs import cast
from tests.console.conftest import AXE, IDENTIFIERS, PASSWORD, SCREENSHOTS, World, wait_for_log

pytestmark = pytest.mark.slow

Page = Any  # playwright.sync_api.Page; kept loose so the module imports without the package


@pytest.fixture
def open_page(browser: Any, world: World, browser_urls: list[str]) -> Iterator[Any]:
    """A fresh browser context (no cookies) per test; every request URL is recorded."""
    contexts = []

    def make() -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.on("request", lambda request: browser_urls.append(request.url))
        context.set_default_timeout(5000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def sign_in(page: Page, world: World, user: str, password: str = PASSWORD) -> Any:
    page.goto(world.base + "/")
    page.get_by_label("User id").fill(user)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    return page


def check_accessible(page: Page) -> None:
    """axe-core finds no serious or critical violation on the page (evaluated outside the page's CSP)."""
    page.evaluate(AXE.read_text() + "\n;undefined")
    violations = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']}))
        .violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', '))""")
    assert violations == [], f"{page.url}: {violations}"


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def test_sign_in_shows_the_person_and_role_and_sign_out_ends_the_session(open_page: Any, world: World) -> None:
    page = open_page()
    page.goto(world.base + "/")
    assert page.url.endswith("/sign-in")
    check_accessible(page)
    shot(page, "sign-in")
    sign_in(page, world, "dpo.ada")
    assert page.locator("#signed-in-user").inner_text() == "dpo.ada"
    assert page.locator("#signed-in-role").inner_text() == "auditor"
    check_accessible(page)
    cookie = next(c for c in page.context.cookies() if c["name"] == "mash_console")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    with page.expect_navigation():
        page.locator("#sign-out").click()
    assert page.url.endswith("/sign-in")
    page.goto(world.base + "/audit")
    assert page.url.endswith("/sign-in"), "the old session must be gone"


def test_a_wrong_password_is_refused(open_page: Any, world: World) -> None:
    page = sign_in(open_page(), world, "dpo.ada", "not the password at all")
    assert "wrong" in page.locator("#sign-in-error").inner_text()
    assert page.locator("#signed-in-user").count() == 0


def test_repeated_wrong_passwords_lock_the_account_with_a_clear_message_logged_without_identifiers(
        open_page: Any, world: World) -> None:
    """Five wrong passwords lock the account (from any address) for 30 s: even the right password is then
    refused with 429 and how long to wait; the console's log says an account was locked, not which."""
    page = open_page()
    for _ in range(5):
        sign_in(page, world, "locked.lou", "not the password at all")
        assert "wrong" in page.locator("#sign-in-error").inner_text()
    page.goto(world.base + "/sign-in")
    page.get_by_label("User id").fill("locked.lou")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Sign in").click()
    assert navigation.value.status == 429
    assert page.locator("#sign-in-error").inner_text().startswith("Too many failed sign-ins. Try again in ")
    assert page.locator("#signed-in-user").count() == 0
    check_accessible(page)
    log = wait_for_log(world.console_log, "sign-in locked: account")
    (line,) = [ln for ln in log.splitlines() if "sign-in locked" in ln]
    assert "locked.lou" not in line
    assert "127.0.0.1" not in line


def test_a_person_without_a_role_of_the_console_is_refused(open_page: Any, world: World) -> None:
    """nobody.ned holds social_worker, which the console's certificate is not bound to: no session."""
    page = sign_in(open_page(), world, "nobody.ned")
    assert "no role" in page.locator("#sign-in-error").inner_text()
    page.goto(world.base + "/audit")
    assert page.url.endswith("/sign-in")


def test_a_form_without_the_csrf_token_is_refused_with_403(open_page: Any, world: World) -> None:
    page = sign_in(open_page(), world, "dpo.ada")
    missing = page.request.post(world.base + "/audit/search", form={"agency": "health"})
    assert missing.status == 403
    forged = page.request.post(world.base + "/audit/search", form={"agency": "health", "csrf_token": "forged"})
    assert forged.status == 403
    signed_out = page.request.post(world.base + "/sign-out", form={})
    assert signed_out.status == 403
    page.goto(world.base + "/")
    assert page.locator("#signed-in-user").inner_text() == "dpo.ada", "a refused sign-out leaves the session"


def test_pages_carry_a_strict_content_security_policy(open_page: Any, world: World) -> None:
    page = open_page()
    response = page.goto(world.base + "/sign-in")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"


def test_a_role_opens_only_its_own_area(open_page: Any, world: World) -> None:
    page = sign_in(open_page(), world, "dpo.ada")
    response = page.goto(world.base + "/referrals")
    assert response.status == 403
    assert "does not open" in page.locator("#error-message").inner_text()


def test_auditor_searches_the_log_newest_first_with_the_total_and_opens_an_entry(open_page: Any,
                                                                                 world: World) -> None:
    page = sign_in(open_page(), world, "dpo.ada")
    page.goto(world.base + "/audit")
    check_accessible(page)
    page.get_by_label("Kind").select_option("disclosure")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    total = int(page.locator("#total").inner_text())
    assert total >= 6  # one disclosure per agency for the researcher's query
    indexes = [int(t) for t in page.locator("table tbody tr td:first-child").all_inner_texts()]
    assert indexes == sorted(indexes, reverse=True)
    assert all(k == "disclosure" for k in page.locator("table tbody tr td:nth-child(3)").all_inner_texts())
    check_accessible(page)
    shot(page, "audit-search")
    with page.expect_navigation():
        page.locator("table tbody tr").first.get_by_role("button").click()
    assert page.locator("#entry-kind").inner_text() == "disclosure"
    assert page.locator("#manifest-heading").is_visible()
    check_accessible(page)
    shot(page, "audit-entry")


def test_auditor_pages_through_the_whole_log_newest_first(open_page: Any, world: World) -> None:
    page = sign_in(open_page(), world, "dpo.ada")
    page.goto(world.base + "/audit")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    total = int(page.locator("#total").inner_text())
    first = [int(t) for t in page.locator("table tbody tr td:first-child").all_inner_texts()]
    assert len(first) == 5  # the test console shows five entries a page
    assert first[0] == total - 1, "the newest entry comes first"
    with page.expect_navigation():
        page.locator("#older").click()
    second = [int(t) for t in page.locator("table tbody tr td:first-child").all_inner_texts()]
    assert second == list(range(first[-1] - 1, first[-1] - 6, -1)), "newer entries do not shift the pages"
    assert int(page.locator("#total").inner_text()) == total
    assert page.get_by_text("Page 2 of").count() == 1


def test_auditor_finds_who_accessed_a_person_and_prints_the_subject_access_report(open_page: Any,
                                                                                  world: World) -> None:
    page = sign_in(open_page(), world, "dpo.ada")
    page.goto(world.base + "/audit/who")
    page.get_by_label("NHS number").fill(cast.KAI_MERCER.nhs_number)
    with page.expect_navigation():
        page.get_by_role("button", name="Find").click()
    assert int(page.locator("#who-count").inner_text()) >= 1
    rows = page.locator("#who-table tbody tr").all_inner_texts()
    assert any("mash_researcher_police" in r and "mash-isa-2026" in r for r in rows)
    check_accessible(page)
    shot(page, "audit-who-accessed")
    page.goto(world.base + "/audit/report")
    page.get_by_label("NHS number").fill(cast.KAI_MERCER.nhs_number)
    with page.expect_navigation():
        page.get_by_role("button", name="Make the report").click()
    assert page.locator("#report-shared tbody tr").count() >= 1
    assert page.locator("#print-report").is_visible()
    check_accessible(page)
    shot(page, "audit-subject-access-report")


def test_auditor_sees_the_verification_state_and_the_chart(open_page: Any, world: World) -> None:
    page = sign_in(open_page(), world, "dpo.ada")
    page.goto(world.base + "/audit/verification")
    assert page.locator("#verify-summary").count() == 1, page.locator("main").inner_text()
    assert page.locator("#verify-summary").inner_text().startswith("Verified")
    assert int(page.locator("#entries").inner_text()) > 0
    assert "entr" in page.locator("#unsigned-tail").inner_text()
    check_accessible(page)
    shot(page, "audit-verification")
    page.goto(world.base + "/audit/chart")
    assert page.locator("#chart-agency svg rect").count() > 2
    assert page.locator("#chart-purpose svg").count() == 1
    check_accessible(page)
    shot(page, "audit-chart")


def test_ig_officer_sees_the_policy_explains_a_decision_and_builds_the_matrix(open_page: Any,
                                                                             world: World) -> None:
    page = sign_in(open_page(), world, "ig.ian")
    page.goto(world.base + "/policy")
    assert page.locator("#policy-version").inner_text().startswith("sha256:")
    page.get_by_label("Role").select_option("mash_researcher_police")
    page.get_by_label("Purpose").select_option("safeguarding_screening")
    page.get_by_label("Agency holding the record").select_option("health")
    page.get_by_label("Record category").select_option("health.mental_health")
    with page.expect_navigation():
        page.get_by_role("button", name="Explain").click()
    assert page.locator("#explained-level").inner_text() in {"exists", "pertinent"}
    check_accessible(page)
    shot(page, "policy-explain")
    page.goto(world.base + "/policy/matrix")
    page.get_by_label("Agency").select_option("health")
    page.get_by_label("Roles").select_option(["mash_researcher_police", "mash_researcher_health", "social_worker"])
    page.get_by_label("Record categories").select_option(
        ["health.mental_health", "health.attendance", "health.sexual_health"])
    page.get_by_label("Purposes").select_option(["safeguarding_screening", "s17_assessment"])
    with page.expect_navigation():
        page.get_by_role("button", name="Show the matrix").click()
    assert page.locator("#matrix tbody tr").count() == 3
    assert page.locator("#matrix tbody td").count() == 18
    assert page.locator("#legend").is_visible()
    check_accessible(page)
    shot(page, "policy-matrix")


def test_ig_matrix_marks_the_cells_an_agency_reviewer_must_approve(open_page: Any, world: World) -> None:
    page = sign_in(open_page(), world, "ig.ian")
    page.goto(world.base + "/policy/matrix")
    page.get_by_label("Agency").select_option("health")
    page.get_by_label("Roles").select_option("mash_researcher_police")
    page.get_by_label("Record categories").select_option("health.mental_health")
    page.get_by_label("Purposes").select_option("safeguarding_screening")
    with page.expect_navigation():
        page.get_by_role("button", name="Show the matrix").click()
    assert page.locator("#matrix .review-mark").count() == 1


def test_ig_officer_sees_every_agreement_by_end_date_with_those_ending_soon_marked(open_page: Any,
                                                                                   world: World) -> None:
    """The agreements page lists the policy's agreements from the gateway, soonest to end first; the policy
    forms offer the gateway's declared names, not free text."""
    page = sign_in(open_page(), world, "ig.ian")
    page.goto(world.base + "/policy")
    roles = page.locator("#x-role option").all_inner_texts()
    assert any(text.startswith("mash_researcher_police") for text in roles)
    assert not any(text.startswith("auditor") for text in roles)  # a role no line may grant anything
    with page.expect_navigation():
        page.get_by_role("link", name="Every agreement, with its parties, purposes and dates").click()
    rows = page.locator("#agreements tbody tr")
    assert rows.count() >= 4
    ends = [rows.nth(i).locator("td").nth(3).inner_text() for i in range(rows.count())]
    assert ends == sorted(ends)
    assert "mash-isa-2026" in page.locator("#agreements").inner_text()
    statuses = {rows.nth(i).locator("td").nth(5).inner_text() for i in range(rows.count())}
    assert statuses <= {"in force", "ending soon", "ended"}
    check_accessible(page)
    shot(page, "policy-agreements")


def test_ig_officer_sees_the_policy_activation_history_from_the_audit_log(open_page: Any, world: World) -> None:
    page = sign_in(open_page(), world, "ig.ian")
    page.goto(world.base + "/policy")
    with page.expect_navigation():
        page.get_by_role("link", name="Activation history").click()
    assert int(page.locator("#history-total").inner_text()) >= 1
    first = page.locator("#history tbody tr").last.inner_text()  # the oldest: the gateway's start
    assert "activated" in first
    assert "startup" in first
    check_accessible(page)
    shot(page, "policy-history")


def test_ig_officer_sees_the_policy_test_results_with_file_and_line(open_page: Any, world: World) -> None:
    """The gateway runs the active policy's own tests: every case passes, each with its expectation, outcome
    and file:line."""
    page = sign_in(open_page(), world, "ig.ian")
    page.goto(world.base + "/policy")
    with page.expect_navigation():
        page.get_by_role("link", name="Policy test results").click()
    passed = int(page.locator("#tests-passed").inner_text())
    assert passed > 10
    assert page.locator("#tests-failed").inner_text() == "0"
    assert page.locator("#tests-version-warning").count() == 0
    rows = page.locator("#policy-tests tbody tr")
    assert rows.count() == passed
    first = rows.first.locator("td").all_inner_texts()
    assert first[0] == "pass"
    assert re.fullmatch(r"tests/[\w/]+\.yaml:\d+", first[5]), first
    assert first[3] == first[4], "expected and got agree for a passing case"
    check_accessible(page)
    shot(page, "policy-tests", full_page=False)  # the summary and the first cases; the whole list is long


def test_ig_officer_opens_a_proposed_release_and_sees_its_changes_and_who_still_has_to_approve(
        open_page: Any, world: World) -> None:
    """Asked for by a prefix of its id, the proposal shows its proposer, its ▲ and ▼ changes against the
    serving policy, education's IG officer's approval and housing still to approve."""
    page = sign_in(open_page(), world, "ig.ian")
    page.goto(world.base + "/policy")
    with page.expect_navigation():
        page.get_by_role("link", name="A proposed release").click()
    check_accessible(page)
    page.get_by_label("Release id").fill(world.release_id.removeprefix("sha256:")[:12])
    with page.expect_navigation():
        page.get_by_role("button", name="Show the release").click()
    main = page.locator("main").inner_text()
    assert page.locator("#release-id-shown").inner_text() == world.release_id, main
    assert "alice" in page.locator("dl.facts").inner_text()
    changes = [row.split("\t") for row in page.locator("#changes tbody tr").all_inner_texts()]
    wider = {(c[2], c[3]) for c in changes if c[0].startswith("▲")}
    narrower = {(c[2], c[3]) for c in changes if c[0].startswith("▼")}
    assert {agency for agency, _ in wider} == {"education", "housing"}, changes
    assert any("housing_officer" in text for agency, text in wider if agency == "education"), changes
    assert any("social_worker" in text for agency, text in wider if agency == "housing"), changes
    assert {agency for agency, _ in narrower} == {"probation"}, changes
    assert all("police_officer" in text for _, text in narrower), changes
    rows = [row.split("\t") for row in page.locator("#approvals tbody tr").all_inner_texts()]
    approvals = {row[0]: row[2] for row in rows}
    assert approvals == {"education": "ig-education", "housing": "nobody yet"}, approvals
    assert page.locator("#awaiting").inner_text() == "Still to approve: housing"
    check_accessible(page)
    shot(page, "policy-release")


def test_a_release_id_the_store_does_not_hold_is_refused_plainly(open_page: Any, world: World) -> None:
    page = sign_in(open_page(), world, "ig.ian")
    page.goto(world.base + "/policy/release")
    page.get_by_label("Release id").fill("0123456789abcdef")
    with page.expect_navigation():
        page.get_by_role("button", name="Show the release").click()
    assert "no release has that id" in page.locator("main").inner_text()
    assert page.locator("#release-id-shown").count() == 0
    check_accessible(page)


def test_mash_manager_sees_the_queue_opens_a_referral_and_rates_it(open_page: Any, world: World) -> None:
    page = sign_in(open_page(), world, "manager.mo")
    page.goto(world.base + "/referrals")
    assert int(page.locator("#queue-total").inner_text()) >= 1
    check_accessible(page)
    shot(page, "referral-queue")
    with page.expect_navigation():
        page.locator("#queue tbody tr").first.get_by_role("button", name="Open").click()
    state = page.locator("#referral-state").inner_text()
    if state == "received":
        with page.expect_navigation():
            page.get_by_role("button", name="Mark screened").click()
    page.get_by_label("Rating").select_option("red")
    with page.expect_navigation():
        page.locator("#rate-form button").click()
    assert page.locator("#referral-rating").inner_text() == "red", page.content()
    assert page.locator("#referral-state").inner_text() == "rated"
    check_accessible(page)
    shot(page, "referral")
    with page.expect_navigation():
        page.get_by_role("button", name="Start research").click()
    assert page.locator("#referral-state").inner_text() == "researching", page.locator("main").inner_text()
    # Research beside the package the social worker would get for a section 47 strategy discussion.
    page.get_by_label("Decision to preview").select_option("s47_strategy_discussion")
    page.get_by_label("Research purpose").select_option("safeguarding_screening")
    page.get_by_label("Legal basis").select_option("dpa_2018_sch1_para18")
    page.get_by_label("Agreement").select_option("mash-isa-2026")
    with page.expect_navigation():
        page.get_by_role("button", name="Research and compare").click()
    assert page.locator("#compare").count() == 1, page.locator("main").inner_text()
    headers = page.locator("#compare > thead > tr > th").all_inner_texts()
    assert headers == ["Agency", "Research answer (mash_manager)", "Package to social_worker"]
    agencies = page.locator("#compare > tbody > tr > th").all_inner_texts()
    assert {"health", "police", "csc"} <= set(agencies), agencies
    assert page.locator("#compare > tbody > tr").first.locator("section.answer").count() == 2, "both sides answered"
    check_accessible(page)
    shot(page, "referral-compare")
    with page.expect_navigation():
        page.get_by_role("button", name="Research complete").click()
    assert page.locator("#referral-state").inner_text() == "researching", page.locator("main").inner_text()
    decisions = page.locator("#decision option").evaluate_all("options => options.map(o => o.value)")
    assert "early_help" in decisions, decisions  # the workflow's decisions, from the gateway
    page.get_by_label("Decision", exact=True).select_option("early_help")
    page.get_by_label("Receiving team (when the decision routes it)").fill("early-help-hackney")
    page.get_by_label("Reason").fill("Needs met by an early help assessment")
    with page.expect_navigation():
        page.get_by_role("button", name="Record the decision").click()
    assert page.locator("#referral-state").inner_text() == "decided", page.locator("main").inner_text()
    assert page.locator("#decided-at").inner_text().startswith("(recorded ")
    assert "after its deadline" not in page.locator("#decided-at").inner_text()
    history = page.locator("main table tbody tr").all_inner_texts()
    assert any("manager.mo" in row for row in history)


def test_mash_manager_sees_research_and_decision_deadline_compliance_by_rating(open_page: Any,
                                                                             world: World) -> None:
    """The referral rated red above, researched and decided at once, counts as on time for red twice."""
    page = sign_in(open_page(), world, "manager.mo")
    page.goto(world.base + "/referrals")
    with page.expect_navigation():
        page.get_by_role("link", name="Research and decision deadlines by rating").click()
    rows = page.locator("#compliance tbody tr").all_inner_texts()
    assert any(row.split()[:2] == ["red", "1"] for row in rows), rows
    assert page.locator("#compliance-chart svg rect").count() >= 4
    decided = page.locator("#decision-compliance tbody tr").all_inner_texts()
    assert any(row.split()[:2] == ["red", "1"] for row in decided), decided
    assert page.locator("#decision-compliance-chart svg rect").count() >= 4
    check_accessible(page)
    shot(page, "referral-compliance")


def test_a_step_the_referral_state_does_not_allow_is_refused_with_the_gateways_reason(open_page: Any,
                                                                                     world: World) -> None:
    """The referral decided above cannot start research again: the gateway's FAILED_PRECONDITION is shown."""
    page = sign_in(open_page(), world, "manager.mo")
    page.goto(world.base + "/referrals")
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    response = page.request.post(world.base + "/referrals/act", form={
        "csrf_token": csrf, "referral_id": world.referral_id, "action": "start_research"})
    assert response.status == 409
    assert "FAILED_PRECONDITION" in response.text()


def test_reviewer_sees_pending_reviews_and_approves_at_a_lower_level(open_page: Any, world: World) -> None:
    page = sign_in(open_page(), world, "reviewer.hana")
    page.goto(world.base + "/reviews")
    waiting = int(page.locator("#review-count").inner_text())
    assert waiting >= 1
    check_accessible(page)
    shot(page, "reviews")
    with page.expect_navigation():
        page.locator("section.review").first.get_by_role("button", name="Open the records").click()
    assert page.locator("#records-heading").is_visible()
    assert page.locator("section.answer h3").first.inner_text().startswith("health")
    check_accessible(page)
    shot(page, "review-open")
    page.goto(world.base + "/reviews")
    section = page.locator("section.review").first
    section.get_by_label("Level").select_option("exists")
    with page.expect_navigation():
        section.get_by_role("button", name="Approve lower").click()
    assert "approved" in page.locator("#review-message").inner_text()
    assert int(page.locator("#review-count").inner_text()) == waiting - 1


def test_a_person_with_two_roles_switches_between_them(open_page: Any, world: World) -> None:
    page = sign_in(open_page(), world, "multi.max")
    assert page.get_by_role("link", name="Audit log", exact=True).count() == 1
    page.get_by_label("Acting as").select_option("mash_manager")
    with page.expect_navigation():
        page.get_by_role("button", name="Switch").click()
    assert page.get_by_role("link", name="Referrals", exact=True).count() == 1
    assert page.get_by_role("link", name="Audit log", exact=True).count() == 0


def test_no_identifier_appeared_in_any_url_or_the_access_log(world: World, browser_urls: list[str]) -> None:
    """Over the whole run: every URL the browser asked for, and every line the console logged."""
    assert len(browser_urls) > 20
    log = wait_for_log(world.console_log, "POST /audit/who")
    assert re.search(r"POST /audit/who 200", log), "the access log records requests"
    for identifier in IDENTIFIERS:
        for variant in {identifier, identifier.replace(" ", ""), identifier.lower()}:
            assert not [u for u in browser_urls if variant.lower() in u.lower()], variant
            assert variant.lower() not in log.lower(), variant
    assert not [u for u in browser_urls if "?" in u], "no page takes a query string"
