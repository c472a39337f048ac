"""Areas (boroughs): vocabulary/areas.yaml, an agency's `area`, an agreement's `cross_area`, and the rule
that one area's requester asks another area's agency only under a cross-area agreement."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from policy_helpers import SHIPPED, edit

from gateway.cli.main import main
from gateway.cli.policy_cmd import CLEAN, UNANSWERABLE
from gateway.errors import Finding, PolicyError
from gateway.policy import PolicySnapshot, is_blocking, lint, load_snapshot, load_test_cases, run_suite
from gateway.policy.agreements import agreement_refusal
from gateway.policy.diff import CHANGED, NARROWER, WIDER, diff_settings, diff_snapshots
from gateway.policy.release import required_approvals
from gateway.policy.sources import content_hash
from tests.two_boroughs import CAMDEN_AGREEMENT, HACKNEY_AGREEMENT, PAN_AGREEMENT, add_two_boroughs

TODAY = date(2026, 11, 26)
AGENCIES = "vocabulary/agencies.yaml"
AREAS = "vocabulary/areas.yaml"
AGREEMENTS = "agreements.yaml"


@pytest.fixture
def boroughs(tmp_path: Path) -> Path:
    """A writable two-borough copy of the shipped policy (Camden and Hackney)."""
    return add_two_boroughs(SHIPPED, tmp_path / "policies")


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> PolicySnapshot:
    return load_snapshot(add_two_boroughs(SHIPPED, tmp_path_factory.mktemp("areas") / "policies"))


def findings_of(directory: Path) -> list[Finding]:
    with pytest.raises(PolicyError) as caught:
        load_snapshot(directory)
    return list(caught.value.findings)


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the first line of `path` that contains `text`."""
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


# -- parsing ---------------------------------------------------------------------------------------------

def test_a_partnership_without_areas_yaml_has_no_areas(shipped: PolicySnapshot) -> None:
    """The shipped single-area policy declares no areas: every agency serves the whole partnership."""
    assert dict(shipped.areas) == {}
    assert {shipped.area_of(a) for a in shipped.agencies} == {""}
    assert not any(a.cross_area for a in shipped.agreements.values())


def test_areas_agencies_and_cross_area_agreements_load(two: PolicySnapshot) -> None:
    """Areas keep their titles; each agency says the area it serves (none: all of them); flags load."""
    assert {n: a.title for n, a in two.areas.items()} == {
        "camden": "London Borough of Camden", "hackney": "London Borough of Hackney"}
    assert [two.area_of(a) for a in ("csc", "hub_camden", "csc_hackney", "hub_hackney", "police", "hub")] == [
        "camden", "camden", "hackney", "hackney", "", ""]
    assert two.area_of("no_such_agency") == ""
    assert two.agreements[PAN_AGREEMENT].cross_area is True
    assert two.agreements[CAMDEN_AGREEMENT].cross_area is False
    # The example adds no finding of its own.
    assert [f.message for f in lint(two, TODAY)] == [f.message for f in lint(load_snapshot(SHIPPED), TODAY)]


def test_an_undeclared_area_is_reported_at_its_line_with_the_closest_name(boroughs: Path) -> None:
    """A misspelt area on an agency names the file, the line and the intended area."""
    edit(boroughs / AGENCIES, "    area: hackney\n", "    area: hackny\n")
    line = line_of(boroughs / AGENCIES, "area: hackny")
    found = [f for f in findings_of(boroughs) if f.file == AGENCIES and f.line == line]
    assert [f.message for f in found] == ["agency 'csc_hackney': undeclared area 'hackny' (did you mean 'hackney'?)"]


def test_an_area_without_areas_yaml_says_none_is_declared(boroughs: Path) -> None:
    """Naming an area in a partnership that declares none points at the missing file."""
    (boroughs / AREAS).unlink()
    messages = [f.message for f in findings_of(boroughs) if f.file == AGENCIES]
    assert f"agency 'csc': undeclared area 'camden' ({AREAS} declares none)" in messages
    assert len(messages) == 4  # csc, csc_hackney and both hubs


