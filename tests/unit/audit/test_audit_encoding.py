"""Canonical encoding of audit events: deterministic, reversible, and strict about what it accepts."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.encoding import (
    SCHEMA_VERSION,
    EncodingError,
    canonical_json,
    decode_entry,
    encode_event,
    entry_bytes,
    event_to_dict,
    format_timestamp,
    parse_timestamp,
)
from gateway.audit.store import PendingEntry
from gateway.domain import AuditEvent, AuditKind, FieldDisclosure, ManifestEntry

EventFactory = Callable[..., AuditEvent]


def test_encoding_is_identical_for_equal_events(event: EventFactory) -> None:
    """Two equal events encode to the same bytes, whatever order their details were built in."""
    a = event(1, details={"a": "1", "b": "2"})
    b = event(1, details={"b": "2", "a": "1"})
    assert encode_event(a) == encode_event(b)


def test_entry_is_canonical_json_with_sorted_keys_and_no_whitespace(event: EventFactory) -> None:
    """The stored entry equals canonical JSON of {event, index, v}: sorted keys, no spaces."""
    data = entry_bytes(7, encode_event(event(7)))
    doc = json.loads(data)
    assert data == canonical_json(doc)
    assert set(doc) == {"event", "index", "v"}
    assert doc["index"] == 7
    assert doc["v"] == SCHEMA_VERSION
    assert b", " not in data
    assert b": " not in data
    assert list(doc["event"]) == sorted(doc["event"])


def test_entry_round_trips_to_the_same_event(event: EventFactory) -> None:
    """Decoding a stored entry gives back exactly the event that was encoded, and its index."""
    original = event(3, kind=AuditKind.REFUSAL, status="PERMISSION_DENIED", reason="role not bound")
    decoded = decode_entry(entry_bytes(42, encode_event(original)))
    assert decoded.index == 42
    assert decoded.event == original


def test_timestamps_are_rfc3339_utc_with_microseconds(event: EventFactory) -> None:
    """A timestamp in another zone is stored as UTC with exactly six fractional digits and a Z."""
    moment = datetime(2026, 11, 26, 10, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    doc = json.loads(encode_event(event(0, occurred_at=moment)))
    assert doc["occurred_at"] == "2026-11-26T09:00:00.000005Z"
    assert parse_timestamp(doc["occurred_at"]) == moment


def test_enums_are_stored_by_value(event: EventFactory) -> None:
    """Kinds and manifest dispositions appear as their values, not Python names."""
    doc = json.loads(encode_event(event(0, kind=AuditKind.POLICY_ACTIVATION)))
    assert doc["kind"] == "policy_activation"
    assert doc["manifest"][0]["disclosure"] == "REDACTED"


def test_naive_timestamp_is_refused(event: EventFactory) -> None:
    """An event with a timezone-less time cannot be encoded (its instant would be ambiguous)."""
    with pytest.raises(EncodingError, match="timezone-aware"):
        encode_event(event(0, occurred_at=datetime(2026, 1, 1)))


def test_non_string_detail_is_refused(event: EventFactory) -> None:
    """Details must map strings to strings."""
    with pytest.raises(EncodingError, match="details"):
        encode_event(event(0, details={"n": 1}))


def test_non_ascii_text_is_kept_as_utf8(event: EventFactory) -> None:
    """Non-ASCII text is stored as UTF-8 bytes, not \\u escapes, so the encoding is unique."""
    data = encode_event(event(0, reason="Zoë’s case"))
    assert "Zoë’s".encode() in data


def test_non_canonical_bytes_are_rejected(event: EventFactory) -> None:
    """Bytes that decode to a valid entry but are not in canonical form are refused."""
    data = entry_bytes(0, encode_event(event(0)))
    spaced = json.dumps(json.loads(data), indent=1).encode()
    with pytest.raises(EncodingError, match="canonical"):
        decode_entry(spaced)


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"event":{},"index":0}', b'{"event":{},"index":0,"v":99}'])
def test_malformed_entries_are_rejected(data: bytes) -> None:
    """Garbage, wrong shapes, and unknown schema versions raise EncodingError."""
    with pytest.raises(EncodingError):
        decode_entry(data)


def test_timestamp_parser_rejects_other_formats() -> None:
    """Only the exact stored timestamp form parses."""
    with pytest.raises(EncodingError):
        parse_timestamp("2026-11-26T09:00:00Z")
    assert format_timestamp(parse_timestamp("2026-11-26T09:00:00.000000Z")) == "2026-11-26T09:00:00.000000Z"


_text = st.text(max_size=20)


@settings(max_examples=60, deadline=None)
@given(reason=_text, user=_text, tokens=st.lists(_text, max_size=3),
       details=st.dictionaries(_text, _text, max_size=3), micros=st.integers(0, 10**12))
def test_any_event_round_trips(reason: str, user: str, tokens: list[str], details: dict[str, str],
                               micros: int) -> None:
    """Arbitrary text in any field survives encode → entry → decode unchanged."""
    original = AuditEvent(kind=AuditKind.DISCLOSURE,
                          occurred_at=datetime(2020, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros),
                          reason=reason, user=user, subject_tokens=tuple(tokens), details=details)
    assert decode_entry(entry_bytes(1, encode_event(original))).event == original


def test_lone_surrogates_are_an_encoding_error(event: EventFactory) -> None:
    """Text that is not valid Unicode (a lone surrogate, e.g. from a mis-decoded file name) is an EncodingError."""
    with pytest.raises(EncodingError, match="UTF-8"):
        encode_event(event(0, reason="bad-\udcff-name.csv"))


@pytest.mark.parametrize("field", ["user", "role", "purpose", "agency", "case_reference", "status"])
def test_nul_in_a_filter_column_is_an_encoding_error(event: EventFactory, field: str) -> None:
    """A NUL character in a value copied to a filter column is refused up front (databases cannot index it)."""
    with pytest.raises(EncodingError, match="NUL"):
        PendingEntry.from_event(event(0, **{field: "CASE\x00X"}))
    with pytest.raises(EncodingError, match="NUL"):
        PendingEntry.from_event(event(0, subject_tokens=("nhs:k1:\x00",)))


_manifest = st.builds(ManifestEntry, record_id=_text, field=_text, category=_text,
                      disclosure=st.sampled_from(list(FieldDisclosure)), operator=_text, reason=_text)


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(_text, min_size=12, max_size=12), lists=st.lists(st.lists(_text, max_size=3), min_size=3,
                                                                       max_size=3),
       details=st.dictionaries(_text, _text, max_size=4), manifest=st.lists(_manifest, max_size=3),
       kind=st.sampled_from(list(AuditKind)), micros=st.integers(0, 10**15),
       zone=st.integers(-12 * 60, 14 * 60))
def test_the_direct_encoder_writes_exactly_the_reference_canonical_json(
    texts: list[str], lists: list[list[str]], details: dict[str, str], manifest: list[ManifestEntry],
    kind: AuditKind, micros: int, zone: int,
) -> None:
    """Audit bytes are assembled key by key for speed; they must equal canonical JSON of `event_to_dict`
    byte for byte (docs/audit-format.md), for any text, manifest, details order and time zone."""
    moment = (datetime(1990, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)).astimezone(
        timezone(timedelta(minutes=zone)))
    event = AuditEvent(
        kind=kind, occurred_at=moment, request_id=texts[0], caller=texts[1], user=texts[2], role=texts[3],
        purpose=texts[4], legal_basis=texts[5], agreement=texts[6], case_reference=texts[7],
        sealed_identifiers=texts[8], agency=texts[9], status=texts[10], level=texts[11],
        subject_tokens=tuple(lists[0]), categories=tuple(lists[1]), deciding_rules=tuple(lists[2]),
        manifest=tuple(manifest), payload_digest=texts[0][::-1], policy_version=texts[1][::-1],
        reason=texts[2][::-1], details=details,
    )
    try:
        reference = canonical_json(event_to_dict(event))
    except EncodingError:
        with pytest.raises(EncodingError):
            encode_event(event)
        return
    assert encode_event(event) == reference


def test_timestamps_before_the_year_1000_keep_their_old_rendering() -> None:
    """The fast timestamp path covers four-digit years; earlier ones are rendered as they always were."""
    early = datetime(999, 3, 4, 5, 6, 7, 8, tzinfo=UTC)
    assert format_timestamp(early) == early.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    late = datetime(2026, 3, 4, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=-5)))
    assert format_timestamp(late) == late.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
