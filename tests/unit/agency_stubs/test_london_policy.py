"""The generated pan-London policy directory: areas, borough agencies and hubs, one agreement per borough,
one cross-borough agreement, bindings and a PKI, and `policy check` clean on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from agency_stubs.__main__ import main as stubs_main
from agency_stubs.london import BOROUGH_KINDS, BOROUGHS
from agency_stubs.london_policy import (
    PAN_LONDON_AGREEMENT,
    PAN_LONDON_ANALYSIS_AGREEMENT,
    PAN_LONDON_PURPOSES,
    TEMPLATE,
    GeneratedPartnership,
    borough_agreement,
    generate_partnership,
)
from agency_stubs.youth_offending import add_youth_offending_service, declare_youth_offending_service
from gateway.cli.main import main as cli
from gateway.pki import PkiLayout
from gateway.policy.snapshot import PolicySnapshot, load_snapshot

AREAS = ("barking_and_dagenham", "barnet", "bexley")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GeneratedPartnership:
    tmp = tmp_path_factory.mktemp("london")
    return generate_partnership(tmp / "policies", 3, pki=tmp / "pki")


@pytest.fixture(scope="module")
def snapshot(generated: GeneratedPartnership) -> PolicySnapshot:
    return load_snapshot(generated.policy_dir)


def test_policy_check_is_clean_on_a_generated_partnership(generated: GeneratedPartnership,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`mash-gateway policy check --strict` finds nothing: no error, no warning."""
    assert cli(["policy", "check", "--strict", str(generated.policy_dir)]) == 0, capsys.readouterr()
    assert "0 error(s)" in capsys.readouterr().out


def test_areas_are_the_first_boroughs_and_each_borough_agency_serves_one(snapshot: PolicySnapshot) -> None:
    """areas.yaml names the first three boroughs; csc/education/housing and the hub exist once per borough
    with its area; police, health, probation and adult social care serve all of London."""
    assert tuple(snapshot.vocabulary.areas) == AREAS
    for area in AREAS:
        for kind in (*BOROUGH_KINDS, "hub"):
            assert snapshot.area_of(f"{kind}_{area}") == area
        assert not snapshot.agencies[f"hub_{area}"].holds_records
        assert all(snapshot.agencies[f"{k}_{area}"].holds_records for k in BOROUGH_KINDS)
    for agency in ("police", "health", "probation", "asc"):
        assert snapshot.agencies[agency].holds_records
        assert snapshot.area_of(agency) == ""
    assert "csc_barnet.case" in snapshot.vocabulary.record_categories
    assert "csc.case" not in snapshot.vocabulary.record_categories


def test_each_borough_agreement_stays_in_its_borough(snapshot: PolicySnapshot) -> None:
    """mash-isa-2026-<borough> joins that borough's agencies and hub with the London-wide agencies only."""
    for area in AREAS:
        agreement = snapshot.agreements[borough_agreement("mash-isa-2026", area)]
        assert not agreement.cross_area
        assert {snapshot.area_of(p) for p in agreement.parties} == {"", area}
        assert {f"hub_{area}", f"csc_{area}", "police", "health"} <= set(agreement.parties)


def test_the_pan_london_agreement_is_cross_area_for_screening_and_child_protection_only(
        snapshot: PolicySnapshot) -> None:
    """pan-london-isa-2026 is the one cross-area agreement for cases: every agency of every borough, screening
    and child protection only (not early help, children-in-need assessments or tenancy management); the
    other cross-area agreement is for analysis purposes only."""
    cross = sorted(name for name, a in snapshot.agreements.items() if a.cross_area)
    assert cross == sorted([PAN_LONDON_AGREEMENT, PAN_LONDON_ANALYSIS_AGREEMENT])
    analysis = snapshot.agreements[PAN_LONDON_ANALYSIS_AGREEMENT]
    assert set(analysis.purposes) == {"safeguarding_analysis", "strategic_safeguarding_analysis"}
    assert {f"{k}_{a}" for a in AREAS for k in BOROUGH_KINDS} <= set(analysis.parties)
    agreement = snapshot.agreements[PAN_LONDON_AGREEMENT]
    assert set(agreement.purposes) == set(PAN_LONDON_PURPOSES)
    assert {f"{k}_{a}" for a in AREAS for k in (*BOROUGH_KINDS, "hub")} <= set(agreement.parties)
    for purpose in ("early_help", "s17_assessment", "housing_management"):
        assert not any(snapshot.purpose_within(purpose, p) for p in agreement.purposes), purpose


def test_each_borough_mash_and_agency_system_has_its_own_identity_and_certificate(
        generated: GeneratedPartnership) -> None:
    """Bindings give each borough's MASH console the MASH roles; the PKI has a certificate for every node
    and every bound identity, and the partnership's own hub systems assert no MASH role."""
    bindings = yaml.safe_load((generated.policy_dir / "bindings.yaml").read_text())["bindings"]
    for area in AREAS:
        assert bindings[generated.hub_identity(area)] == ["mash_manager", "mash_social_worker"]
        assert "social_worker" in bindings[f"spiffe://mash.local/agency/csc_{area}/system/case-system"]
    assert not [i for i, roles in bindings.items() if "/agency/hub/" in i and "mash_manager" in roles]
    assert not [i for i in bindings if "/agency/csc/" in i or "/agency/hub/system/mash-console" in i]
    assert generated.pki_dir is not None
    pki = PkiLayout(generated.pki_dir)
    for node in (*generated.borough_agencies, "police", "health", "probation", "asc"):
        assert all(p.is_file() for p in pki.node(node)), node
    assert all(p.is_file() for p in pki.client("hub_bexley", "mash-console"))