def test_a_bad_area_id_and_a_bad_entry_are_reported_in_areas_yaml(boroughs: Path) -> None:
    """Area ids are lower-case names; an entry needs a title and nothing else."""
    (boroughs / AREAS).write_text(
        "areas:\n"
        "  camden: {title: London Borough of Camden}\n"
        "  hackney: {title: London Borough of Hackney}\n"
        "  Tower-Hamlets: {title: Tower Hamlets}\n"
        "  islington: {name: Islington}\n")
    found = [(f.line, f.message) for f in findings_of(boroughs) if f.file == AREAS]
    assert (4, "area name 'Tower-Hamlets' is not a valid name ([a-z][a-z0-9_]*)") in found
    assert any(line == 5 and "title" in message and "required" in message for line, message in found), found
    assert any(line == 5 and "name is not a known key" in message for line, message in found), found


def test_areas_yaml_must_hold_an_areas_mapping(boroughs: Path) -> None:
    """A misspelt top-level key is reported, not silently read as no areas."""
    (boroughs / AREAS).write_text("boroughs:\n  camden: {title: Camden}\n")
    messages = [f.message for f in findings_of(boroughs) if f.file == AREAS]
    assert messages == ["missing top-level key 'areas'"]


def test_cross_area_must_be_true_or_false(boroughs: Path) -> None:
    """`cross_area: "yes"` is not coerced: the agreement is reported at that line."""
    edit(boroughs / AGREEMENTS, "    cross_area: true\n", '    cross_area: "yes"\n')
    line = line_of(boroughs / AGREEMENTS, 'cross_area: "yes"')
    found = [f.message for f in findings_of(boroughs) if f.file == AGREEMENTS and f.line == line]
    assert found, "a non-boolean cross_area was accepted"
    assert all(PAN_AGREEMENT in m and "cross_area" in m for m in found), found


def test_areas_yaml_is_part_of_the_policy_version(boroughs: Path) -> None:
    """Changing only an area's title gives another policy version, so a release covers areas too."""
    before = content_hash(boroughs)
    edit(boroughs / AREAS, "London Borough of Hackney", "Hackney Council")
    assert content_hash(boroughs) != before


# -- the rule ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("agreement", "requester", "agency", "refused"),
    [
        (CAMDEN_AGREEMENT, "hub_camden", "csc", False),  # same area
        (HACKNEY_AGREEMENT, "hub_hackney", "csc_hackney", False),
        (CAMDEN_AGREEMENT, "hub_camden", "csc_hackney", True),  # different areas, not cross-area
        (HACKNEY_AGREEMENT, "hub_hackney", "csc", True),
        (PAN_AGREEMENT, "hub_camden", "csc_hackney", False),  # different areas, cross-area agreement
        (PAN_AGREEMENT, "hub_hackney", "csc", False),
        (CAMDEN_AGREEMENT, "hub_camden", "police", False),  # a pan-partnership agency answers every area
        (HACKNEY_AGREEMENT, "hub_hackney", "police", False),
        (CAMDEN_AGREEMENT, "hub", "csc", False),  # a pan-partnership requester asks every area
        (HACKNEY_AGREEMENT, "hub", "csc_hackney", False),
        (CAMDEN_AGREEMENT, "police", "csc_hackney", False),
        (CAMDEN_AGREEMENT, "hub_lambeth", "csc_hackney", False),  # a requester not in agencies.yaml: as before
    ],
)
def test_the_area_rule(two: PolicySnapshot, agreement: str, requester: str, agency: str, refused: bool) -> None:
    """Areas differ and both are set: asked only under a cross-area agreement. Otherwise areas change nothing."""
    reason = two.area_refusal(agreement, requester, agency)
    assert bool(reason) is refused, reason


