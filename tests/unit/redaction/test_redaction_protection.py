"""Protected services: only the roles the vocabulary declares as readers see content, whatever the level."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from gateway.domain import DisclosureLevel, Field, FieldDisclosure, Record, RecordKind
from gateway.keyring import Keyring
from gateway.policy import PolicySnapshot, load_snapshot
from gateway.redaction import GENERIC_CATEGORY, RedactionContext, RedactionResult, Redactor, parse_rules
from tests.unit.redaction.strategies import REPO_ROOT, SHIPPED_RULES_PATH, load_catalogue

KEYS = Keyring("k1", {"k1": bytes(range(32))})
ON = date(2026, 11, 26)
WHEN = datetime(2025, 1, 9, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def shipped() -> PolicySnapshot:
    return load_snapshot(REPO_ROOT / "policies")


def sexual_health(category: str = "health.sexual_health") -> Record:
    return Record(
        "health", "sh-0042", "sexual_health_attendance", category, RecordKind.EVENT, WHEN,
        "Attended the Riverside clinic",
        (
            Field("clinic", "service.name", "Riverside Sexual Health Clinic"),
            Field("attendance_date", "record.date", "2025-01-09"),
            Field("reason", "health.clinical", "canary-reason"),
        ),
    )


def refuge() -> Record:
    return Record(
        "housing", "rf-7", "refuge_placement", "housing.refuge", RecordKind.INVOLVEMENT, WHEN, "Placed",
        (
            Field("refuge_address", "location.protected", "Safe House, 9 Hidden Lane"),
            Field("placement_date", "record.date", "2025-01-20"),
            Field("support_worker", "staff.contact", "Refuge worker Ann"),
        ),
    )


def redact(snapshot: PolicySnapshot, record: Record, role: str, level: DisclosureLevel) -> RedactionResult:
    who = snapshot.vocabulary.roles[role]
    ctx = RedactionContext(record.agency, level, role, who.agency, who.inside_mash, ON)
    return Redactor(snapshot.redaction, KEYS).redact([record], ctx)


def assert_withheld_generically(result: RedactionResult) -> None:
    assert result.records == ()
    assert {(m.category, m.disclosure) for m in result.manifest} == {(GENERIC_CATEGORY, FieldDisclosure.WITHHELD)}
    text = json.dumps(dataclasses.asdict(result), default=str).casefold()
    for tell in ("riverside", "sexual", "canary", "hidden lane", "refuge"):
        assert tell not in text


@pytest.mark.parametrize("level", [DisclosureLevel.PERTINENT, DisclosureLevel.FULL])
@pytest.mark.parametrize("role", ["health_visitor", "mash_manager", "mash_researcher_police"])
def test_sexual_health_content_reaches_no_role_but_its_declared_reader(
    shipped: PolicySnapshot, role: str, level: DisclosureLevel
) -> None:
    """A health visitor is of the owning agency but not a declared reader, so even a FULL grant shows nothing."""
    assert_withheld_generically(redact(shipped, sexual_health(), role, level))


def test_the_declared_reader_of_sexual_health_sees_its_content(shipped: PolicySnapshot) -> None:
    """The health MASH researcher, the category's declared reader, sees the record under the level granted."""
    result = redact(shipped, sexual_health(), "mash_researcher_health", DisclosureLevel.FULL)
    assert result.records[0].fields[0].value == "Riverside Sexual Health Clinic"


@pytest.mark.parametrize(("role", "released"), [("housing_officer", False), ("mash_researcher_housing", True)])
def test_a_refuge_placement_is_released_only_to_its_declared_reader(
    shipped: PolicySnapshot, role: str, released: bool
) -> None:
    """A housing officer is not a declared reader of refuge placements; the housing MASH researcher is."""
    result = redact(shipped, refuge(), role, DisclosureLevel.PERTINENT)
    if released:
        assert [r.record_id for r in result.records] == ["rf-7"]
    else:
        assert_withheld_generically(result)


def test_a_record_claiming_the_readers_agency_does_not_pass_for_another_agencys_category(
    shipped: PolicySnapshot,
) -> None:
    """A sexual-health record labelled as housing's, read by housing's researcher, is still withheld."""
    forged = dataclasses.replace(sexual_health(), agency="housing")
    ctx = RedactionContext("housing", DisclosureLevel.FULL, "mash_researcher_health", "health", True, ON)
    assert_withheld_generically(Redactor(shipped.redaction, KEYS).redact([forged], ctx))


SUB_CATEGORY = """
  health.gum_clinic_notes:
    description: Notes of a genito-urinary medicine clinic.
    parent: health.sexual_health
    kind: event
    record_type: gum_clinic_note
    fields:
      clinic: service.name
      attendance_date: record.date
      reason: health.clinical
"""


def test_a_sub_category_declared_under_a_protected_one_is_withheld_like_it(tmp_path: Path) -> None:
    """A category with `parent: health.sexual_health` but another name is protected by the redactor too."""
    directory = tmp_path / "policies"
    shutil.copytree(REPO_ROOT / "policies", directory)
    vocabulary = directory / "vocabulary" / "record_categories.yaml"
    vocabulary.write_text(vocabulary.read_text(encoding="utf-8") + SUB_CATEGORY, encoding="utf-8")
    snapshot = load_snapshot(directory)
    record = sexual_health("health.gum_clinic_notes")
    assert_withheld_generically(redact(snapshot, record, "mash_manager", DisclosureLevel.FULL))
    assert_withheld_generically(redact(snapshot, record, "health_visitor", DisclosureLevel.FULL))
    reader = redact(snapshot, record, "mash_researcher_health", DisclosureLevel.FULL)
    assert [r.record_id for r in reader.records] == ["sh-0042"]


def test_a_protected_category_without_readers_is_read_by_no_one() -> None:
    """A category declared protected with no readers is withheld even from the owning agency's researcher."""
    catalogue = load_catalogue()
    rules = parse_rules(
        SHIPPED_RULES_PATH.read_text(encoding="utf-8"),
        source_name="redaction.yaml",
        agencies=catalogue.agencies,
        field_categories=catalogue.field_categories,
        record_categories=catalogue.record_categories,
        protected={"health.sexual_health": ()},
    )
    ctx = RedactionContext("health", DisclosureLevel.FULL, "mash_researcher_health", "health", True, ON)
    assert_withheld_generically(Redactor(rules, KEYS).redact([sexual_health()], ctx))
