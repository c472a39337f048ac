"""The one place where protobuf messages become domain objects and back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.domain import (
    AgencyContact,
    AnswerStatus,
    AuditReceipt,
    DisclosedField,
    DisclosedRecord,
    DisclosureLevel,
    Field,
    FieldDisclosure,
    Record,
    RecordKind,
    SubjectIdentifiers,
)
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.service.ports import LookupCommand, LookupResult, PersonMatch
from gateway.service.query import AgencyOutcome, QueryCommand, ScreenOutcome

_LEVELS = {
    DisclosureLevel.NONE: common_pb.DISCLOSURE_LEVEL_NONE,
    DisclosureLevel.EXISTS: common_pb.DISCLOSURE_LEVEL_EXISTS,
    DisclosureLevel.PERTINENT: common_pb.DISCLOSURE_LEVEL_PERTINENT,
    DisclosureLevel.FULL: common_pb.DISCLOSURE_LEVEL_FULL,
}
_KINDS = {
    RecordKind.INVOLVEMENT: common_pb.RECORD_KIND_INVOLVEMENT,
    RecordKind.STATE: common_pb.RECORD_KIND_STATE,
    RecordKind.EVENT: common_pb.RECORD_KIND_EVENT,
}
_KINDS_BACK = {v: k for k, v in _KINDS.items()}
_STATUSES = {
    AnswerStatus.MATCH: hub_pb.ANSWER_STATUS_MATCH,
    AnswerStatus.NO_MATCH: hub_pb.ANSWER_STATUS_NO_MATCH,
    AnswerStatus.WITHHELD: hub_pb.ANSWER_STATUS_WITHHELD,
    AnswerStatus.UNAVAILABLE: hub_pb.ANSWER_STATUS_UNAVAILABLE,
    AnswerStatus.TIMED_OUT: hub_pb.ANSWER_STATUS_TIMED_OUT,
    AnswerStatus.REJECTED: hub_pb.ANSWER_STATUS_REJECTED,
}
_DISCLOSURES = {
    FieldDisclosure.FULL: hub_pb.FIELD_DISCLOSURE_FULL,
    FieldDisclosure.REDACTED: hub_pb.FIELD_DISCLOSURE_REDACTED,
    FieldDisclosure.WITHHELD: hub_pb.FIELD_DISCLOSURE_WITHHELD,
}
_MATCH_METHODS = {
    agency_pb.MATCH_METHOD_NHS_NUMBER: "nhs_number",
    agency_pb.MATCH_METHOD_NAME_AND_DATE_OF_BIRTH: "name_and_date_of_birth",
}


class _QueryLike(Protocol):
    """QueryRequest and StreamQueryRequest share these fields."""

    request_id: str
    purpose: str
    legal_basis: str
    agreement: str
    case_reference: str

    @property
    def subject(self) -> common_pb.SubjectIdentifiers: ...

    @property
    def categories(self) -> object: ...


def subject_from_proto(msg: common_pb.SubjectIdentifiers) -> SubjectIdentifiers:
    return SubjectIdentifiers(
        nhs_number=msg.nhs_number, given_name=msg.given_name, family_name=msg.family_name,
        date_of_birth=msg.date_of_birth, postcode=msg.postcode, address_line=msg.address_line,
    )


def subject_to_proto(subject: SubjectIdentifiers) -> common_pb.SubjectIdentifiers:
    return common_pb.SubjectIdentifiers(
        nhs_number=subject.nhs_number, given_name=subject.given_name, family_name=subject.family_name,
        date_of_birth=subject.date_of_birth, postcode=subject.postcode, address_line=subject.address_line,
    )


def query_from_proto(msg: hub_pb.QueryRequest | hub_pb.StreamQueryRequest) -> QueryCommand:
    return QueryCommand(
        request_id=msg.request_id, subject=subject_from_proto(msg.subject), purpose=msg.purpose,
        legal_basis=msg.legal_basis, agreement=msg.agreement, case_reference=msg.case_reference,
        categories=tuple(msg.categories),
    )


def screen_from_proto(msg: hub_pb.ScreenReferralRequest) -> QueryCommand:
    return QueryCommand(
        request_id=msg.request_id, subject=subject_from_proto(msg.subject), purpose=msg.purpose,
        legal_basis=msg.legal_basis, agreement=msg.agreement, case_reference=msg.case_reference,
        categories=(),
    )


def contact_to_proto(contact: AgencyContact | None) -> common_pb.AgencyContact | None:
    if contact is None:
        return None
    return common_pb.AgencyContact(
        agency=contact.agency, team=contact.team, phone=contact.phone, email=contact.email
    )


def contact_from_proto(msg: common_pb.AgencyContact, agency: str) -> AgencyContact:
    return AgencyContact(agency=msg.agency or agency, team=msg.team, phone=msg.phone, email=msg.email)


def receipt_to_proto(receipt: AuditReceipt | None) -> hub_pb.AuditReceipt | None:
    if receipt is None:
        return None
    return hub_pb.AuditReceipt(entry_index=receipt.index, leaf_hash=receipt.leaf_hash)


def _field_to_proto(f: DisclosedField) -> hub_pb.DisclosedField:
    return hub_pb.DisclosedField(
        name=f.name, category=f.category, value=f.value, disclosure=_DISCLOSURES[f.disclosure],
        operator=f.operator, reason=f.reason,
    )


def disclosed_record_to_proto(r: DisclosedRecord) -> hub_pb.DisclosedRecord:
    return hub_pb.DisclosedRecord(
        record_id=r.record_id, record_type=r.record_type, category=r.category, kind=_KINDS[r.kind],
        occurred_at=r.occurred_at, summary=r.summary, fields=[_field_to_proto(f) for f in r.fields],
        conditions=list(r.conditions),
    )


def answer_to_proto(outcome: AgencyOutcome) -> hub_pb.AgencyAnswer:
    return hub_pb.AgencyAnswer(
        agency=outcome.agency,
        status=_STATUSES[outcome.status],
        level=_LEVELS[outcome.level],
        records=[disclosed_record_to_proto(r) for r in outcome.records],
        contact=contact_to_proto(outcome.contact),
        receipt=receipt_to_proto(outcome.receipt),
        categories=list(outcome.categories),
        detail=outcome.detail,
    )


_SCREEN_RESULTS = {
    "OPEN": hub_pb.SCREEN_RESULT_OPEN,
    "CLOSED": hub_pb.SCREEN_RESULT_CLOSED,
    "NOT_KNOWN": hub_pb.SCREEN_RESULT_NOT_KNOWN,
    "UNAVAILABLE": hub_pb.SCREEN_RESULT_UNAVAILABLE,
    "WITHHELD": hub_pb.SCREEN_RESULT_WITHHELD,
}


def screen_to_proto(outcome: ScreenOutcome) -> hub_pb.ScreenReferralResponse:
    return hub_pb.ScreenReferralResponse(
        request_id=outcome.request_id,
        result=_SCREEN_RESULTS[outcome.result.value],
        case_status=outcome.case_status,
        allocated_team=outcome.allocated_team,
        allocated_worker=outcome.allocated_worker,
        contact=contact_to_proto(outcome.contact),
        receipt=receipt_to_proto(outcome.receipt),
        policy_version=outcome.policy_version,
        detail=outcome.detail,
    )


def _timestamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when.astimezone(UTC))
    return ts


def record_to_proto(record: Record) -> common_pb.Record:
    return common_pb.Record(
        agency=record.agency, record_id=record.record_id, record_type=record.record_type,
        category=record.category, kind=_KINDS[record.kind], occurred_at=_timestamp(record.occurred_at),
        summary=record.summary,
        fields=[common_pb.Field(name=f.name, category=f.category, value=f.value) for f in record.fields],
    )


def record_from_proto(msg: common_pb.Record) -> Record:
    """A node's record as a domain Record; raises ValueError when the kind is missing."""
    kind = _KINDS_BACK.get(msg.kind)
    if kind is None:
        raise ValueError(f"record {msg.record_id!r} has no record kind")
    return Record(
        agency=msg.agency, record_id=msg.record_id, record_type=msg.record_type, category=msg.category,
        kind=kind, occurred_at=msg.occurred_at.ToDatetime(tzinfo=UTC), summary=msg.summary,
        fields=tuple(Field(f.name, f.category, f.value) for f in msg.fields),
    )


def lookup_to_proto(command: LookupCommand) -> agency_pb.LookupRequest:
    return agency_pb.LookupRequest(
        request_id=command.request_id, subject=subject_to_proto(command.subject),
        categories=list(command.categories), existence_categories=list(command.existence_categories),
        purpose=command.purpose, legal_basis=command.legal_basis,
    )


def lookup_result_from_proto(msg: agency_pb.LookupResponse, agency: str) -> LookupResult:
    """A node's answer as a domain LookupResult; raises ValueError on a malformed answer."""
    matches = tuple(
        PersonMatch(
            person_ref=m.person_ref,
            method=_MATCH_METHODS.get(m.method, "unspecified"),
            records=tuple(record_from_proto(r) for r in m.records),
            known_in_existence_categories=m.known_in_existence_categories,
        )
        for m in msg.matches
    )
    return LookupResult(agency=agency, matches=matches, contact=contact_from_proto(msg.mash_contact, agency))
