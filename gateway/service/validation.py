"""Checking a hub request against the vocabularies and the agreement it cites, before anything is asked."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import date

from gateway.domain import SubjectIdentifiers
from gateway.errors import FieldViolation, InvalidRequest, RequestRefused
from gateway.linkage import (
    MAX_NAME_LENGTH,
    name_text_problem,
    normalise_date,
    normalise_nhs_number,
    normalise_postcode,
)
from gateway.service.ports import PolicyView

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_CASE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.-]{0,63}")
USER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._-]{0,127}")
_NAME_FIELDS = ("given_name", "family_name", "address_line")
# Lengths are checked before anything is normalised; NHS number, date of birth and postcode get generous
# room for spacing.
_LENGTH_LIMITS = {**dict.fromkeys(_NAME_FIELDS, MAX_NAME_LENGTH),
                  **dict.fromkeys(("nhs_number", "date_of_birth", "postcode"), 32)}
MAX_CATEGORIES = 64  # more than the whole shipped vocabulary; a longer list is refused unread
_LISTED_UNKNOWN_CATEGORIES = 5  # past this, unknown categories are counted in one violation, not listed


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the certificate identity and the practitioner it acts for."""

    identity: str  # SPIFFE URI from the client certificate
    agency: str  # requesting organisation, from the certificate identity
    user: str
    role: str
    # Set only by the gateway itself when MASH staff preview what `role` would receive: the role the
    # certificate really asserted (it must be bound to that one, not to `role`). Never read from a request.
    previewed_by: str = ""


@dataclass(frozen=True, slots=True)
class QueryCommand:
    """A hub question as the service layer sees it."""

    request_id: str
    subject: SubjectIdentifiers
    purpose: str
    legal_basis: str
    agreement: str
    case_reference: str
    categories: tuple[str, ...] = ()
    referral_id: str = ""  # set once the query is linked to a referral (research under it)


INVALID = "<invalid>"
UNDECLARED = "<undeclared>"


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex}"


def ensure_request_id(request_id: str) -> str:
    """The caller's request id if well formed, a fresh one if empty; InvalidRequest otherwise."""
    if not request_id:
        return new_request_id()
    if not _REQUEST_ID.fullmatch(request_id):
        raise InvalidRequest([FieldViolation(
            "request_id", "must be 1-64 characters of letters, digits and . _ : - starting with a letter or digit"
        )])
    return request_id


def auditable(policy: PolicyView, caller: Caller, command: QueryCommand) -> dict[str, str]:
    """What an audit entry may record of a request before it is validated.

    Caller-supplied text is kept only when it is a declared vocabulary name or matches its strict
    format; anything else could be personal data (or simply huge), so the entry says it was invalid.
    """
    def declared(value: str, names: object) -> str:
        return value if not value or value in names else UNDECLARED  # type: ignore[operator]

    def formatted(value: str, pattern: re.Pattern[str]) -> str:
        return value if not value or pattern.fullmatch(value) else INVALID

    return {
        "user": formatted(caller.user, USER_PATTERN),
        "role": declared(caller.role, policy.roles),
        "purpose": declared(command.purpose, policy.purposes),
        "legal_basis": declared(command.legal_basis, policy.legal_bases),
        "agreement": declared(command.agreement, policy.agreements),
        "case_reference": formatted(command.case_reference, _CASE_REFERENCE),
    }


def check_caller(policy: PolicyView, caller: Caller) -> None:
    """The practitioner's user id and role are present and the certificate may assert the role."""
    violations = []
    if not caller.user:
        violations.append(FieldViolation("metadata.x-mash-user", "the practitioner's user id is required"))
    elif not USER_PATTERN.fullmatch(caller.user):
        violations.append(FieldViolation("metadata.x-mash-user", "must be 1-128 characters of letters, "
                                         "digits and @ . _ -"))
    if not caller.role:
        violations.append(FieldViolation("metadata.x-mash-role", "the practitioner's role is required"))
    if violations:
        raise InvalidRequest(violations)
    if (caller.previewed_by or caller.role) not in policy.roles_for(caller.identity):
        raise RequestRefused(
            f"certificate {caller.identity} may not assert "
            + (f"role {caller.role!r}" if caller.role in policy.roles else "that role (it is not declared)"),
            code="ROLE_NOT_BOUND", field="metadata.x-mash-role",
        )


def _oversized(subject: SubjectIdentifiers) -> list[str]:
    """The identifier fields longer than their limit."""
    return [name for name, limit in _LENGTH_LIMITS.items() if len(getattr(subject, name)) > limit]


def sealable(subject: SubjectIdentifiers) -> bool:
    """Whether the identifiers are small enough to seal into an audit entry (oversized input is refused
    anyway, and must not bloat the permanent log)."""
    return not _oversized(subject)


def within_limits(subject: SubjectIdentifiers) -> SubjectIdentifiers:
    """The subject with every over-long identifier left out, so tokenising it is bounded work."""
    return replace(subject, **dict.fromkeys(_oversized(subject), ""))