def test_the_area_refusal_names_the_agreement_both_agencies_and_their_areas(two: PolicySnapshot) -> None:
    assert two.area_refusal(CAMDEN_AGREEMENT, "hub_camden", "csc_hackney") == (
        f"agreement {CAMDEN_AGREEMENT} is not a cross-area agreement: "
        "hub_camden (camden) may not ask csc_hackney (hackney) under it")


def test_agreement_refusal_reproduces_the_area_rule_for_the_requester(two: PolicySnapshot) -> None:
    """The explanation refuses what the gateway refuses, and allows the same cell under the pan agreement."""
    cell = {"purpose": "s47_enquiry", "agency": "csc_hackney", "category": "csc_hackney.cp_plan", "on": TODAY}
    # hub_camden is no party to Hackney's agreement at all: that is said first, as the gateway does.
    assert "not a party" in agreement_refusal(two, HACKNEY_AGREEMENT, requester="hub_camden", **cell)
    assert agreement_refusal(two, PAN_AGREEMENT, requester="hub_camden", **cell) == ""
    assert agreement_refusal(two, HACKNEY_AGREEMENT, requester="hub_hackney", **cell) == ""
    assert agreement_refusal(two, HACKNEY_AGREEMENT, requester="hub", **cell) == ""


def test_agreement_refusal_refuses_a_party_of_another_area(boroughs: Path) -> None:
    """A party in another area of a non-cross-area agreement is still not asked (the rule, not the parties)."""
    edit(boroughs / AGREEMENTS, "parties: [police, health, csc_hackney, hub, hub_hackney]",
         "parties: [police, health, csc_hackney, hub, hub_hackney, hub_camden]")
    snapshot = load_snapshot(boroughs)
    refusal = agreement_refusal(snapshot, HACKNEY_AGREEMENT, requester="hub_camden", purpose="s47_enquiry",
                                agency="csc_hackney", category="csc_hackney.cp_plan", on=TODAY)
    assert refusal == snapshot.area_refusal(HACKNEY_AGREEMENT, "hub_camden", "csc_hackney") + ", so it is not asked"
    assert refusal


# -- policy check -----------------------------------------------------------------------------------------

def test_an_agreement_spanning_areas_must_be_cross_area(boroughs: Path) -> None:
    """A non-cross-area agreement whose parties serve two areas is a blocking error at the agreement."""
    edit(boroughs / AGREEMENTS, "parties: [police, health, csc_hackney, hub, hub_hackney]",
         "parties: [police, health, csc_hackney, hub, hub_hackney, csc]")
    line = line_of(boroughs / AGREEMENTS, f"{HACKNEY_AGREEMENT}:")
    found = [f for f in lint(load_snapshot(boroughs), TODAY) if f.file == AGREEMENTS and f.line == line]
    assert [f.message for f in found] == [
        f"agreement {HACKNEY_AGREEMENT!r} has parties in 2 areas (camden, hackney) but is not a cross-area "
        "agreement; mark it `cross_area: true` or keep its parties to one area"]
    assert is_blocking(found[0])


def test_a_cross_area_agreement_may_span_areas(two: PolicySnapshot) -> None:
    assert not [f for f in lint(two, TODAY) if "cross-area" in f.message]


# -- diff -------------------------------------------------------------------------------------------------

def test_cross_area_false_to_true_widens_and_back_narrows(boroughs: Path, two: PolicySnapshot) -> None:
    edit(boroughs / AGREEMENTS, "    cross_area: true\n", "    cross_area: false\n")
    edit(boroughs / AGREEMENTS, "parties: [police, csc, csc_hackney, hub, hub_camden, hub_hackney]",
         "parties: [police, csc, hub, hub_camden]")
    narrowed = load_snapshot(boroughs)
    flags = [(c.subject, c.change, c.direction) for c in diff_settings(two, narrowed) if "cross_area" in c.change]
    assert flags == [(PAN_AGREEMENT, "cross_area True -> False", NARROWER)]
    flags = [(c.subject, c.change, c.direction) for c in diff_settings(narrowed, two) if "cross_area" in c.change]
    assert flags == [(PAN_AGREEMENT, "cross_area False -> True", WIDER)]


