"""Canonical, deterministic byte encoding of audit entries: what is stored, hashed into the Merkle tree and exported.

An entry is canonical JSON (UTF-8, keys sorted, no whitespace) of
``{"event": {...}, "index": <position in the log>, "v": <schema version>}``. The index is part of the hashed
bytes so that an entry moved to another position no longer matches its own claim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.domain import AuditEvent, AuditKind, FieldDisclosure, ManifestEntry
from gateway.errors import GatewayError

SCHEMA_VERSION = 1
"""Version of the entry layout; bump it (and teach `decode_entry` the old one) when fields change."""

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


class EncodingError(GatewayError):
    """An audit event cannot be encoded, or stored bytes are not a valid entry."""


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with exactly six fractional digits, e.g. ``2026-11-26T03:11:02.000123Z``."""
    if moment.tzinfo is not UTC:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise EncodingError("audit timestamps must be timezone-aware")
        moment = moment.astimezone(UTC)
    if moment.year < 1000:  # strftime's own rendering of such years is what older entries hold
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ"), several times faster (one per audit entry).
    return (f"{moment.year}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond:06d}Z")


def parse_timestamp(text: str) -> datetime:
    """Inverse of `format_timestamp`; anything else is an EncodingError."""
    if not _TIMESTAMP.match(text):
        raise EncodingError(f"timestamp {text!r} is not RFC 3339 UTC with microseconds")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def canonical_json(value: object) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8 (not ASCII-escaped), no floats expected."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        # Lone surrogates (e.g. a file name decoded with surrogateescape) have no UTF-8 form.
        raise EncodingError(f"text is not valid Unicode and cannot be stored as UTF-8: {exc.reason}") from exc
    except (TypeError, ValueError) as exc:
        raise EncodingError(f"value cannot be encoded as canonical JSON: {exc}") from exc


def _str_tuple(values: Any, name: str) -> list[str]:
    out = list(values)
    for item in out:
        if not isinstance(item, str):
            raise EncodingError(f"{name} must hold strings, not {type(item).__name__}")
    return out


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    """The JSON object for `event`; enums by value, timestamps by `format_timestamp`."""
    details = dict(event.details)
    for key, val in details.items():
        if not isinstance(key, str) or not isinstance(val, str):
            raise EncodingError("audit event details must map strings to strings")
    return {
        "kind": event.kind.value,
        "occurred_at": format_timestamp(event.occurred_at),
        "request_id": event.request_id,
        "caller": event.caller,
        "user": event.user,
        "role": event.role,
        "purpose": event.purpose,
        "legal_basis": event.legal_basis,
        "agreement": event.agreement,
        "case_reference": event.case_reference,
        "subject_tokens": _str_tuple(event.subject_tokens, "subject_tokens"),
        "sealed_identifiers": event.sealed_identifiers,
        "agency": event.agency,
        "status": event.status,
        "level": event.level,
        "categories": _str_tuple(event.categories, "categories"),
        "manifest": [
            {
                "record_id": m.record_id,
                "field": m.field,
                "category": m.category,
                "disclosure": m.disclosure.value,
                "operator": m.operator,
                "reason": m.reason,
            }
            for m in event.manifest
        ],
        "payload_digest": event.payload_digest,
        "policy_version": event.policy_version,
        "deciding_rules": _str_tuple(event.deciding_rules, "deciding_rules"),
        "reason": event.reason,
        "details": details,
    }


def encode_event(event: AuditEvent) -> bytes:
    """Canonical JSON of the event alone (without index and version); the stores wrap it with `entry_bytes`.

    The bytes are exactly `canonical_json(event_to_dict(event))`; they are assembled directly, key by key in
    sorted order with json's own string encoder, because this runs once per audit entry on the request path.
    An event with a value of an unexpected type takes the general path, which decides what it becomes.
    """
    try:
        text = _event_json(event)
    except (TypeError, AttributeError):
        return canonical_json(event_to_dict(event))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodingError(f"text is not valid Unicode and cannot be stored as UTF-8: {exc.reason}") from exc


_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses for every string


def _strings(values: Any) -> str:
    return "[" + ",".join([_string(v) for v in values]) + "]"


