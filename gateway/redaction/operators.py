"""Redaction operators: small pure functions that turn one held value into what a caller may see.

Each operator takes the held value and its own validated parameters and returns the value to release,
or None when nothing may be released. None of them logs or keeps the values it sees.
"""

from __future__ import annotations

import bisect
import hmac
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from gateway.domain import AgencyContact
from gateway.keyring import Keyring

REDACTED_DATE = "[REDACTED:date]"
"""What a date operator releases when the held value is not a date it can read."""

REDACTED_POSTCODE = "[REDACTED:postcode]"
"""What the postcode operator releases when the held value is not a valid UK postcode."""

FULL_MASK_LENGTH = 4
"""Values this short or shorter are masked completely: a partial mask would reveal most of them."""

PSEUDONYM_PREFIX = "pn"
PSEUDONYM_DIGEST_BYTES = 16  # 128 bits of the HMAC: collisions are negligible, tokens stay readable

# Domain separation: the constant label keeps these MACs apart from any other use of the same key, and
# the NUL separators cannot occur in a domain (validated) so domain and value never run into each other.
_PSEUDONYM_LABEL = b"mash-gateway/pseudonym/v1\x00"
_SCOPED_LABEL = b"mash-gateway/scoped-pseudonym/v1\x00"

DATE_GRANULARITIES = ("year", "month", "age_band")
POSTCODE_GRANULARITIES = ("area", "district", "sector")

DOMAIN_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
"""Pseudonym domains are short lower-case names, e.g. ``person`` or ``police.informant``."""

# UK postcode: outward code (area letters, district digit, optional digit or letter) and inward code
# (sector digit, two unit letters). The space is optional on input.
_POSTCODE = re.compile(r"^([A-Z]{1,2})([0-9][A-Z0-9]?)\s*([0-9])([A-Z]{2})$")


def keep(value: str) -> str:
    """Release the value as held."""
    return value


def drop(value: str) -> None:
    """Release nothing; the field is listed as withheld."""
    return None


def replace(value: str, *, text: str) -> str:
    """Release a fixed text instead of the value, e.g. ``[service withheld]``."""
    return text


def mask(value: str, *, keep_first: int = 0, keep_last: int = 0, char: str = "*") -> str:
    """Mask all but the first `keep_first` and last `keep_last` characters; short values are masked whole.

    A value of FULL_MASK_LENGTH or fewer characters, or one no longer than the characters kept, is
    masked completely so a mask never gives the whole value away.
    """
    if keep_first < 0 or keep_last < 0:
        raise ValueError("mask keeps a non-negative number of characters")
    if len(char) != 1:
        raise ValueError("mask character must be exactly one character")
    n = len(value)
    if n <= FULL_MASK_LENGTH or n <= keep_first + keep_last:
        return char * n
    return value[:keep_first] + char * (n - keep_first - keep_last) + value[n - keep_last :]


def normalise_for_pseudonym(value: str) -> str:
    """The form of a value that is pseudonymised: NFKC, case-folded, whitespace collapsed."""
    if not value.isascii():  # NFKC leaves ASCII as it is, so most values skip it
        value = unicodedata.normalize("NFKC", value)
    return " ".join(value.casefold().split())


def _message(value: str, domain: str, scope: str) -> bytes:
    """What is MACed; a scoped pseudonym has its own label, so it can never equal an unscoped one."""
    if scope:
        return (_SCOPED_LABEL + domain.encode() + b"\x00" + scope.encode() + b"\x00"
                + normalise_for_pseudonym(value).encode())
    return _PSEUDONYM_LABEL + domain.encode() + b"\x00" + normalise_for_pseudonym(value).encode()


def _pseudonym(key_id: str, key: bytes, value: str, domain: str, scope: str = "") -> str:
    digest = hmac.digest(key, _message(value, domain, scope), "sha256")[:PSEUDONYM_DIGEST_BYTES]
    return f"{PSEUDONYM_PREFIX}:{key_id}:{digest.hex()}"


def pseudonymise(value: str, *, domain: str, keys: Keyring, scope: str = "") -> str:
    """A keyed pseudonym ``pn:<key id>:<hex>`` of `value` in `domain`, made with the ring's active key.

    The same value gives the same pseudonym within one domain and key, so a reader can tell that two
    records name the same person without learning who; another domain or key gives another pseudonym.
    A `scope` (such as one request) gives pseudonyms that agree only within that scope.
    """
    if not DOMAIN_PATTERN.match(domain):
        raise ValueError("pseudonym domain must be a short lower-case name")
    return _pseudonym(keys.active_id, keys.active, value, domain, scope)


def verify_pseudonym(token: str, value: str, domain: str, keys: Keyring, scope: str = "") -> bool:
    """Whether `token` is the pseudonym of `value` in `domain` (and `scope`) under any key in `keys`."""
    prefix = PSEUDONYM_PREFIX + ":"
    if not token.startswith(prefix):
        return False
    key_id, sep, _ = token[len(prefix) :].rpartition(":")
    if not sep or key_id not in keys.keys or not DOMAIN_PATTERN.match(domain):
        return False
    expected = _pseudonym(key_id, keys.keys[key_id], value, domain, scope)
    return hmac.compare_digest(expected.encode(), token.encode())