def test_an_agency_changing_area_is_reported_with_its_direction(boroughs: Path, two: PolicySnapshot) -> None:
    """Losing an area (serving everyone) widens, gaining one narrows, moving area is flagged as wider."""
    edit(boroughs / AGENCIES, "    holds_records: true\n    area: hackney\n", "    holds_records: true\n")
    edit(boroughs / AGENCIES, "  police:\n    title: Police\n", "  police:\n    title: Police\n    area: camden\n")
    edit(boroughs / AGENCIES, "    holds_records: false\n    area: hackney\n",
         "    holds_records: false\n    area: camden\n")
    edit(boroughs / AREAS, "London Borough of Hackney", "Hackney Council")
    found = [(c.area, c.subject, c.change, c.direction) for c in diff_settings(two, load_snapshot(boroughs))
             if c.area in ("agency", "area")]
    assert found == [
        ("agency", "csc_hackney", "area hackney -> -", WIDER),
        ("agency", "hub_hackney", "area hackney -> camden", WIDER),
        ("agency", "police", "area - -> camden", NARROWER),
        ("area", "hackney", "title changed", CHANGED),
    ]


def test_areas_added_and_removed_are_vocabulary_changes(shipped: PolicySnapshot, two: PolicySnapshot) -> None:
    _, added = diff_snapshots(shipped, two)
    assert [(c.kind, c.name) for c in added if c.kind == "areas"] == [("areas", "camden"), ("areas", "hackney")]
    _, removed = diff_snapshots(two, shipped)
    assert {(c.kind, c.name, c.added) for c in removed if c.kind == "areas"} == {
        ("areas", "camden", False), ("areas", "hackney", False)}


# -- policy tests and explain ------------------------------------------------------------------------------

CASES = f"""\
tests:
  - name: Camden's hub sees Camden's child protection plans under Camden's agreement
    role: mash_manager
    requester: hub_camden
    purpose: s47_enquiry
    agency: csc
    category: csc.cp_plan
    agreement: {CAMDEN_AGREEMENT}
    expect: FULL
  - name: Camden's hub sees Hackney's plans only under the pan-London agreement
    role: mash_manager
    requester: hub_camden
    purpose: s47_enquiry
    agency: csc_hackney
    category: csc_hackney.cp_plan
    agreement: {PAN_AGREEMENT}
    expect: FULL
  - name: Hackney's hub may not ask Camden under Hackney's agreement
    role: mash_manager
    requester: hub_hackney
    purpose: s47_enquiry
    agency: csc
    category: csc.cp_plan
    agreement: {HACKNEY_AGREEMENT}
    expect: NONE
"""


def test_policy_test_cases_may_name_the_requester(boroughs: Path) -> None:
    """A case with `requester` is judged as that agency's certificate asking, area rule included."""
    (boroughs / "tests" / "areas.yaml").write_text(CASES)
    suite = load_test_cases(boroughs)
    assert not suite.findings
    results = [r for r in run_suite(load_snapshot(boroughs), suite, today=TODAY) if r.case.file == "tests/areas.yaml"]
    assert [r.case.requester for r in results] == ["hub_camden", "hub_camden", "hub_hackney"]
    assert all(r.passed for r in results), [r.problems for r in results]


def test_a_policy_test_expecting_cross_area_access_without_a_cross_area_agreement_fails(boroughs: Path) -> None:
    """The case fails naming the area rule, exactly as the gateway would withhold the agency."""
    edit(boroughs / AGREEMENTS, "parties: [police, health, csc_hackney, hub, hub_hackney]",
         "parties: [police, health, csc_hackney, hub, hub_hackney, csc]")
    edit(boroughs / AGREEMENTS, "categories: [police, health, csc_hackney]",
         "categories: [police, health, csc_hackney, csc]")
    (boroughs / "tests" / "areas.yaml").write_text(CASES.replace("expect: NONE", "expect: FULL"))
    suite = load_test_cases(boroughs)
    [result] = [r for r in run_suite(load_snapshot(boroughs), suite, today=TODAY) if r.case.requester == "hub_hackney"]
    assert result.problems == (
        f"expected FULL, got NONE (agreement {HACKNEY_AGREEMENT} is not a cross-area agreement: "
        "hub_hackney (hackney) may not ask csc (camden) under it)",)