def test_an_existing_directory_or_a_bad_count_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The generator never overwrites a policy directory and takes 1-32 boroughs; the CLI exits 2 and says why."""
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        generate_partnership(tmp_path / "taken", 2)
    with pytest.raises(ValueError, match="between 1 and 32"):
        generate_partnership(tmp_path / "new", 33)
    assert not (tmp_path / "new").exists()
    assert stubs_main(["london", "--boroughs", "0", "--out", str(tmp_path / "zero")]) == 2
    assert "between 1 and 32" in capsys.readouterr().err
    assert stubs_main(["london", "--boroughs", "2", "--out", str(tmp_path / "two")]) == 0
    assert "2 borough(s), 8 borough agencies, 2 MASH hubs" in capsys.readouterr().out


def test_each_borough_has_its_own_youth_offending_service(generated: GeneratedPartnership,
                                                           snapshot: PolicySnapshot) -> None:
    """The shipped policy has no youth offending service; the generated partnership gives each borough one
    (`yos_<borough>`, its two record categories, access lines, redaction contact, case system binding and node
    certificate), a party to its borough's agreements and to both cross-borough ones, never another borough's."""
    assert "yos" not in load_snapshot(TEMPLATE).agencies
    bindings = yaml.safe_load((generated.policy_dir / "bindings.yaml").read_text())["bindings"]
    redaction = yaml.safe_load((generated.policy_dir / "redaction.yaml").read_text())["agencies"]
    assert generated.pki_dir is not None
    pki = PkiLayout(generated.pki_dir)
    for area in AREAS:
        yos = f"yos_{area}"
        assert snapshot.agencies[yos].holds_records
        assert snapshot.area_of(yos) == area
        assert {f"{yos}.court_order", f"{yos}.assessment"} <= set(snapshot.vocabulary.record_categories)
        assert yos in generated.borough_agencies
        lines = (generated.policy_dir / "agencies" / f"{yos}.csv").read_text()
        assert f"agency:{yos}, cat:{yos}.court_order" in lines
        assert "agency:yos," not in lines
        assert redaction[yos]["contact"]["team"] == f"YOS MASH officer, {BOROUGHS[area]}"
        assert bindings[f"spiffe://mash.local/agency/{yos}/system/case-system"] == ["yos_case_manager"]
        assert all(p.is_file() for p in pki.node(yos)), yos
        for template in ("mash-isa-2026", "mash-analysis-isa-2026"):
            agreement = snapshot.agreements[borough_agreement(template, area)]
            assert yos in agreement.parties, template
            assert yos in agreement.categories, template
            assert not [p for p in agreement.parties if p.startswith("yos_") and p != yos], template
        for name in (PAN_LONDON_AGREEMENT, PAN_LONDON_ANALYSIS_AGREEMENT):
            assert yos in snapshot.agreements[name].parties, name
    assert "yos.court_order" not in snapshot.vocabulary.record_categories
    assert not [i for i in bindings if "/agency/yos/" in i]
    assert not snapshot.agencies["yos"].holds_records  # the home of the case manager role only


def test_policy_check_is_clean_at_32_boroughs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """All 32 boroughs, each with its youth offending service: `policy check --strict` finds nothing."""
    made = generate_partnership(tmp_path / "policies", 32)
    assert len(made.borough_agencies) == 32 * len(BOROUGH_KINDS)
    assert cli(["policy", "check", "--strict", str(made.policy_dir)]) == 0, capsys.readouterr()
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out


def test_a_template_that_already_has_the_youth_offending_service_gets_it_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Generating from a policy the service has joined uses its declaration as is, and the result is clean."""
    joined = add_youth_offending_service(TEMPLATE, tmp_path / "joined")
    made = generate_partnership(tmp_path / "policies", 2, source=joined)
    assert [a for a in made.borough_agencies if a.startswith("yos_")] == ["yos_barking_and_dagenham", "yos_barnet"]
    assert cli(["policy", "check", "--strict", str(made.policy_dir)]) == 0, capsys.readouterr()


def test_a_policy_not_shaped_like_the_shipped_one_is_refused_with_what_is_missing(tmp_path: Path) -> None:
    """Declaring the service where the children's MASH agreement lists other parties fails and names the text."""
    target = tmp_path / "odd"
    shutil.copytree(TEMPLATE, target)
    agreements = target / "agreements.yaml"
    agreements.write_text(agreements.read_text().replace("probation, asc, hub]", "asc, hub]"))
    with pytest.raises(ValueError, match=r"agreements.yaml no longer contains 'parties: \[police"):
        declare_youth_offending_service(target)
