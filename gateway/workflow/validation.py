"""Checking referral requests field by field; descriptions never quote the value (it may be personal data)."""

from __future__ import annotations

import re
from datetime import date

from gateway.domain import SubjectIdentifiers
from gateway.errors import FieldViolation
from gateway.linkage import normalise_date, normalise_nhs_number, normalise_postcode

REFERRAL_ID = re.compile(r"ref-[0-9a-f]{32}")
SHORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._/-]{0,63}")  # teams, boroughs
MAX_CONCERN = 10_000
MAX_HOUSEHOLD = 30
_MAX_NAME = 100
_MAX_IDENTIFIER = 32
ADULT_AGE = 18
"""A subject this old or older on the day a referral is submitted is an adult (the adults' MASH); younger, a child."""


def check_person(person: SubjectIdentifiers, path: str, today: date, *, identified: bool) -> list[FieldViolation]:
    """Problems with one person's identifiers; `identified` demands enough to find them (NHS number, or names
    and date of birth)."""
    found: list[FieldViolation] = []
    checks = (("nhs_number", normalise_nhs_number), ("postcode", normalise_postcode))
    for name, check in checks:
        value = getattr(person, name)
        if len(value) > _MAX_IDENTIFIER:
            found.append(FieldViolation(f"{path}.{name}", f"is longer than {_MAX_IDENTIFIER} characters"))
        elif value:
            try:
                check(value)
            except ValueError as exc:
                found.append(FieldViolation(f"{path}.{name}", str(exc)))
    dob_ok = False
    if len(person.date_of_birth) > _MAX_IDENTIFIER:
        found.append(FieldViolation(f"{path}.date_of_birth", f"is longer than {_MAX_IDENTIFIER} characters"))
    elif person.date_of_birth:
        try:
            dob_ok = normalise_date(person.date_of_birth) <= today
            if not dob_ok:
                found.append(FieldViolation(f"{path}.date_of_birth", "is in the future"))
        except ValueError as exc:
            found.append(FieldViolation(f"{path}.date_of_birth", str(exc)))
    for name in ("given_name", "family_name", "address_line"):
        value = getattr(person, name)
        if len(value) > _MAX_NAME:
            found.append(FieldViolation(f"{path}.{name}", f"is longer than {_MAX_NAME} characters"))
        elif any(ord(ch) < 32 for ch in value):
            found.append(FieldViolation(f"{path}.{name}", "contains control characters"))
    if identified and not found:
        names = bool(person.given_name.strip() and person.family_name.strip())
        if not (person.nhs_number or (names and dob_ok)):
            found.append(FieldViolation(path, "give a valid NHS number, or given name, family name and date of "
                                              "birth"))
    if not identified and not found and person.is_empty():
        found.append(FieldViolation(path, "a household member needs at least one identifier"))
    return found


def check_name(value: str, path: str, *, required: bool = False) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(path, "is required")] if required else []
    if not SHORT_NAME.fullmatch(value):
        return [FieldViolation(path, "must be 1-64 characters of letters, digits, spaces and . _ / -")]
    return []


def check_referral_id(value: str, path: str = "referral_id") -> list[FieldViolation]:
    if not value:
        return [FieldViolation(path, "is required")]
    if not REFERRAL_ID.fullmatch(value):
        return [FieldViolation(path, "is not a referral id (ref- and 32 hexadecimal digits)")]
    return []


def age_on(date_of_birth: date, day: date) -> int:
    """Completed years on `day`; someone born on 29 February comes of age on 1 March in a common year."""
    return day.year - date_of_birth.year - ((day.month, day.day) < (date_of_birth.month, date_of_birth.day))


def subject_kind_on(date_of_birth: str, day: date) -> str | None:
    """"child" (under 18) or "adult" (18 or over) on `day`, or None when the date of birth is not given or not
    valid (an invalid one is reported by `check_person`)."""
    if not date_of_birth:
        return None
    try:
        born = normalise_date(date_of_birth)
    except ValueError:
        return None
    return "adult" if age_on(born, day) >= ADULT_AGE else "child"


def check_subject_fits_mash(date_of_birth: str, mash_subject: str, day: date) -> list[FieldViolation]:
    """A referral goes to the MASH for its subject's age on the day it is submitted: a child (under 18) to a
    MASH whose `subject` is child, an adult to one whose `subject` is adult. Without a date of birth nothing can
    be checked, and the MASH the submitter named stands (the caller records that)."""
    kind = subject_kind_on(date_of_birth, day)
    if kind is None or kind == mash_subject:
        return []
    if mash_subject == "adult":
        text = ("takes adults at risk (18 or over when the referral is submitted), and the subject's date of "
                "birth makes them a child: submit it to the MASH for children")
    else:
        text = ("takes children (under 18 when the referral is submitted), and the subject's date of birth makes "
                "them an adult: submit it to the MASH for adults at risk")
    return [FieldViolation("mash", text)]
