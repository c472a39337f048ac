"""Normalisation of subject identifiers (NHS number, names, dates, postcodes) so messy input matches.

Error messages say what is wrong with a value but never repeat it: they may end up in logs.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from gateway.domain import SubjectIdentifiers

# ---------------------------------------------------------------------------------------------------------
# NHS numbers

_NHS_SEPARATORS = str.maketrans("", "", " -\u00a0\t")


def nhs_check_digit(first_nine: str) -> int | None:
    """The check digit for nine digits by the NHS modulus-11 rule, or None when no number can be valid."""
    if len(first_nine) != 9 or not first_nine.isascii() or not first_nine.isdigit():
        raise ValueError("NHS number check digit needs exactly nine leading digits")
    total = sum(int(d) * (10 - i) for i, d in enumerate(first_nine))  # weights 10..2 = 11 - position
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def normalise_nhs_number(text: str) -> str:
    """The ten digits of an NHS number (spaces and hyphens allowed); ValueError saying what is wrong."""
    digits = text.strip().translate(_NHS_SEPARATORS)
    if not digits:
        raise ValueError("NHS number is empty")
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError("NHS number may contain only digits, spaces and hyphens")
    if len(digits) != 10:
        raise ValueError(f"NHS number must have 10 digits, not {len(digits)}")
    expected = nhs_check_digit(digits[:9])
    if expected is None:
        raise ValueError("NHS number is invalid: its first nine digits give check value 10")
    if int(digits[9]) != expected:
        raise ValueError("NHS number check digit does not match the first nine digits")
    return digits


def is_valid_nhs_number(text: str) -> bool:
    """Whether `text` is a well-formed NHS number with a correct check digit."""
    try:
        normalise_nhs_number(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Names

_TITLES = frozenset(
    {
        "mr", "mrs", "ms", "miss", "mx", "master", "dr", "doctor", "prof", "professor", "sir", "dame",
        "lady", "lord", "rev", "revd", "reverend", "fr", "father", "sr", "sister", "rabbi", "imam",
    }
)
# Apostrophe-like marks vanish (O'Brien = OBrien, with any apostrophe); every other punctuation mark,
# hyphens and dashes included, separates words (Smith-Jones = Smith Jones).
_APOSTROPHES = frozenset("'\u2018\u2019\u201b\u02bc\u02bb\u0060\u00b4\u2032\uff07")


def _is_latin_base(ch: str) -> bool:
    code = ord(ch)
    return code < 0x0250 or 0x1E00 <= code <= 0x1EFF


def _fold_latin_marks(text: str) -> str:
    # Accents on Latin letters are dropped (Zoë = Zoe) because records are keyed inconsistently; marks in
    # other scripts carry meaning and stay.
    out: list[str] = []
    base = ""
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.category(ch) == "Mn":
            if base and _is_latin_base(base):
                continue
        else:
            base = ch
        out.append(ch)
    return unicodedata.normalize("NFKC", "".join(out))


def _name_pass(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _fold_latin_marks(folded).casefold()
    chars: list[str] = []
    for ch in folded:
        if ch in _APOSTROPHES:
            continue
        cat = unicodedata.category(ch)
        if cat[0] in "LMN":
            chars.append(ch)
        elif cat == "Cf":  # zero-width joiners and the like are invisible in the source too
            continue
        else:
            chars.append(" ")
    words = "".join(chars).split()
    while len(words) > 1 and words[0] in _TITLES:
        words.pop(0)
    return " ".join(words)


# Characters that make text display differently from what it holds: bidirectional overrides, embeddings,
# isolates and marks (a name can be shown reversed or reordered), not just the invisible ones.
_BIDI_CLASSES = frozenset({"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"})
_BIDI_MARKS = frozenset("\u200e\u200f\u061c")
# Letters from these scripts look alike (Latin a, Cyrillic U+0430, Greek alpha); one name mixing them is a
# spoof or a keyboard accident, and either way it would not match the record it looks like.
_CONFUSABLE_SCRIPTS = frozenset({"LATIN", "GREEK", "CYRILLIC"})


def _script(ch: str) -> str:
    return unicodedata.name(ch, "").split(" ", 1)[0]


def name_text_problem(text: str) -> str | None:
    """Why a name-like identifier cannot be trusted to mean what it shows, or None if it can.

    Control characters (C0 and C1), bidirectional formatting, unassigned or private-use code points, and
    names mixing Latin, Greek and Cyrillic letters are refused; invisible joiners and zero-width spaces are
    not refused but dropped by `normalise_name`. Validation, tokens and node matching all use this rule.
    """
    scripts: set[str] = set()
    for ch in unicodedata.normalize("NFKC", text):
        category = unicodedata.category(ch)
        if category == "Cc":
            return "contains control characters"
        if ch in _BIDI_MARKS or unicodedata.bidirectional(ch) in _BIDI_CLASSES:
            return "contains bidirectional formatting characters"
        if category in ("Cn", "Co", "Cs"):
            return "contains unassigned or private-use characters"
        if category[0] == "L" and (script := _script(ch)) in _CONFUSABLE_SCRIPTS:
            scripts.add(script)
    if len(scripts) > 1:
        return "mixes letters of the Latin, Greek and Cyrillic alphabets"
    return None


def normalise_name(text: str) -> str:
    """Case-, accent-, punctuation- and title-insensitive form of a name; empty if nothing is left."""
    result = _name_pass(text)
    # Unicode case folding and composition do not always commute; a second pass reaches the fixed point.
    for _ in range(3):
        again = _name_pass(result)
        if again == result:
            break
        result = again
    return result


# ---------------------------------------------------------------------------------------------------------
# Dates

_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_UK_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})", re.ASCII)


def normalise_date(text: str, *, today: date | None = None) -> date:
    """Parse YYYY-MM-DD (or DD/MM/YYYY); ValueError if malformed, impossible, or after `today` if given."""
    value = text.strip()
    if not value:
        raise ValueError("date is empty")
    if m := _ISO_DATE.fullmatch(value):
        year, month, day = (int(g) for g in m.groups())
    elif m := _UK_DATE.fullmatch(value):
        day, month, year = (int(g) for g in m.groups())
    else:
        raise ValueError("date must be written YYYY-MM-DD (or DD/MM/YYYY)")
    try:
        parsed = date(year, month, day)
    except ValueError:
        raise ValueError("date is not a real calendar date") from None
    if today is not None and parsed > today:
        raise ValueError("date is in the future")
    return parsed


# ---------------------------------------------------------------------------------------------------------
# Postcodes

_OUTWARD = re.compile(
    r"[A-PR-UWYZ][0-9]{1,2}"  # A9, A99
    r"|[A-PR-UWYZ][A-HK-Y][0-9]{1,2}"  # AA9, AA99
    r"|[A-PR-UWYZ][0-9][A-HJKPSTUW]"  # A9A
    r"|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY]"  # AA9A
)
_INWARD = re.compile(r"[0-9][ABD-HJLNP-UW-Z]{2}")


def normalise_postcode(text: str) -> str:
    """A UK postcode in canonical form "OUTWARD INWARD" (e.g. "SW1A 1AA"); ValueError if it is not one."""
    compact = "".join(text.split()).upper()
    if not compact:
        raise ValueError("postcode is empty")
    if not compact.isascii() or not compact.isalnum():
        raise ValueError("postcode may contain only letters, digits and spaces")
    if not 5 <= len(compact) <= 7:
        raise ValueError("postcode must have 5 to 7 letters and digits")
    outward, inward = compact[:-3], compact[-3:]
    if compact == "GIR0AA":
        return "GIR 0AA"
    if not _INWARD.fullmatch(inward):
        raise ValueError("postcode inward code (the last three characters) must be a digit and two letters")
    if not _OUTWARD.fullmatch(outward):
        raise ValueError("postcode outward code is not a valid UK district, e.g. SW1A or M1")
    return f"{outward} {inward}"


# ---------------------------------------------------------------------------------------------------------
# Whole subjects

MAX_NAME_LENGTH = 100
"""Longest name accepted; Unicode normalisation can expand a character eighteen-fold, so work stays bounded."""


@dataclass(frozen=True, slots=True)
class NormalisedSubject:
    """A subject's identifiers after normalisation; a given but unusable identifier is named in `invalid`."""

    nhs_number: str = ""
    given_name: str = ""
    family_name: str = ""
    date_of_birth: date | None = None
    postcode: str = ""
    invalid: tuple[str, ...] = ()

    @property
    def name_and_date_of_birth(self) -> tuple[str, str, date] | None:
        """The (given, family, date of birth) matching key, if all three are usable."""
        if self.given_name and self.family_name and self.date_of_birth is not None:
            return (self.given_name, self.family_name, self.date_of_birth)
        return None

    @property
    def usable(self) -> bool:
        """Whether an NHS number or a full name-and-date-of-birth route is available for matching."""
        return bool(self.nhs_number) or self.name_and_date_of_birth is not None