def test_a_policy_test_naming_an_undeclared_requester_is_reported(boroughs: Path) -> None:
    (boroughs / "tests" / "areas.yaml").write_text(CASES.replace("requester: hub_camden", "requester: hub_camdn"))
    suite = load_test_cases(boroughs)
    results = [r for r in run_suite(load_snapshot(boroughs), suite, today=TODAY) if r.case.requester == "hub_camdn"]
    assert results
    assert all(r.problems == ("undeclared agency 'hub_camdn' (did you mean 'hub_camden'?)",) for r in results)


def explain(capsys: pytest.CaptureFixture[str], directory: Path, *argv: str) -> tuple[int, str]:
    code = main(["policy", "explain", str(directory), "--role", "mash_manager", "--purpose", "s47_enquiry",
                 "--agency", "csc_hackney", "--category", "csc_hackney.cp_plan", "--date", "2026-11-26", *argv])
    return code, capsys.readouterr().out


def test_explain_takes_the_requester_and_reproduces_the_area_rule(
    boroughs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--requester hub_camden` under a non-cross-area agreement listing Hackney gives NONE and says why."""
    edit(boroughs / AGREEMENTS, "parties: [police, health, csc_hackney, hub, hub_hackney]",
         "parties: [police, health, csc_hackney, hub, hub_hackney, hub_camden]")
    code, out = explain(capsys, boroughs, "--agreement", HACKNEY_AGREEMENT, "--requester", "hub_camden")
    assert code == CLEAN
    assert f"mash_manager of hub_camden asking csc_hackney about csc_hackney.cp_plan for s47_enquiry under " \
           f"{HACKNEY_AGREEMENT} on 2026-11-26: NONE" in " ".join(out.split())
    assert "hub_camden (camden) may not ask csc_hackney (hackney)" in " ".join(out.split())
    code, out = explain(capsys, boroughs, "--agreement", PAN_AGREEMENT, "--requester", "hub_camden")
    assert code == CLEAN
    assert f"under {PAN_AGREEMENT} on 2026-11-26: FULL" in out


def test_explain_defaults_the_requester_to_the_roles_agency(boroughs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --requester the role's agency (the partnership-wide hub) asks: no area applies."""
    code, out = explain(capsys, boroughs, "--agreement", HACKNEY_AGREEMENT)
    assert code == CLEAN
    assert f"mash_manager asking csc_hackney about csc_hackney.cp_plan for s47_enquiry under {HACKNEY_AGREEMENT}" \
           in out
    assert "FULL" in out


def test_explain_with_an_undeclared_requester_is_unanswerable(
    boroughs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = explain(capsys, boroughs, "--agreement", PAN_AGREEMENT, "--requester", "hub_hackny")
    assert code == UNANSWERABLE
    assert "undeclared agency 'hub_hackny' (did you mean 'hub_hackney'?)" in out


def test_turning_an_agreement_cross_area_needs_its_record_holding_parties_approval(
    boroughs: Path, two: PolicySnapshot
) -> None:
    """A release making the pan agreement cross-area again is a widening each party holding records signs."""
    edit(boroughs / AGREEMENTS, "    cross_area: true\n", "    cross_area: false\n")
    edit(boroughs / AGREEMENTS, "parties: [police, csc, csc_hackney, hub, hub_camden, hub_hackney]",
         "parties: [police, csc, hub, hub_camden]")
    approvals, _ = required_approvals(load_snapshot(boroughs), two)
    owed = {agency for agency, lines in approvals.items()
            if f"▲ agreement {PAN_AGREEMENT}: cross_area False -> True" in lines}
    assert owed == {"police", "csc", "csc_hackney"}