def _check_subject(subject: SubjectIdentifiers, today: date) -> list[FieldViolation]:
    """Identifier problems, described without echoing the values (they are personal data)."""
    violations = [FieldViolation(f"subject.{name}", f"is longer than {_LENGTH_LIMITS[name]} characters")
                  for name in _oversized(subject)]
    subject = within_limits(subject)
    nhs_ok = dob_ok = False
    if subject.nhs_number:
        try:
            normalise_nhs_number(subject.nhs_number)
            nhs_ok = True
        except ValueError as exc:
            violations.append(FieldViolation("subject.nhs_number", str(exc)))
    if subject.date_of_birth:
        try:
            born = normalise_date(subject.date_of_birth)
            if born > today:
                violations.append(FieldViolation("subject.date_of_birth", "is in the future"))
            else:
                dob_ok = True
        except ValueError as exc:
            violations.append(FieldViolation("subject.date_of_birth", str(exc)))
    if subject.postcode:
        try:
            normalise_postcode(subject.postcode)
        except ValueError as exc:
            violations.append(FieldViolation("subject.postcode", str(exc)))
    for name in _NAME_FIELDS:
        if (problem := name_text_problem(getattr(subject, name))) is not None:
            violations.append(FieldViolation(f"subject.{name}", problem))
    names_ok = bool(subject.given_name.strip() and subject.family_name.strip())
    if not violations and not (nhs_ok or (names_ok and dob_ok)):
        violations.append(FieldViolation(
            "subject", "give a valid NHS number, or given name, family name and date of birth"
        ))
    return violations


def _check_categories(policy: PolicyView, categories: tuple[str, ...]) -> list[FieldViolation]:
    """Unknown categories, a few listed and the rest counted, so the error and its audit entry stay small."""
    if len(categories) > MAX_CATEGORIES:
        return [FieldViolation("categories", f"at most {MAX_CATEGORIES} categories may be asked for at once")]
    unknown = [i for i, category in enumerate(categories) if not policy.is_category(category)]
    violations = [FieldViolation(f"categories[{i}]", "is not a known record category")
                  for i in unknown[:_LISTED_UNKNOWN_CATEGORIES]]
    if len(unknown) > _LISTED_UNKNOWN_CATEGORIES:
        violations.append(FieldViolation(
            "categories", f"{len(unknown) - _LISTED_UNKNOWN_CATEGORIES} more entries are not known record categories"
        ))
    return violations


def check_request(
    policy: PolicyView, caller: Caller, command: QueryCommand, today: date, *, about_subject: bool = True
) -> None:
    """Raise InvalidRequest (all field problems at once) or RequestRefused; return if the request may go on.

    A request that is not `about_subject` (an aggregate over everyone) is checked without its subject."""
    violations: list[FieldViolation] = []
    purpose = policy.purposes.get(command.purpose) if command.purpose else None
    if not command.purpose:
        violations.append(FieldViolation("purpose", "is required"))
    elif purpose is None:
        violations.append(FieldViolation("purpose", "is not in the purpose vocabulary"))
    elif purpose.group:
        violations.append(FieldViolation(
            "purpose", f"{command.purpose!r} is a group of purposes; cite a specific purpose within it"
        ))
    if not command.legal_basis:
        violations.append(FieldViolation("legal_basis", "is required"))
    elif command.legal_basis not in policy.legal_bases:
        violations.append(FieldViolation(
            "legal_basis", "is not in the legal-basis vocabulary"
        ))
    elif purpose is not None and command.legal_basis not in purpose.legal_bases:
        violations.append(FieldViolation(
            "legal_basis", f"{command.legal_basis!r} is not a legal basis allowed for purpose {command.purpose!r}"
        ))
    agreement = policy.agreements.get(command.agreement) if command.agreement else None
    if not command.agreement:
        violations.append(FieldViolation("agreement", "the data-sharing agreement is required"))
    elif agreement is None:
        violations.append(FieldViolation("agreement", "is not a known data-sharing agreement"))
    elif today < agreement.valid_from:
        violations.append(FieldViolation(
            "agreement", f"{command.agreement!r} is not in force until {agreement.valid_from.isoformat()}"
        ))
    elif today > agreement.valid_until:
        violations.append(FieldViolation(
            "agreement", f"{command.agreement!r} expired on {agreement.valid_until.isoformat()}"
        ))
    if not command.case_reference:
        violations.append(FieldViolation("case_reference", "is required"))
    elif not _CASE_REFERENCE.fullmatch(command.case_reference):
        violations.append(FieldViolation(
            "case_reference", "must be 1-64 characters of letters, digits and / _ . -"
        ))
    violations += _check_categories(policy, command.categories)
    if about_subject:
        violations += _check_subject(command.subject, today)
    if violations:
        raise InvalidRequest(violations)

    assert agreement is not None  # no violations means the agreement was found
    if not any(policy.purpose_within(command.purpose, p) for p in agreement.purposes):
        raise RequestRefused(
            f"agreement {command.agreement!r} does not cover purpose {command.purpose!r}",
            code="AGREEMENT_PURPOSE", field="purpose",
        )
    if caller.agency not in agreement.parties:
        raise RequestRefused(
            f"requesting organisation {caller.agency!r} is not a party to agreement {command.agreement!r}",
            code="AGREEMENT_PARTY", field="agreement",
        )
    for i, category in enumerate(command.categories):
        # A wider category ("health") is fine when the agreement covers part of it; disclosure is
        # still capped per category by the agreement later.
        if not any(
            policy.category_within(category, c) or policy.category_within(c, category)
            for c in agreement.categories
        ):
            raise RequestRefused(
                f"agreement {command.agreement!r} does not cover category {category!r}",
                code="AGREEMENT_CATEGORY", field=f"categories[{i}]",
            )
