"""The one place where protobuf messages become domain objects and back."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.audit import AuditRecord, EntryFilter, SignedCheckpoint, VerifyReport
from gateway.domain import (
    AgencyContact,
    AnswerStatus,
    AuditKind,
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
from gateway.errors import FieldViolation, Finding, InvalidRequest
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import audit_service_pb2 as audit_pb
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.policy import PolicyLine
from gateway.service.fanout import AgencyOutcome
from gateway.service.ports import LookupCommand, LookupResult, PersonMatch
from gateway.service.screening import ScreenOutcome
from gateway.service.validation import QueryCommand

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
    """The contact a node sent, always labelled with the agency we asked: a node cannot speak for another."""
    return AgencyContact(agency=agency, team=msg.team, phone=msg.phone, email=msg.email)


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
        review=hub_pb.PendingReview(review_id=outcome.review_id, state=hub_pb.REVIEW_STATE_PENDING_REVIEW,
                                    deadline=_timestamp(outcome.review_deadline))
        if outcome.review_id and outcome.review_deadline is not None else None,
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


def kind_to_proto(kind: RecordKind) -> common_pb.RecordKind.ValueType:
    return _KINDS[kind]


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
    """A node's record as a domain Record; ValueError (quoting nothing of the record) when it is malformed."""
    kind = _KINDS_BACK.get(msg.kind)
    if kind is None:
        raise ValueError("a record has no record kind")
    try:
        occurred_at = msg.occurred_at.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ValueError("a record has an impossible timestamp") from None
    return Record(
        agency=msg.agency, record_id=msg.record_id, record_type=msg.record_type, category=msg.category,
        kind=kind, occurred_at=occurred_at, summary=msg.summary,
        fields=tuple(Field(f.name, f.category, f.value) for f in msg.fields),
    )


def lookup_to_proto(command: LookupCommand) -> agency_pb.LookupRequest:
    return agency_pb.LookupRequest(
        request_id=command.request_id, subject=subject_to_proto(command.subject),
        categories=list(command.categories), existence_categories=list(command.existence_categories),
        purpose=command.purpose, legal_basis=command.legal_basis,
    )


MAX_ANSWER_MATCHES = 100
MAX_ANSWER_RECORDS = 5_000
MAX_ANSWER_FIELDS = 100_000
"""Most people, records and fields one node answer may hold; far above any real answer, they bound the work
a hostile node can cause within the size limit (a few MiB of empty fields is a million objects)."""


def lookup_result_from_proto(msg: agency_pb.LookupResponse, agency: str, asked: Collection[str]) -> LookupResult:
    """A node's answer as a domain LookupResult; ValueError on a malformed or oversized answer.

    Records of another agency or outside the `asked` categories are counted and dropped before anything
    of them is decoded, so a fault in a record the caller may not see cannot surface in any answer.
    """
    if len(msg.matches) > MAX_ANSWER_MATCHES:
        raise ValueError(f"the answer matches more than {MAX_ANSWER_MATCHES} people")
    if sum(len(m.records) for m in msg.matches) > MAX_ANSWER_RECORDS:
        raise ValueError(f"the answer holds more than {MAX_ANSWER_RECORDS} records")
    if sum(len(r.fields) for m in msg.matches for r in m.records) > MAX_ANSWER_FIELDS:
        raise ValueError(f"the answer holds more than {MAX_ANSWER_FIELDS} fields")
    matches = []
    dropped = 0
    for m in msg.matches:
        wanted = [r for r in m.records if r.agency == agency and r.category in asked]
        dropped += len(m.records) - len(wanted)
        matches.append(PersonMatch(
            person_ref=m.person_ref,
            method=_MATCH_METHODS.get(m.method, "unspecified"),
            records=tuple(record_from_proto(r) for r in wanted),
            known_in_existence_categories=m.known_in_existence_categories,
        ))
    return LookupResult(agency=agency, matches=tuple(matches),
                        contact=contact_from_proto(msg.mash_contact, agency), dropped=dropped)


# -- audit -----------------------------------------------------------------------------------------

_AUDIT_KINDS = {
    AuditKind.DISCLOSURE: audit_pb.AUDIT_ENTRY_KIND_DISCLOSURE,
    AuditKind.REFUSAL: audit_pb.AUDIT_ENTRY_KIND_REFUSAL,
    AuditKind.POLICY_ACTIVATION: audit_pb.AUDIT_ENTRY_KIND_POLICY_ACTIVATION,
    AuditKind.POLICY_REJECTED: audit_pb.AUDIT_ENTRY_KIND_POLICY_REJECTED,
    AuditKind.AUDIT_ACCESS: audit_pb.AUDIT_ENTRY_KIND_AUDIT_ACCESS,
    AuditKind.REFERRAL_TRANSITION: audit_pb.AUDIT_ENTRY_KIND_REFERRAL_TRANSITION,
    AuditKind.REFERRAL_BREACH: audit_pb.AUDIT_ENTRY_KIND_REFERRAL_BREACH,
    AuditKind.REFERRAL_PURGE: audit_pb.AUDIT_ENTRY_KIND_REFERRAL_PURGE,
    AuditKind.REVIEW: audit_pb.AUDIT_ENTRY_KIND_REVIEW,
    AuditKind.LOCATOR: audit_pb.AUDIT_ENTRY_KIND_LOCATOR,
}
_AUDIT_KINDS_BACK = {v: k for k, v in _AUDIT_KINDS.items()}


