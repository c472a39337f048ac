"""The shape of each entry in the policy vocabulary files, as pydantic models.

They check keys and types only; what needs the whole policy (undeclared names, hierarchies, protection
passed down to sub-categories) is checked by `vocabulary.py` once every file has been read.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from gateway.domain import DisclosureLevel, RecordKind
from gateway.errors import Finding
from gateway.policy.sources import LineDict, line_in
from gateway.schema import problems


def _level(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return DisclosureLevel.parse(value)
    except ValueError:
        raise ValueError("must be NONE, EXISTS, PERTINENT or FULL") from None


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
OptionalText = Annotated[str, StringConstraints(strip_whitespace=True)]
# A list of names; a single name may be written without brackets.
Names = Annotated[list[Annotated[str, StringConstraints(strip_whitespace=True)]], BeforeValidator(_one_or_many)]
# YAML reads 2027-12-31 as a date; a quoted "2027-12-31" is accepted too.
Day = Annotated[date, Field(strict=False)]


class Entry(BaseModel):
    """One named entry of a vocabulary file: no unknown keys, and no type coerced behind the reader's back."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def entry_findings(exc: ValidationError, raw: LineDict, file: str, subject: str, schema: type[Entry]) -> list[Finding]:
    """One finding per schema violation of an entry, at the line of the value it is about."""
    found = []
    for problem in problems(exc, lambda keys: line_in(raw, keys)):
        hint = ""
        if problem.message == "is not a known key":
            hint = f" (expected one of: {', '.join(schema.model_fields)})"
        found.append(Finding(file, problem.line, f"{subject}{problem.key} {problem.message}{hint}"))
    return found


class AreaEntry(Entry):
    title: Text


class AgencyEntry(Entry):
    title: Text
    holds_records: bool
    area: OptionalText = ""  # the area (borough) it serves; "" serves the whole partnership
    review_hours: Annotated[int, Field(gt=0)] = 72
    escalate_after_hours: Annotated[int, Field(ge=0)] = 0


class LegalBasisEntry(Entry):
    title: Text
    uri: Text


class FieldCategoryEntry(Entry):
    description: Text


class RoleEntry(Entry):
    agency: Text
    inside_mash: bool
    description: Text
    member_of: Names = []
    sees_records: bool = True
    reviews: Literal["first", "escalation"] | None = None


class GroupEntry(Entry):
    description: Text
    member_of: Names = []


class PurposeEntry(Entry):
    description: Text
    parent: OptionalText = ""
    legal_bases: Names = []
    retention: OptionalText = ""
    dpv: OptionalText = ""
    group: bool = False


class CategoryEntry(Entry):
    description: Text
    parent: OptionalText = ""
    kind: Annotated[RecordKind, Field(strict=False)] | None = None
    record_type: OptionalText = ""
    fields: dict[str, str] | None = None
    group: bool = False
    protected: bool | None = None
    readers: Names = []
    # true (the children's check, as before), or the subject kind whose open-case check asks this category.
    open_cases: bool | Literal["child", "adult"] = False


class AgreementEntry(Entry):
    title: Text
    parties: Annotated[Names, Field(min_length=1)]
    purposes: Annotated[Names, Field(min_length=1)]
    categories: Annotated[Names, Field(min_length=1)]
    valid_from: Day
    valid_until: Day
    cross_area: bool = False  # parties in one area may ask parties in another under it


class SampleRecord(Entry):
    fields: dict[str, Any]  # sample values, compared as text


class PolicyTestEntry(Entry):
    name: Text
    role: Text
    purpose: Text
    agency: Text
    category: Text
    expect: Annotated[DisclosureLevel, BeforeValidator(_level)]
    record: SampleRecord | None = None
    visible: list[str] = []
    redacted: list[str] = []
    withheld: list[str] = []
    disclosed_on: Day | None = None
    agreement: Text = ""
    review: Annotated[DisclosureLevel, BeforeValidator(_level)] | None = None
    requester: Text = ""  # the asking certificate's agency; the role's agency when not given
