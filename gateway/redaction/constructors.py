"""Fast constructors for the frozen, slotted domain objects the redactor builds by the thousand.

A frozen dataclass's generated ``__init__`` sets each attribute through ``object.__setattr__``; writing
the slots directly builds the same object in about half the time, and the redactor builds two objects per
field. Each builder is checked against the class's own constructor at import and the class itself is used
instead if the class ever changes shape (new or reordered fields, or a ``__post_init__``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from gateway.domain import DisclosedField, DisclosedRecord, FieldDisclosure, ManifestEntry, RecordKind

_new = object.__new__

_FIELD_NAMES = ("name", "category", "value", "disclosure", "operator", "reason")
_ENTRY_NAMES = ("record_id", "field", "category", "disclosure", "operator", "reason")
_RECORD_NAMES = (
    "record_id", "record_type", "category", "kind", "occurred_at", "summary", "fields", "conditions",
)


def _usable(cls: type, names: tuple[str, ...]) -> bool:
    """Whether `cls` is a slotted dataclass with exactly these fields and nothing run after __init__."""
    return (
        dataclasses.is_dataclass(cls)
        and tuple(f.name for f in dataclasses.fields(cls)) == names
        and "__slots__" in cls.__dict__
        and not hasattr(cls, "__post_init__")
    )


def _setters(cls: type, names: tuple[str, ...]) -> tuple[Callable[[Any, Any], None], ...]:
    return tuple(cls.__dict__[name].__set__ for name in names)


def _agrees(builder: Callable[..., Any], cls: type, sample: tuple[Any, ...]) -> bool:
    try:
        return bool(builder(*sample) == cls(*sample))
    except Exception:  # any failure means: use the class's own constructor
        return False


DisclosedFieldBuilder = Callable[[str, str, str, FieldDisclosure, str, str], DisclosedField]
ManifestEntryBuilder = Callable[[str, str, str, FieldDisclosure, str, str], ManifestEntry]
DisclosedRecordBuilder = Callable[
    [str, str, str, RecordKind, str, str, tuple[DisclosedField, ...], tuple[str, ...]], DisclosedRecord
]

disclosed_field: DisclosedFieldBuilder = DisclosedField
manifest_entry: ManifestEntryBuilder = ManifestEntry
disclosed_record: DisclosedRecordBuilder = DisclosedRecord

if _usable(DisclosedField, _FIELD_NAMES):
    _f0, _f1, _f2, _f3, _f4, _f5 = _setters(DisclosedField, _FIELD_NAMES)

    def _disclosed_field(
        name: str, category: str, value: str, disclosure: FieldDisclosure, operator: str, reason: str
    ) -> DisclosedField:
        obj: DisclosedField = _new(DisclosedField)
        _f0(obj, name)
        _f1(obj, category)
        _f2(obj, value)
        _f3(obj, disclosure)
        _f4(obj, operator)
        _f5(obj, reason)
        return obj

    if _agrees(_disclosed_field, DisclosedField, ("n", "c", "v", FieldDisclosure.FULL, "o", "r")):
        disclosed_field = _disclosed_field

if _usable(ManifestEntry, _ENTRY_NAMES):
    _e0, _e1, _e2, _e3, _e4, _e5 = _setters(ManifestEntry, _ENTRY_NAMES)

    def _manifest_entry(
        record_id: str, field: str, category: str, disclosure: FieldDisclosure, operator: str, reason: str
    ) -> ManifestEntry:
        obj: ManifestEntry = _new(ManifestEntry)
        _e0(obj, record_id)
        _e1(obj, field)
        _e2(obj, category)
        _e3(obj, disclosure)
        _e4(obj, operator)
        _e5(obj, reason)
        return obj

    if _agrees(_manifest_entry, ManifestEntry, ("r", "f", "c", FieldDisclosure.WITHHELD, "o", "why")):
        manifest_entry = _manifest_entry

if _usable(DisclosedRecord, _RECORD_NAMES):
    _r0, _r1, _r2, _r3, _r4, _r5, _r6, _r7 = _setters(DisclosedRecord, _RECORD_NAMES)

    def _disclosed_record(
        record_id: str,
        record_type: str,
        category: str,
        kind: RecordKind,
        occurred_at: str,
        summary: str,
        fields: tuple[DisclosedField, ...],
        conditions: tuple[str, ...],
    ) -> DisclosedRecord:
        obj: DisclosedRecord = _new(DisclosedRecord)
        _r0(obj, record_id)
        _r1(obj, record_type)
        _r2(obj, category)
        _r3(obj, kind)
        _r4(obj, occurred_at)
        _r5(obj, summary)
        _r6(obj, fields)
        _r7(obj, conditions)
        return obj

    if _agrees(_disclosed_record, DisclosedRecord, ("r", "t", "c", RecordKind.EVENT, "o", "s", (), ("x",))):
        disclosed_record = _disclosed_record
