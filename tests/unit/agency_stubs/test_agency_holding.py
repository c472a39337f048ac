"""A declared agency the world does not simulate is served from a records file, or as an empty holding."""

from __future__ import annotations

from pathlib import Path

import pytest

from agency_stubs.__main__ import main
from agency_stubs.cast import JODIE_MERCER
from agency_stubs.holding import catalogue_from_policy, policy_dataset, seeded_records
from gateway.domain import RecordKind, SubjectIdentifiers
from gateway.policy.snapshot import PolicySnapshot, load_snapshot
from tests.joining_agency import add_youth_offending_service

RECORDS = """\
people:
  - person_ref: YOS-000042
    given_name: Tyler
    family_name: Brook
    date_of_birth: 2010-06-02
    nhs_number: "999 000 7004"
    records:
      - record_id: YOS-R-0001
        category: yos.court_order
        occurred_at: 2026-09-01T09:30:00Z
        summary: Referral order, 9 months
        fields: {order_type: referral order, start_date: "2026-09-01", offence: possession of a bladed article}
"""


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory, policy_dir: Path) -> Path:
    return add_youth_offending_service(policy_dir, tmp_path_factory.mktemp("policy") / "policies")


@pytest.fixture(scope="module")
def snapshot(joined: Path) -> PolicySnapshot:
    return load_snapshot(joined)


def test_an_empty_holding_has_the_vocabulary_categories_and_the_redaction_contact(snapshot: PolicySnapshot) -> None:
    """Without a file, the node holds nobody but describes its declared categories and MASH contact."""
    dataset = policy_dataset(snapshot, "yos")
    assert len(dataset) == 0
    assert [s.category for s in dataset.catalogue] == ["yos.court_order", "yos.assessment"]
    assert dataset.catalogue[1].kind is RecordKind.STATE
    assert dataset.mash_contact.team == "YOS MASH officer"
    assert dataset.lookup(SubjectIdentifiers(nhs_number="9990007004"), ["yos.court_order"]) == []


def test_records_from_a_file_are_tagged_from_the_vocabulary_and_matched(
    snapshot: PolicySnapshot, tmp_path: Path
) -> None:
    """Record type, kind and field categories come from the vocabulary; lookup matches by NHS number."""
    path = tmp_path / "yos.yaml"
    path.write_text(RECORDS)
    dataset = policy_dataset(snapshot, "yos", path)
    (match,) = dataset.lookup(SubjectIdentifiers(nhs_number="999 000 7004"), ["yos.court_order"])
    (record,) = match.records
    assert (record.record_type, record.kind) == ("youth_court_order", RecordKind.INVOLVEMENT)
    assert {f.name: f.category for f in record.fields}["offence"] == "justice.offence"


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("category: yos.court_order", "category: police.intelligence", "records[0].category"),
        ("order_type: referral order", "verdict: guilty", "records[0].fields: yos.court_order has no field"),
        ("2026-09-01T09:30:00Z", "2026-09-01 09:30", "records[0].occurred_at"),
        ('"999 000 7004"', '"999 000 7005"', "people[0].nhs_number: not a valid NHS number"),
        ("date_of_birth: 2010-06-02", "date_of_birth: 02/06/2010", "people[0].date_of_birth"),
        ("    given_name: Tyler\n", "", "people[0].given_name"),
    ],
)
def test_a_bad_records_file_names_the_place_and_never_the_value(
    snapshot: PolicySnapshot, tmp_path: Path, old: str, new: str, where: str
) -> None:
    """Each mistake is reported by its path in the file, without repeating identifiers or content."""
    path = tmp_path / "yos.yaml"
    path.write_text(RECORDS.replace(old, new))
    with pytest.raises(ValueError, match="people") as caught:
        policy_dataset(snapshot, "yos", path)
    assert where in str(caught.value)
    for value in ("7004", "7005", "Tyler", "Brook", "bladed", "guilty"):
        assert value not in str(caught.value)


def test_the_command_line_refuses_an_unreadable_records_file(
    joined: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing or non-YAML --records file exits 2 before any node starts."""
    args = ["--agency", "yos", "--policy-dir", str(joined), "--records"]
    assert main([*args, str(tmp_path / "missing.yaml")]) == 2
    (tmp_path / "bad.yaml").write_text("people: [\n")
    assert main([*args, str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err
    assert "not valid YAML" in err


def test_catalogue_from_the_shipped_policy_matches_the_simulated_catalogue(policy_dir: Path) -> None:
    """For the simulated agencies the vocabulary and the stubs' own catalogue agree, category by category."""
    from agency_stubs.catalogue import CATALOGUE

    snapshot = load_snapshot(policy_dir)
    for agency, specs in CATALOGUE.items():
        assert {s.category: dict(s.fields) for s in catalogue_from_policy(snapshot, agency)} == {
            s.category: dict(s.fields) for s in specs
        }


def test_the_shipped_adult_social_care_records_match_the_shipped_policy_and_hold_an_adult_at_risk(
    policy_dir: Path,
) -> None:
    """The seeded asc file loads against the shipped vocabulary and holds a s42 enquiry on a cast adult."""
    path = seeded_records("asc")
    assert path is not None
    dataset = policy_dataset(load_snapshot(policy_dir), "asc", path)
    (match,) = dataset.lookup(SubjectIdentifiers(nhs_number=JODIE_MERCER.nhs_number), ["asc.s42_enquiry"])
    assert [r.category for r in match.records] == ["asc.s42_enquiry"]


def test_an_agency_without_a_shipped_records_file_has_no_seeded_records() -> None:
    """Only agencies the package ships a file for are seeded; any other holds nobody by default."""
    assert seeded_records("yos") is None
    assert seeded_records("police") is None
