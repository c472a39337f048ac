"""Identifier linkage: normalising NHS numbers, names, dates and postcodes, and keyed subject tokens."""

from __future__ import annotations

from gateway.linkage.normalise import (
    MAX_NAME_LENGTH,
    NormalisedSubject,
    is_valid_nhs_number,
    name_text_problem,
    nhs_check_digit,
    normalise_date,
    normalise_name,
    normalise_nhs_number,
    normalise_postcode,
    normalise_subject,
)
from gateway.linkage.tokens import SubjectTokeniser

__all__ = [
    "MAX_NAME_LENGTH",
    "NormalisedSubject",
    "SubjectTokeniser",
    "is_valid_nhs_number",
    "name_text_problem",
    "nhs_check_digit",
    "normalise_date",
    "normalise_name",
    "normalise_nhs_number",
    "normalise_postcode",
    "normalise_subject",
]