def normalise_subject(subject: SubjectIdentifiers, *, today: date | None = None) -> NormalisedSubject:
    """Normalise every identifier of `subject`; identifiers given but invalid (names longer than
    MAX_NAME_LENGTH or with a `name_text_problem`) are left out and listed."""
    invalid: list[str] = []
    nhs = ""
    if subject.nhs_number.strip():
        try:
            nhs = normalise_nhs_number(subject.nhs_number)
        except ValueError:
            invalid.append("nhs_number")
    dob: date | None = None
    if subject.date_of_birth.strip():
        try:
            dob = normalise_date(subject.date_of_birth, today=today)
        except ValueError:
            invalid.append("date_of_birth")
    postcode = ""
    if subject.postcode.strip():
        try:
            postcode = normalise_postcode(subject.postcode)
        except ValueError:
            invalid.append("postcode")
    names = {}
    for name in ("given_name", "family_name"):
        value = getattr(subject, name)
        if len(value) > MAX_NAME_LENGTH or name_text_problem(value) is not None:
            invalid.append(name)
            value = ""
        names[name] = normalise_name(value)
    return NormalisedSubject(
        nhs_number=nhs,
        given_name=names["given_name"],
        family_name=names["family_name"],
        date_of_birth=dob,
        postcode=postcode,
        invalid=tuple(invalid),
    )
