"""The fixed cast: named people who appear across agencies in every generated world, for the demo and tests.

The Mercer household: Kai (9) is open to children's social care as a child in need; his mother Jodie is
known to mental health and sexual health services and once lived in a refuge; her partner Dean Ashby is
on licence, high risk of serious harm, and the perpetrator in two domestic-abuse incidents Kai witnessed;
Kai's sister Ruby (4) keeps missing health-visiting reviews. Noah Fenwick, Kai's classmate, is known to
education and health only. NHS numbers are in the 999 range, which the generated population never uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.domain import SubjectIdentifiers


@dataclass(frozen=True, slots=True)
class CastMember:
    """A named person of the fixed cast, with the reference each agency that knows them uses."""

    given_name: str
    family_name: str
    date_of_birth: str  # ISO 8601
    nhs_number: str
    postcode: str
    address_line: str
    person_refs: Mapping[str, str] = field(hash=False)

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def agencies(self) -> frozenset[str]:
        """The agencies that hold records about this person."""
        return frozenset(self.person_refs)

    def subject(self, *, nhs_number: bool = True) -> SubjectIdentifiers:
        """The person's identifiers as a caller would give them (optionally without the NHS number)."""
        return SubjectIdentifiers(
            nhs_number=self.nhs_number if nhs_number else "",
            given_name=self.given_name,
            family_name=self.family_name,
            date_of_birth=self.date_of_birth,
            postcode=self.postcode,
            address_line=self.address_line,
        )


def _refs(**refs: str) -> Mapping[str, str]:
    return MappingProxyType(dict(refs))


HOME_ADDRESS = "27 Larch Road, London"
HOME_POSTCODE = "E8 3PR"

KAI_MERCER = CastMember(
    "Kai", "Mercer", "2017-05-14", "9990001235", HOME_POSTCODE, HOME_ADDRESS,
    _refs(police="POL-C000101", health="HLT-C000101", csc="CSC-C000101", education="EDU-C000101"),
)
JODIE_MERCER = CastMember(
    "Jodie", "Mercer", "1993-08-02", "9990002479", HOME_POSTCODE, HOME_ADDRESS,
    _refs(police="POL-C000102", health="HLT-C000102", housing="HSG-C000102"),
)
DEAN_ASHBY = CastMember(
    "Dean", "Ashby", "1989-11-23", "9990003718", HOME_POSTCODE, HOME_ADDRESS,
    _refs(police="POL-C000103", health="HLT-C000103", housing="HSG-C000103", probation="PRB-C000103"),
)
RUBY_MERCER = CastMember(
    "Ruby", "Mercer", "2022-03-09", "9990004943", HOME_POSTCODE, HOME_ADDRESS,
    _refs(health="HLT-C000104"),
)
NOAH_FENWICK = CastMember(
    "Noah", "Fenwick", "2016-09-30", "9990006180", "N16 6NJ", "41 Osbaldeston Road, London",
    _refs(health="HLT-C000105", education="EDU-C000105"),
)

CAST: tuple[CastMember, ...] = (KAI_MERCER, JODIE_MERCER, DEAN_ASHBY, RUBY_MERCER, NOAH_FENWICK)
"""Every member of the fixed cast."""

KAI_REFERRER = "Margaret Oyelaran"
"""The neighbour who referred Kai to children's social care (a third party: never shown to operational staff)."""

KAI_SCHOOL = "Hollybank Primary School"
KAI_ALLOCATED_TEAM = "Assessment Team 2"
KAI_ALLOCATED_WORKER = "Sam Okafor"
REFUGE_ADDRESS = "Flat 4, 12 Beechcroft Mews, London N4 2QF"
"""Where Jodie Mercer's refuge was: a protected location that must never leave the housing node."""
