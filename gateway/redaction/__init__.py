"""Redaction ("pertinent information"): per-agency field rules, operators and safeguarding protections.

The service layer loads rules once per policy snapshot with `load_rules`, then calls
`Redactor.redact(records, ctx)` for each agency's answer and gets the released records plus a manifest
that lists every field exactly once.
"""

from __future__ import annotations

from gateway.redaction.operators import (
    DEFAULT_AGE_BANDS,
    REDACTED_DATE,
    REDACTED_POSTCODE,
    AgeBands,
    Pseudonymiser,
    age_on,
    agency_summary,
    drop,
    existence_only,
    generalise_date,
    generalise_postcode,
    keep,
    mask,
    normalise_for_pseudonym,
    pseudonymise,
    replace,
    verify_pseudonym,
)
from gateway.redaction.redactor import (
    GENERIC_CATEGORY,
    REASON_NO_RULE,
    RedactionContext,
    RedactionResult,
    Redactor,
    format_timestamp,
)
from gateway.redaction.rules import (
    FIELD_OPERATORS,
    RECORD_OPERATORS,
    FieldRule,
    RecordRule,
    RedactionRules,
    Safeguarding,
    load_rules,
    parse_rules,
)

__all__ = [
    "DEFAULT_AGE_BANDS",
    "FIELD_OPERATORS",
    "GENERIC_CATEGORY",
    "REASON_NO_RULE",
    "RECORD_OPERATORS",
    "REDACTED_DATE",
    "REDACTED_POSTCODE",
    "AgeBands",
    "FieldRule",
    "Pseudonymiser",
    "RecordRule",
    "RedactionContext",
    "RedactionResult",
    "RedactionRules",
    "Redactor",
    "Safeguarding",
    "age_on",
    "agency_summary",
    "drop",
    "existence_only",
    "format_timestamp",
    "generalise_date",
    "generalise_postcode",
    "keep",
    "load_rules",
    "mask",
    "normalise_for_pseudonym",
    "parse_rules",
    "pseudonymise",
    "replace",
    "verify_pseudonym",
]