def _event_json(event: AuditEvent) -> str:
    """`event_to_dict(event)` rendered as canonical JSON text; TypeError if a value is not of its usual type."""
    s = _string
    details = event.details
    if details:
        pairs = sorted(details.items())  # json.dumps(sort_keys=True) sorts the items the same way
        details_json = "{" + ",".join([s(k) + ":" + s(v) for k, v in pairs]) + "}"
    else:
        details_json = "{}"
    manifest = ",".join([
        '{"category":' + s(m.category) + ',"disclosure":' + s(m.disclosure.value) + ',"field":' + s(m.field)
        + ',"operator":' + s(m.operator) + ',"reason":' + s(m.reason) + ',"record_id":' + s(m.record_id) + "}"
        for m in event.manifest
    ])
    return "".join((
        '{"agency":', s(event.agency),
        ',"agreement":', s(event.agreement),
        ',"caller":', s(event.caller),
        ',"case_reference":', s(event.case_reference),
        ',"categories":', _strings(event.categories),
        ',"deciding_rules":', _strings(event.deciding_rules),
        ',"details":', details_json,
        ',"kind":', s(event.kind.value),
        ',"legal_basis":', s(event.legal_basis),
        ',"level":', s(event.level),
        ',"manifest":[', manifest,
        '],"occurred_at":', s(format_timestamp(event.occurred_at)),
        ',"payload_digest":', s(event.payload_digest),
        ',"policy_version":', s(event.policy_version),
        ',"purpose":', s(event.purpose),
        ',"reason":', s(event.reason),
        ',"request_id":', s(event.request_id),
        ',"role":', s(event.role),
        ',"sealed_identifiers":', s(event.sealed_identifiers),
        ',"status":', s(event.status),
        ',"subject_tokens":', _strings(event.subject_tokens),
        ',"user":', s(event.user),
        "}",
    ))


def entry_bytes(index: int, event_json: bytes) -> bytes:
    """The stored entry for `event_json` (from `encode_event`) at position `index`; canonical by construction."""
    # Sorted keys: "event" < "index" < "v", so splicing yields exactly canonical_json of the whole object.
    return b'{"event":' + event_json + b',"index":' + str(index).encode() + b',"v":' + \
        str(SCHEMA_VERSION).encode() + b"}"


def _require(doc: Mapping[str, Any], key: str, kind: type) -> Any:
    if key not in doc:
        raise EncodingError(f"entry field {key!r} is missing")
    value = doc[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise EncodingError(f"entry field {key!r} must be {kind.__name__}")
    return value


def dict_to_event(doc: Mapping[str, Any]) -> AuditEvent:
    """Rebuild an AuditEvent from the JSON object made by `event_to_dict`."""
    try:
        manifest = tuple(
            ManifestEntry(
                record_id=_require(m, "record_id", str),
                field=_require(m, "field", str),
                category=_require(m, "category", str),
                disclosure=FieldDisclosure(_require(m, "disclosure", str)),
                operator=_require(m, "operator", str),
                reason=_require(m, "reason", str),
            )
            for m in _require(doc, "manifest", list)
        )
        details = _require(doc, "details", dict)
        return AuditEvent(
            kind=AuditKind(_require(doc, "kind", str)),
            occurred_at=parse_timestamp(_require(doc, "occurred_at", str)),
            request_id=_require(doc, "request_id", str),
            caller=_require(doc, "caller", str),
            user=_require(doc, "user", str),
            role=_require(doc, "role", str),
            purpose=_require(doc, "purpose", str),
            legal_basis=_require(doc, "legal_basis", str),
            agreement=_require(doc, "agreement", str),
            case_reference=_require(doc, "case_reference", str),
            subject_tokens=tuple(_str_tuple(_require(doc, "subject_tokens", list), "subject_tokens")),
            sealed_identifiers=_require(doc, "sealed_identifiers", str),
            agency=_require(doc, "agency", str),
            status=_require(doc, "status", str),
            level=_require(doc, "level", str),
            categories=tuple(_str_tuple(_require(doc, "categories", list), "categories")),
            manifest=manifest,
            payload_digest=_require(doc, "payload_digest", str),
            policy_version=_require(doc, "policy_version", str),
            deciding_rules=tuple(_str_tuple(_require(doc, "deciding_rules", list), "deciding_rules")),
            reason=_require(doc, "reason", str),
            details={str(k): str(v) for k, v in details.items()},
        )
    except (ValueError, TypeError, AttributeError) as exc:
        if isinstance(exc, EncodingError):
            raise
        raise EncodingError(f"malformed audit event: {exc}") from exc


@dataclass(frozen=True, slots=True)
class DecodedEntry:
    """A stored entry taken apart: the position it claims, its schema version and its event."""

    index: int
    version: int
    event: AuditEvent


def parse_entry(data: bytes) -> dict[str, Any]:
    """Parse stored entry bytes to a JSON object and check the envelope (index, version) without the event."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EncodingError(f"entry is not UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) != {"event", "index", "v"}:
        raise EncodingError("entry must be an object with exactly 'event', 'index' and 'v'")
    _require(doc, "index", int)
    if _require(doc, "v", int) != SCHEMA_VERSION:
        raise EncodingError(f"unsupported entry schema version {doc['v']}")
    _require(doc, "event", dict)
    return doc


def decode_entry(data: bytes) -> DecodedEntry:
    """Decode stored entry bytes; raises EncodingError if they are not canonical or not a valid entry."""
    doc = parse_entry(data)
    event = dict_to_event(doc["event"])
    if canonical_json(doc) != data:
        raise EncodingError("entry bytes are not in canonical form")
    return DecodedEntry(index=doc["index"], version=doc["v"], event=event)
