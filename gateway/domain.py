"""Domain objects shared by the cores (policy, redaction, audit, linkage) and the service layer.

Nothing here imports gRPC or generated protobuf modules; `gateway.api.convert` is the only place that
turns these into wire messages and back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol


class DisclosureLevel(enum.IntEnum):
    """The disclosure ladder, low to high; comparisons follow the ladder."""

    NONE = 0
    EXISTS = 1
    PERTINENT = 2
    FULL = 3

    @classmethod
    def parse(cls, text: str) -> DisclosureLevel:
        """Parse a level name such as ``"PERTINENT"`` (case-insensitive); raise ValueError otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown disclosure level {text!r}") from None


class RecordKind(enum.Enum):
    """The DfE standard's three kinds of shareable information."""

    INVOLVEMENT = "involvement"
    STATE = "state"
    EVENT = "event"


class AnswerStatus(enum.Enum):
    """What happened to one agency's part of a query."""

    MATCH = "MATCH"
    NO_MATCH = "NO_MATCH"
    WITHHELD = "WITHHELD"
    UNAVAILABLE = "UNAVAILABLE"
    TIMED_OUT = "TIMED_OUT"
    REJECTED = "REJECTED"


class FieldDisclosure(enum.Enum):
    """Whether a field's value was released as held, transformed, or held back."""

    FULL = "FULL"
    REDACTED = "REDACTED"
    WITHHELD = "WITHHELD"


@dataclass(frozen=True, slots=True)
class SubjectIdentifiers:
    """Identifiers of the person a question is about, as given by the caller (any subset)."""

    nhs_number: str = ""
    given_name: str = ""
    family_name: str = ""
    date_of_birth: str = ""
    postcode: str = ""
    address_line: str = ""

    def is_empty(self) -> bool:
        return not any(
            (self.nhs_number, self.given_name, self.family_name, self.date_of_birth,
             self.postcode, self.address_line)
        )


@dataclass(frozen=True, slots=True)
class Field:
    """One value of an agency record, tagged with its field category."""

    name: str
    category: str
    value: str


@dataclass(frozen=True, slots=True)
class Record:
    """A record as an agency node returned it."""

    agency: str
    record_id: str
    record_type: str
    category: str
    kind: RecordKind
    occurred_at: datetime
    summary: str
    fields: tuple[Field, ...] = ()


@dataclass(frozen=True, slots=True)
class AgencyContact:
    """Who to contact at an agency about a subject it knows."""

    agency: str
    team: str = ""
    phone: str = ""
    email: str = ""


# The three redaction outputs are plain slotted dataclasses, not frozen ones: the redactor builds two per
# field, and a frozen dataclass's __init__ costs about four times as much. Nothing changes them once built.
@dataclass(slots=True)
class DisclosedField:
    """A field as released to the caller, with its place in the redaction manifest."""

    name: str
    category: str
    value: str
    disclosure: FieldDisclosure
    operator: str = ""
    reason: str = ""


@dataclass(slots=True)
class DisclosedRecord:
    """A record as released to the caller after redaction."""

    record_id: str
    record_type: str
    category: str
    kind: RecordKind
    occurred_at: str
    summary: str
    fields: tuple[DisclosedField, ...] = ()
    conditions: tuple[str, ...] = ()


@dataclass(slots=True)
class ManifestEntry:
    """One line of a redaction manifest: what happened to one field (or a whole record)."""

    record_id: str
    field: str  # empty when the entry is about the whole record
    category: str
    disclosure: FieldDisclosure
    operator: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AuditReceipt:
    """Where an audit entry landed: its index in the log and its RFC 6962 leaf hash."""

    index: int
    leaf_hash: bytes


class AuditKind(enum.Enum):
    """What an audit entry records."""

    DISCLOSURE = "disclosure"  # one agency's answer to one query
    REFUSAL = "refusal"  # a request refused before or instead of any disclosure
    POLICY_ACTIVATION = "policy_activation"
    POLICY_REJECTED = "policy_rejected"
    AUDIT_ACCESS = "audit_access"  # an auditor read the log (who looked, at what, about whom)
    # The referral workflow: one entry per state transition, per deadline breach, per retention purge.
    REFERRAL_TRANSITION = "referral_transition"
    REFERRAL_BREACH = "referral_breach"
    REFERRAL_PURGE = "referral_purge"
    # A review step: requested, opened by a reviewer, decided (approved, declined, expired); the release
    # itself is a DISCLOSURE entry that names the review.
    REVIEW = "review"
    # The locator: one entry per node call that evaluates, enrols or withdraws, as counts only.
    LOCATOR = "locator"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Everything an audit entry records. Holds tokens and sealed values, never raw identifiers."""

    kind: AuditKind
    occurred_at: datetime
    request_id: str = ""
    caller: str = ""  # certificate identity (SPIFFE URI)
    user: str = ""
    role: str = ""
    purpose: str = ""
    legal_basis: str = ""
    agreement: str = ""
    case_reference: str = ""
    subject_tokens: tuple[str, ...] = ()  # keyed HMAC tokens of normalised identifiers
    sealed_identifiers: str = ""  # AES-GCM sealed identifiers: "<key id>:<base64>"
    agency: str = ""
    status: str = ""  # AnswerStatus name for disclosures; an error code for refusals
    level: str = ""  # DisclosureLevel name granted
    categories: tuple[str, ...] = ()  # record categories whose content was disclosed
    manifest: tuple[ManifestEntry, ...] = ()
    payload_digest: str = ""  # SHA-256 hex of the canonical disclosed payload
    policy_version: str = ""
    deciding_rules: tuple[str, ...] = ()  # "file:line" of the policy lines that decided
    reason: str = ""  # why refused or withheld; never personal data
    details: Mapping[str, str] = field(default_factory=dict)


class Clock(Protocol):
    """Where the current time comes from; tests use a fixed one."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock, always timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def today(clock: Clock) -> date:
    """The current UTC calendar date by `clock`."""
    return clock.now().date()