class Pseudonymiser:
    """Keyed pseudonyms with one key ring, as `pseudonymise` makes them, with domains validated once."""

    __slots__ = ("_domains", "_keys", "_scope")

    def __init__(self, keys: Keyring, scope: str = "") -> None:
        self._keys = keys
        self._scope = scope
        self._domains: set[str] = set()

    def scoped(self, scope: str) -> Pseudonymiser:
        """The same key ring, giving pseudonyms that agree only within `scope` (e.g. one request)."""
        return Pseudonymiser(self._keys, scope) if scope else self

    def pseudonym(self, value: str, domain: str) -> str:
        """The pseudonym of `value` in `domain` with the active key, as `pseudonymise` would make it."""
        if domain not in self._domains:
            if not DOMAIN_PATTERN.match(domain):
                raise ValueError("pseudonym domain must be a short lower-case name")
            self._domains.add(domain)
        return _pseudonym(self._keys.active_id, self._keys.active, value, domain, self._scope)


@dataclass(frozen=True, slots=True)
class AgeBands:
    """Age bands given by their lower edges in whole years, the first being 0; the last is open-ended."""

    edges: tuple[int, ...]
    labels: tuple[str, ...]

    @classmethod
    def from_edges(cls, edges: Sequence[int]) -> AgeBands:
        """Bands from ascending lower edges such as ``[0, 1, 5, 11, 16, 18]``; ValueError if malformed."""
        if not edges:
            raise ValueError("age bands need at least one edge")
        if any(isinstance(e, bool) or not isinstance(e, int) for e in edges):
            raise ValueError("age band edges must be whole numbers of years")
        if edges[0] != 0:
            raise ValueError("the first age band must start at 0")
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError("age band edges must be strictly increasing")
        if edges[-1] > 150:
            raise ValueError("age band edges must be at most 150 years")
        labels = []
        for lo, hi in zip(edges, (*edges[1:], None), strict=True):
            if hi is None:
                labels.append(f"age {lo}+")
            elif hi - lo == 1:
                labels.append(f"age {lo}")
            else:
                labels.append(f"age {lo}-{hi - 1}")
        return cls(tuple(edges), tuple(labels))

    def label_for(self, age: int) -> str:
        """The label of the band holding `age` (whole years, >= 0); an age on an edge is in the upper band."""
        return self.labels[bisect.bisect_right(self.edges, age) - 1]


DEFAULT_AGE_BANDS = AgeBands.from_edges((0, 1, 5, 11, 16, 18, 25))
"""Bands that follow safeguarding thresholds: infants, pre-school, primary, secondary, 16-17, adults."""


def parse_date(value: str) -> date | None:
    """The calendar date in an ISO 8601 date or RFC 3339 timestamp, or None if there is none."""
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text).date()
    except ValueError:
        return None


def age_on(born: date, on: date) -> int:
    """Age in completed years on `on`; someone born on 29 February ages on 1 March in other years."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def generalise_date(value: str, *, to: str, on: date, bands: AgeBands = DEFAULT_AGE_BANDS) -> str:
    """A date reduced to its year, its month, or the age band it gives on the disclosure date `on`.

    An unreadable date, or a date of birth after `on`, becomes REDACTED_DATE.
    """
    born = parse_date(value)
    if born is None:
        return REDACTED_DATE
    if to == "year":
        return f"{born.year:04d}"
    if to == "month":
        return f"{born.year:04d}-{born.month:02d}"
    if to == "age_band":
        age = age_on(born, on)
        return REDACTED_DATE if age < 0 else bands.label_for(age)
    raise ValueError(f"date granularity must be one of {', '.join(DATE_GRANULARITIES)}")


def generalise_postcode(value: str, *, to: str) -> str:
    """A UK postcode reduced to its area (``SW``), district (``SW1A``) or sector (``SW1A 1``).

    A value that is not a valid postcode becomes REDACTED_POSTCODE.
    """
    match = _POSTCODE.match(value.strip().upper())
    if match is None:
        return REDACTED_POSTCODE
    area, district, sector, _unit = match.groups()
    if to == "area":
        return area
    if to == "district":
        return area + district
    if to == "sector":
        return f"{area}{district} {sector}"
    raise ValueError(f"postcode granularity must be one of {', '.join(POSTCODE_GRANULARITIES)}")


def agency_summary(value: str, *, summary: str) -> str:
    """The record's own shareable summary, written by the agency, instead of the detail."""
    return summary


def existence_only(agency: str, contact: AgencyContact | None) -> str:
    """The text of an existence-only answer: known to the agency, and whom to ask."""
    text = f"Known to {agency}: yes."
    if contact is not None:
        parts = [p for p in (contact.team, contact.phone, contact.email) if p]
        if parts:
            text += " Contact: " + ", ".join(parts) + "."
    return text
