"""Conformance of `metadata_mismatches`: every store finds filter columns and token rows that disagree with entries."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from store_backends import Backend

from gateway.audit.checkpoint import CheckpointSigner, PublicKeys
from gateway.audit.encoding import encode_event, entry_bytes
from gateway.audit.log import AuditLog
from gateway.audit.merkle import leaf_hash
from gateway.audit.sql import META_COLUMNS
from gateway.audit.store import TOKENS, DisclosureStore, EntryMeta, PendingEntry, meta_mismatches
from gateway.audit.verify import verify_store
from gateway.domain import AuditEvent
from gateway.testing import FixedClock

EventFactory = Callable[..., AuditEvent]
_COLUMN = dict(META_COLUMNS)  # event field -> SQL column
_TARGET = 3  # the entry each test damages


async def _stored(backend: Backend, events: list[AuditEvent]) -> DisclosureStore:
    store = await backend.open()
    await store.append([PendingEntry.from_event(e) for e in events])
    await backend.file_copies()  # so the raw SQL below finds the copy rows it damages
    return store


def _set_meta(backend: Backend, index: int, change: Callable[[EntryMeta], EntryMeta]) -> None:
    assert backend.shared is not None
    row, meta = backend.shared.rows[index]
    backend.shared.rows[index] = (row, change(meta))


def _set_column(backend: Backend, index: int, field: str, value: str) -> None:
    """Change one stored filter column of entry `index`, leaving its bytes alone."""
    if backend.sql is None:
        changes: dict[str, Any] = {field: value}
        _set_meta(backend, index, lambda meta: dataclasses.replace(meta, **changes))
    else:
        backend.sql(f"UPDATE {backend.copies} SET {_COLUMN[field]} = ? WHERE idx = ?", (value, index))  # noqa: S608


def _drop_token(backend: Backend, index: int, token: str) -> None:
    if backend.sql is None:
        _set_meta(backend, index, lambda meta: dataclasses.replace(
            meta, subject_tokens=tuple(t for t in meta.subject_tokens if t != token)))
    else:
        backend.sql("DELETE FROM audit_subject_tokens WHERE idx = ? AND token = ?", (index, token))


def _add_token(backend: Backend, index: int, token: str) -> None:
    if backend.sql is None:
        _set_meta(backend, index, lambda meta: dataclasses.replace(meta, subject_tokens=(*meta.subject_tokens, token)))
    else:
        backend.sql("INSERT INTO audit_subject_tokens (token, idx) VALUES (?, ?)", (token, index))


_TAMPERING = [*(f"column:{field}" for field, _ in META_COLUMNS), "token:missing", "token:extra",
              "token:moved"]


def _tamper(backend: Backend, how: str, event: AuditEvent) -> None:
    kind, _, what = how.partition(":")
    if kind == "column":
        _set_column(backend, _TARGET, what, "2020-01-01T00:00:00.000000Z" if what == "occurred_at" else "tampered")
    elif what == "missing":
        _drop_token(backend, _TARGET, event.subject_tokens[0])
    elif what == "extra":
        _add_token(backend, _TARGET, "nhs:k1:" + "f" * 64)
    else:  # a token row moved from this entry to another one: missing here, extra there
        _drop_token(backend, _TARGET, event.subject_tokens[1])
        _add_token(backend, _TARGET + 1, event.subject_tokens[1])


@pytest.mark.parametrize("how", _TAMPERING)
async def test_each_tampered_column_or_token_row_is_reported_by_the_store(
        backend: Backend, event: EventFactory, how: str) -> None:
    """Changing any one filter column, or deleting, adding or moving a token row, is reported for exactly the
    entries concerned, naming exactly what differs."""
    events = [event(i) for i in range(8)]
    store = await _stored(backend, events)
    assert await store.metadata_mismatches(0, 8) == {}
    _tamper(backend, how, events[_TARGET])
    expected = {_TARGET: (how.partition(":")[2] if how.startswith("column:") else TOKENS,)}
    if how == "token:moved":
        expected[_TARGET + 1] = (TOKENS,)
    assert await store.metadata_mismatches(0, 8) == expected
    assert await store.metadata_mismatches(_TARGET, _TARGET + 1) == {_TARGET: expected[_TARGET]}
    assert await store.metadata_mismatches(0, _TARGET) == {}


@pytest.mark.parametrize("how", _TAMPERING)
async def test_each_tampered_column_or_token_row_fails_verification(
        backend: Backend, event: EventFactory, how: str) -> None:
    """verify_store reports each such tampering as 'altered' at the entry, naming the column but not its value."""
    store = await backend.open()
    signer = CheckpointSigner.generate("cp1")
    log = await AuditLog.open(store, signer, FixedClock(), checkpoint_interval=None)
    events = [event(i) for i in range(8)]
    await log.append(events)
    await log.checkpoint()
    keys = PublicKeys({"cp1": signer.public_key})
    await backend.file_copies()
    _tamper(backend, how, events[_TARGET])
    report = await verify_store(store, keys, batch=3)
    assert not report.ok
    assert report.first_bad_entry == _TARGET
    problem = report.problems[0]
    assert (problem.kind, problem.entry) == ("altered", _TARGET)
    name = how.partition(":")[2] if how.startswith("column:") else "subject tokens"
    assert f"stored {name} do not match" in problem.message
    assert "tampered" not in problem.message
    assert "f" * 64 not in problem.message


async def test_several_differing_columns_are_named_together_in_column_order(
        backend: Backend, event: EventFactory) -> None:
    """An entry with several damaged copies is reported once, naming each in the order of META_COLUMNS."""
    store = await _stored(backend, [event(i) for i in range(5)])
    _set_column(backend, 2, "user", "nobody")
    _set_column(backend, 2, "agency", "none")
    _drop_token(backend, 2, event(2).subject_tokens[0])
    assert await store.metadata_mismatches(0, 5) == {2: ("agency", "user", TOKENS)}


async def test_awkward_but_valid_values_match_their_own_columns(backend: Backend, event: EventFactory) -> None:
    """Escaped characters, non-ASCII text, empty strings, duplicate or no tokens and odd timestamps never look
    altered: the comparison decodes the canonical JSON exactly as it was written."""
    awkward = 'quote " backslash \\ newline \n tab \t bell \x07 del \x7f é ☃ \u2028 😀'
    events = [
        event(0, user=awkward, case_reference=awkward, role="", purpose="", agency="", status=""),
        event(1, subject_tokens=()),
        event(2, subject_tokens=("tok-a", "tok-a", "tok-b", "tok-a")),
        event(3, subject_tokens=(awkward, "tok-" + "x" * 500)),
        event(4, subject_tokens=tuple(f"tok-{i}" for i in range(40))),
        event(5, details={"note": awkward}, reason=awkward),
    ]
    store = await _stored(backend, events)
    assert await store.metadata_mismatches(0, len(events)) == {}
    _set_column(backend, 0, "user", awkward.replace("é", "e"))
    _add_token(backend, 2, "tok-c")
    _drop_token(backend, 4, "tok-39")
    _set_column(backend, 5, "status", "tampered")
    assert await store.metadata_mismatches(0, len(events)) == {0: ("user",), 2: (TOKENS,), 4: (TOKENS,),
                                                               5: ("status",)}


async def test_entries_with_nul_elsewhere_are_still_compared(backend: Backend, event: EventFactory) -> None:
    """A NUL in an entry's details (which PostgreSQL's jsonb refuses) does not stop or weaken the comparison of
    that range."""
    events = [event(0), event(1, details={"note": "NUL \x00 here"}, reason="and \x00 here"), event(2)]
    store = await _stored(backend, events)
    assert await store.metadata_mismatches(0, 3) == {}
    _set_column(backend, 1, "purpose", "tampered")
    _drop_token(backend, 2, event(2).subject_tokens[0])
    assert await store.metadata_mismatches(0, 3) == {1: ("purpose",), 2: (TOKENS,)}


async def test_duplicate_tokens_in_an_entry_do_not_hide_an_extra_row(backend: Backend, event: EventFactory) -> None:
    """An entry listing a token twice has one row for it; a further row is still extra."""
    store = await _stored(backend, [event(0, subject_tokens=("tok-a", "tok-a"))])
    assert await store.metadata_mismatches(0, 1) == {}
    _add_token(backend, 0, "tok-b")
    assert await store.metadata_mismatches(0, 1) == {0: (TOKENS,)}


async def test_an_empty_or_missing_range_reports_nothing(backend: Backend, event: EventFactory) -> None:
    """Ranges beyond the log or of no width are empty, not errors."""
    store = await _stored(backend, [event(0)])
    assert await store.metadata_mismatches(1, 100) == {}
    assert await store.metadata_mismatches(0, 0) == {}


def _forge(sql: Callable[..., list[tuple[object, ...]]], index: int, data: bytes) -> None:
    sql("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE idx = ?", (data, leaf_hash(data), index))


async def test_entry_bytes_that_are_not_a_json_event_are_left_out(sql_backend: Backend, event: EventFactory) -> None:
    """Entries that are not UTF-8 JSON with an event object are left to the rest of verification, and do not stop
    the comparison of the other entries in the range."""
    sql = sql_backend.sql
    assert sql is not None
    store = await _stored(sql_backend, [event(i) for i in range(6)])
    _forge(sql, 1, b"\xff\xfe not json")
    _forge(sql, 2, b'{"event":[1,2],"index":2,"v":1}')
    _forge(sql, 3, b'{"event":{"user":"unterminated')
    _set_column(sql_backend, 4, "kind", "refusal")
    assert await store.metadata_mismatches(0, 6) == {4: ("kind",)}


async def test_values_of_another_json_type_never_match_a_text_column(sql_backend: Backend,
                                                                     event: EventFactory) -> None:
    """A number in the entry where the column holds its digits, or a token that is a number or a list whose
    JSON text is a stored token, differs (as in Python)."""
    sql = sql_backend.sql
    assert sql is not None
    store = await _stored(sql_backend, [event(i) for i in range(3)])
    forged: dict[int, bytes] = {}
    for index, token_json, token_row in ((1, b"[7]", "7"), (2, b'[["x"]]', '["x"]')):
        original = entry_bytes(index, encode_event(event(index, user="5", subject_tokens=("t",))))
        forged[index] = original.replace(b'"user":"5"', b'"user":5').replace(b'"subject_tokens":["t"]',
                                                                             b'"subject_tokens":' + token_json)
        assert b'"user":5' in forged[index]
        assert token_json in forged[index]
        sql(f"UPDATE {sql_backend.copies} SET user_id = '5' WHERE idx = ?", (index,))  # noqa: S608
        sql("DELETE FROM audit_subject_tokens WHERE idx = ?", (index,))
        sql("INSERT INTO audit_subject_tokens (token, idx) VALUES (?, ?)", (token_row, index))
        _forge(sql, index, forged[index])
        meta = dataclasses.replace(PendingEntry.from_event(event(index)).meta, user="5", subject_tokens=(token_row,))
        assert meta_mismatches(forged[index], meta) == ("user", TOKENS)
    assert await store.metadata_mismatches(0, 3) == {1: ("user", TOKENS), 2: ("user", TOKENS)}


async def test_an_entry_missing_a_field_differs_in_that_field(sql_backend: Backend, event: EventFactory) -> None:
    """A field absent from the event differs from any stored column, and absent tokens mean no token rows."""
    sql = sql_backend.sql
    assert sql is not None
    store = await _stored(sql_backend, [event(i) for i in range(2)])
    data = entry_bytes(1, encode_event(event(1)))
    forged = data.replace(b'"role":"social_worker",', b"")
    tokens = b'"subject_tokens":["' + event(1).subject_tokens[0].encode() + b'","' + \
        event(1).subject_tokens[1].encode() + b'"],'
    assert tokens in forged
    _forge(sql, 1, forged.replace(tokens, b""))
    assert await store.metadata_mismatches(0, 2) == {1: ("role", TOKENS)}
    sql("DELETE FROM audit_subject_tokens WHERE idx = 1", ())
    assert await store.metadata_mismatches(0, 2) == {1: ("role",)}


def test_copies_read_back_from_entry_bytes_equal_those_made_from_the_event(event: EventFactory) -> None:
    """`EntryMeta.from_entry` (how SQLite rebuilds copies it lost) gives exactly `EntryMeta.from_event`'s copies,
    awkward text and repeated tokens included."""
    awkward = 'quote " backslash \\ newline \n é ☃ \u2028 😀'
    for i, e in enumerate([event(0), event(1, user=awkward, case_reference=awkward, role="", status=""),
                           event(2, subject_tokens=("tok-a", "tok-a", "tok-b")), event(3, subject_tokens=())]):
        assert EntryMeta.from_entry(entry_bytes(i, encode_event(e))) == EntryMeta.from_event(e)


@pytest.mark.parametrize("data", [b"\xff not utf-8", b"not json", b"[1,2]", b'{"event":[1]}',
                                  b'{"event":{"user":5,"agency":"police","subject_tokens":["t",7]}}'])
def test_copies_read_back_from_bytes_that_are_not_an_entry_are_empty_where_they_cannot_be_read(data: bytes) -> None:
    """Unreadable bytes give empty copies, and a field of another type an empty one, which the comparison with
    the same bytes then reports (or leaves to the rest of verification, for bytes that are no entry at all)."""
    meta = EntryMeta.from_entry(data)
    assert meta.user == ""
    assert meta.subject_tokens == ()
    assert meta.agency == ("police" if b"police" in data else "")