def audit_record_to_proto(record: AuditRecord) -> audit_pb.AuditEntry:
    event = record.event
    level = DisclosureLevel[event.level] if event.level in DisclosureLevel.__members__ else None
    return audit_pb.AuditEntry(
        index=record.index, leaf_hash=record.leaf_hash, canonical_entry=record.data,
        kind=_AUDIT_KINDS[event.kind], occurred_at=_timestamp(event.occurred_at), request_id=event.request_id,
        caller=event.caller, user=event.user, role=event.role, purpose=event.purpose,
        legal_basis=event.legal_basis, agreement=event.agreement, case_reference=event.case_reference,
        subject_tokens=list(event.subject_tokens), sealed_identifiers=event.sealed_identifiers,
        agency=event.agency, status=event.status,
        level=_LEVELS[level] if level is not None else common_pb.DISCLOSURE_LEVEL_UNSPECIFIED,
        categories=list(event.categories),
        manifest=[
            audit_pb.AuditManifestEntry(record_id=m.record_id, field=m.field, category=m.category,
                                        disclosure=_DISCLOSURES[m.disclosure], operator=m.operator,
                                        reason=m.reason)
            for m in event.manifest
        ],
        payload_digest=event.payload_digest, policy_version=event.policy_version,
        deciding_rules=list(event.deciding_rules), reason=event.reason, details=dict(event.details),
    )


def checkpoint_to_proto(checkpoint: SignedCheckpoint, cosignatures: tuple[str, ...] = ()) -> audit_pb.SignedCheckpoint:
    return audit_pb.SignedCheckpoint(
        tree_size=checkpoint.tree_size, root_hash=checkpoint.root_hash,
        timestamp=_timestamp(checkpoint.timestamp), key_id=checkpoint.key_id, signature=checkpoint.signature,
        signed_body=checkpoint.body(), note=checkpoint.note(cosignatures) if checkpoint.is_note else "",
        cosignatures=list(cosignatures),
    )


def _filter_time(given: bool, value: Timestamp, name: str) -> datetime | None:
    if not given:
        return None
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest([FieldViolation(name, "is not a valid timestamp")]) from None


def entry_filter_from_proto(msg: audit_pb.ListEntriesRequest) -> EntryFilter:
    """The filter a ListEntries request asks for; InvalidRequest if a time is out of range (nanos included)."""
    return EntryFilter(
        since=_filter_time(msg.HasField("since"), msg.since, "since"),
        until=_filter_time(msg.HasField("until"), msg.until, "until"),
        kind=_AUDIT_KINDS_BACK[msg.kind].value if msg.kind in _AUDIT_KINDS_BACK else "",
        agency=msg.agency, purpose=msg.purpose, role=msg.role, user=msg.user,
        case_reference=msg.case_reference, status=msg.status, subject_tokens=frozenset(msg.subject_tokens),
    )


def verify_report_to_proto(report: VerifyReport) -> audit_pb.VerifyLogResponse:
    response = audit_pb.VerifyLogResponse(
        ok=report.ok, entries=report.entries, checkpoints=report.checkpoints, root_hash=report.root_hash,
        summary=report.summary(),
        problems=[
            audit_pb.VerifyProblem(kind=p.kind, message=p.message, entry_index=p.entry,
                                   checkpoint_position=p.checkpoint)
            for p in report.problems
        ],
    )
    if report.first_bad_entry is not None:
        response.first_bad_entry = report.first_bad_entry
    if report.first_bad_checkpoint is not None:
        response.first_bad_checkpoint = report.first_bad_checkpoint
    return response


# -- policy ----------------------------------------------------------------------------------------

_EFFECTS = {"allow": policy_pb.POLICY_EFFECT_ALLOW, "deny": policy_pb.POLICY_EFFECT_DENY,
            "review": policy_pb.POLICY_EFFECT_REVIEW}


def level_to_proto(level: DisclosureLevel) -> common_pb.DisclosureLevel.ValueType:
    return _LEVELS[level]


def policy_rule_to_proto(line: PolicyLine, *, deciding: bool) -> policy_pb.PolicyRule:
    return policy_pb.PolicyRule(
        location=line.where, role=line.role, agency=line.agency, category=line.category, purpose=line.purpose,
        level=_LEVELS[line.level], effect=_EFFECTS.get(line.effect.value, policy_pb.POLICY_EFFECT_UNSPECIFIED),
        deciding=deciding,
    )


def finding_to_proto(finding: Finding) -> policy_pb.PolicyFinding:
    return policy_pb.PolicyFinding(file=finding.file, line=finding.line, message=finding.message,
                                   severity=finding.severity)
