"""What a locator token is computed over: one domain-separated OPRF input per identifier kind.

Both sides normalise with `gateway.linkage` (the same rule the nodes match with), then encode

    "mash-gateway/locator/v1" || u32be(len(kind)) || kind || (u32be(len(part)) || part)*

with each part UTF-8: kind "nhs" has one part, the ten digits of the NHS number; kind "ndob" has three,
the normalised given name, the normalised family name and the date of birth as YYYY-MM-DD. The token is
the first 16 bytes of the OPRF output for that input. An identifier kind that is not usable gives no
input. See docs/locator.md.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from gateway.linkage import NormalisedSubject
from gateway.linkage.tokens import length_prefixed

DOMAIN = b"mash-gateway/locator/v1"
TOKEN_BYTES = 16


class IdentifierKind(enum.Enum):
    """The identifier routes a node matches on, each its own token domain."""

    NHS_NUMBER = "nhs"
    NAME_AND_DATE_OF_BIRTH = "ndob"


def encode(kind: IdentifierKind, parts: Sequence[str]) -> bytes:
    """The OPRF input for one identifier kind: length-prefixed parts under the versioned domain."""
    return length_prefixed(DOMAIN, (kind.value, *parts))


def locator_inputs(subject: NormalisedSubject) -> list[tuple[IdentifierKind, bytes]]:
    """One OPRF input per usable identifier kind of a normalised subject (NHS number first)."""
    inputs: list[tuple[IdentifierKind, bytes]] = []
    if subject.nhs_number:
        inputs.append((IdentifierKind.NHS_NUMBER, encode(IdentifierKind.NHS_NUMBER, (subject.nhs_number,))))
    key = subject.name_and_date_of_birth
    if key is not None:
        given, family, dob = key
        inputs.append((IdentifierKind.NAME_AND_DATE_OF_BIRTH,
                       encode(IdentifierKind.NAME_AND_DATE_OF_BIRTH, (given, family, dob.isoformat()))))
    return inputs


def token_from_output(output: bytes) -> bytes:
    """The index token: the first TOKEN_BYTES of a 64-byte OPRF output."""
    return output[:TOKEN_BYTES]
