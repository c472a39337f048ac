"""The ports the service layer depends on, as Protocols: agency transport, audit sink, policy source."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from gateway.audit.store import PendingEntry
from gateway.domain import AgencyContact, AuditEvent, AuditReceipt, DisclosureLevel, Record, SubjectIdentifiers
from gateway.redaction import RedactionRules


@dataclass(frozen=True, slots=True)
class LookupCommand:
    """What the gateway asks one agency node: only categories policy lets it disclose."""

    request_id: str
    subject: SubjectIdentifiers
    categories: tuple[str, ...]
    existence_categories: tuple[str, ...]
    purpose: str
    legal_basis: str


@dataclass(frozen=True, slots=True)
class PersonMatch:
    """One person an agency node matched, with the records it returned."""

    person_ref: str
    method: str
    records: tuple[Record, ...]
    known_in_existence_categories: bool


@dataclass(frozen=True, slots=True)
class LookupResult:
    """An agency node's answer."""

    agency: str
    matches: tuple[PersonMatch, ...]
    contact: AgencyContact
    dropped: int = 0  # records outside the asked categories, discarded before they were read


class AgencyTransport(Protocol):
    """Reaches agency nodes. Raises AgencyUnavailable, AgencyTimedOut or AgencyRejected on failure."""

    async def lookup(self, agency: str, command: LookupCommand, *, timeout: float) -> LookupResult: ...

    async def close(self) -> None: ...


class AuditSink(Protocol):
    """Where audit events go; returns only once they are durably stored (else AuditUnavailable)."""

    def prepare(self, event: AuditEvent) -> AuditEvent | PendingEntry:
        """`event` made ready for `append` ahead of time (encoded, where the sink encodes), so that work is not
        on the append's path. Never raises: an event that cannot be encoded comes back as it is, for `append`
        to refuse."""
        ...

    async def append(self, events: Sequence[AuditEvent | PendingEntry]) -> list[AuditReceipt]: ...


class DecisionView(Protocol):
    @property
    def level(self) -> DisclosureLevel: ...

    @property
    def allowed_by(self) -> tuple[str, ...]: ...

    @property
    def denied_by(self) -> tuple[str, ...]: ...

    @property
    def review(self) -> DisclosureLevel: ...

    @property
    def reviewed_by(self) -> tuple[str, ...]: ...


class PolicyView(Protocol):
    """The parts of a policy snapshot the service layer reads."""

    @property
    def version(self) -> str: ...

    @property
    def redaction(self) -> RedactionRules: ...

    @property
    def agencies(self) -> Mapping[str, AgencyView]: ...

    @property
    def roles(self) -> Mapping[str, RoleView]: ...

    @property
    def purposes(self) -> Mapping[str, PurposeView]: ...

    @property
    def legal_bases(self) -> Mapping[str, object]: ...

    @property
    def agreements(self) -> Mapping[str, AgreementView]: ...

    @property
    def open_case_category(self) -> str:
        """The record category the open-case check asks for, or "" when the policy declares none."""
        ...

    @property
    def open_case_agency(self) -> str:
        """The agency holding the open-case category."""
        ...

    def open_case_category_for(self, subject_kind: str) -> str:
        """The category the open-case check about a child or an adult at risk asks for, or ""."""
        ...

    def open_case_agency_for(self, subject_kind: str) -> str:
        """The agency holding that category ("" when there is none)."""
        ...

    def is_category(self, name: str) -> bool: ...

    def roles_for(self, identity: str) -> frozenset[str]: ...

    def decisions_for(self, role: str, purpose: str) -> Mapping[str, Mapping[str, DecisionView]]: ...

    def purpose_within(self, purpose: str, ancestor: str) -> bool: ...

    def category_within(self, category: str, ancestor: str) -> bool: ...

    @property
    def areas(self) -> Mapping[str, object]:
        """The partnership's areas (boroughs); empty when it declares none."""
        ...

    def area_of(self, agency: str) -> str:
        """The area an agency serves; "" for one serving the whole partnership, or not declared."""
        ...

    def area_refusal(self, agreement: str, requester: str, agency: str) -> str:
        """Why `requester` may not ask `agency` under `agreement` because their areas differ, or ""."""
        ...


class PolicySource(Protocol):
    """Holds the active policy snapshot; each request pins one snapshot for its whole life."""

    @property
    def current(self) -> PolicyView: ...


class PurposeView(Protocol):
    @property
    def legal_bases(self) -> Collection[str]: ...

    @property
    def group(self) -> bool: ...


class AgreementView(Protocol):
    @property
    def parties(self) -> Collection[str]: ...

    @property
    def purposes(self) -> Collection[str]: ...

    @property
    def categories(self) -> Collection[str]: ...

    @property
    def valid_from(self) -> date: ...

    @property
    def valid_until(self) -> date: ...


class AgencyView(Protocol):
    @property
    def holds_records(self) -> bool: ...

    @property
    def review_hours(self) -> int: ...

    @property
    def escalate_after_hours(self) -> int: ...


class RoleView(Protocol):
    @property
    def agency(self) -> str: ...

    @property
    def inside_mash(self) -> bool: ...

    @property
    def reviews(self) -> str: ...
