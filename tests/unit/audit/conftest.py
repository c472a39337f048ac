"""Fixtures for the audit unit tests: a factory of realistic audit events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.domain import AuditEvent, AuditKind, FieldDisclosure, ManifestEntry

EventFactory = Callable[..., AuditEvent]


def make_event(n: int = 0, **overrides: Any) -> AuditEvent:
    """A disclosure event numbered `n`; keyword arguments replace any field."""
    base: dict[str, Any] = {
        "kind": AuditKind.DISCLOSURE,
        "occurred_at": datetime(2026, 11, 26, 9, 0, tzinfo=UTC) + timedelta(seconds=n),
        "request_id": f"req-{n}",
        "caller": "spiffe://mash.local/agency/csc/system/case-system",
        "user": f"user-{n % 3}",
        "role": "social_worker",
        "purpose": "s47_enquiry",
        "legal_basis": "children_act_1989_s47",
        "agreement": "mash-isa-2026",
        "case_reference": f"CASE-{n % 4}",
        "subject_tokens": (f"nhs:k1:{n % 5:064x}",),
        "sealed_identifiers": "k1:AAAA",
        "agency": ("police", "health", "csc")[n % 3],
        "status": "MATCH",
        "level": "PERTINENT",
        "categories": ("police.domestic_abuse",),
        "manifest": (ManifestEntry("r1", "address", "person.address", FieldDisclosure.REDACTED,
                                   "postcode_district", "pertinent"),),
        "payload_digest": "ab" * 32,
        "policy_version": "pv-1",
        "deciding_rules": ("policies/police.csv:12",),
        "reason": "",
        "details": {"lane": "standard"},
    }
    base.update(overrides)
    return AuditEvent(**base)


@pytest.fixture
def event() -> EventFactory:
    """The `make_event` factory."""
    return make_event
