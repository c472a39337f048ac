"""Protected services under the shipped policies: for every role and purpose, nothing leaves the agency."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime

import pytest

from gateway.domain import Field, Record, RecordKind
from gateway.keyring import Keyring
from gateway.policy import PolicySnapshot, load_snapshot
from gateway.redaction import RedactionContext, Redactor
from tests.unit.redaction.strategies import REPO_ROOT

KEYS = Keyring("k1", {"k1": bytes(range(32))})
ON = date(2026, 6, 1)

PROTECTED_RECORDS = {
    "health.sexual_health": Record(
        "health", "health.sexual_health-0007", "sexual_health_attendance", "health.sexual_health",
        RecordKind.EVENT, datetime(2026, 2, 3, 11, 0, tzinfo=UTC), "Attended Riverside sexual health clinic",
        (
            Field("clinic", "service.name", "Riverside Sexual Health Clinic"),
            Field("attendance_date", "record.date", "2026-02-03"),
            Field("reason", "health.clinical", "canary-clinical-reason"),
            Field("notes", "record.detail", "canary-clinical-notes"),
        ),
    ),
    "housing.refuge": Record(
        "housing", "housing.refuge-0003", "refuge_placement", "housing.refuge",
        RecordKind.INVOLVEMENT, datetime(2026, 1, 20, 9, 0, tzinfo=UTC), "Placed in Hidden Lane refuge",
        (
            Field("refuge_address", "location.protected", "Safe House, 9 Hidden Lane, E2 7QQ"),
            Field("placement_date", "record.date", "2026-01-20"),
            Field("support_worker", "staff.contact", "Refuge worker Ann Canary"),
        ),
    ),
}
TELLS = ("sexual", "clinic", "riverside", "refuge", "hidden lane", "canary", "placement", "0007", "0003")


@pytest.fixture(scope="module")
def snapshot() -> PolicySnapshot:
    return load_snapshot(REPO_ROOT / "policies")


@pytest.mark.parametrize("category", sorted(PROTECTED_RECORDS))
def test_protected_records_reveal_nothing_outside_their_agency_for_any_role_and_purpose(
    snapshot: PolicySnapshot, category: str
) -> None:
    """At any level the shipped policies grant, no outside role or purpose gets or sees named the record."""
    record = PROTECTED_RECORDS[category]
    redactor = Redactor(snapshot.redaction, KEYS)
    checked = 0
    for role in snapshot.roles.values():
        if role.group or role.agency == record.agency:
            continue
        for purpose in snapshot.purposes:
            decision = snapshot.decide(role.name, purpose, record.agency, category)
            ctx = RedactionContext(
                record.agency, decision.level, role.name, role.agency, role.inside_mash, ON
            )
            result = redactor.redact([record], ctx)
            assert result.records == ()
            text = json.dumps(dataclasses.asdict(result), default=str).casefold()
            for tell in TELLS:
                assert tell not in text, (role.name, purpose, tell)
            checked += 1
    assert checked > 0
