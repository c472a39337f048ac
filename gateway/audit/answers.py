"""Auditor answers, transport-free: one summary row per entry, the known statuses, CSV, and the plain-language
subject-access report for the person the entries are about."""

from __future__ import annotations

import csv
import difflib
import html
import io
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gateway.audit.encoding import format_timestamp
from gateway.audit.review import AuditRecord
from gateway.domain import AnswerStatus, AuditKind, DisclosureLevel, FieldDisclosure
from gateway.pki.identity import parse_spiffe_id

STATUSES: tuple[str, ...] = (
    *(s.value for s in AnswerStatus),
    # refusal codes, and OK for reads of the log
    "OK", "INVALID_ARGUMENT", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "NOT_FOUND",
    # referral workflow states (transitions and breaches), and what a purge did
    "RECEIVED", "SCREENED", "ROUTED", "RATED", "RESEARCHING", "DECIDED", "CLOSED", "WITHDRAWN", "MERGED",
    "DRY_RUN", "PURGED",
    # review states
    "PENDING_REVIEW", "APPROVED", "DECLINED", "EXPIRED",
)
"""Every status an entry can hold: answer statuses for disclosures, error codes for refusals, OK for reads,
and the states of referrals and reviews for their entries (a test keeps this in step with those enums)."""

# The fan-out writes this reason when a query did not ask an agency at all (none of its categories was requested):
# such entries say nothing about the person, so subject access groups them instead of listing them.
NOT_REQUESTED_REASON = "none of this agency's categories was requested"

CSV_COLUMNS = ("index", "time", "kind", "agency", "status", "level", "organisation", "role", "user", "purpose",
               "legal_basis", "agreement", "categories", "case_reference")


MAX_NAME_GUESS = 128
"""Longest filter value for which the closest declared name is looked for."""


class UnknownName(ValueError):
    """A filter value is not in the vocabulary; the message names the closest declared name, if any.

    `hint` is the same advice without the value given (for answers that must not echo what was typed)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def resolve_name(value: str, names: Collection[str], what: str) -> str:
    """The declared name `value` means, compared case-insensitively; raise UnknownName otherwise."""
    if not value:
        return ""
    folded = {name.casefold(): name for name in names}
    found = folded.get(value.strip().casefold())
    if found is not None:
        return found
    # A name is short; text far longer than any is not compared letter by letter (that would be slow).
    close = (difflib.get_close_matches(value.strip().casefold(), list(folded), n=1, cutoff=0.6)
             if len(value) <= MAX_NAME_GUESS else [])
    hint = f"did you mean {folded[close[0]]!r}?" if close else f"known: {', '.join(sorted(names))}"
    raise UnknownName(f"unknown {what} {value!r}; {hint}", f"not a declared {what}; {hint}")


def organisation_of(caller: str) -> str:
    """The agency a caller's certificate identity belongs to ("gateway" for the gateway, "" if unknown)."""
    if not caller:
        return ""
    try:
        identity = parse_spiffe_id(caller)
    except ValueError:
        return ""
    return identity.agency or "gateway"


@dataclass(frozen=True, slots=True)
class EntryRow:
    """What a table or spreadsheet row shows of one entry."""

    index: int
    time: str
    kind: str
    agency: str
    status: str
    level: str
    organisation: str
    role: str
    user: str
    purpose: str
    legal_basis: str
    agreement: str
    categories: str
    case_reference: str

    @classmethod
    def of(cls, record: AuditRecord) -> EntryRow:
        e = record.event
        return cls(record.index, format_timestamp(e.occurred_at)[:19].replace("T", " "), e.kind.value, e.agency,
                   e.status, e.level, organisation_of(e.caller), e.role, e.user, e.purpose, e.legal_basis,
                   e.agreement, " ".join(e.categories), e.case_reference)

    def cells(self) -> tuple[str, ...]:
        return tuple(str(getattr(self, name)) for name in CSV_COLUMNS)


def _spreadsheet_safe(cell: str) -> str:
    # A cell starting with one of these is run as a formula by spreadsheet programs; a quote keeps it text.
    return f"'{cell}" if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def csv_text(rows: Iterable[EntryRow]) -> str:
    """The rows as CSV with a header line, every cell kept as text by spreadsheet programs."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_spreadsheet_safe(cell) for cell in row.cells()])
    return out.getvalue()


def was_not_asked(record: AuditRecord) -> bool:
    """Whether the entry records that a query did not ask this agency at all."""
    e = record.event
    return (e.kind is AuditKind.DISCLOSURE and e.status == AnswerStatus.WITHHELD.value
            and e.level == DisclosureLevel.NONE.name and e.reason == NOT_REQUESTED_REASON)


@dataclass(frozen=True, slots=True)
class Glossary:
    """Plain-language titles for the declared names a report mentions; a missing name is shown as declared."""

    agencies: Mapping[str, str] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)
    purposes: Mapping[str, str] = field(default_factory=dict)
    legal_bases: Mapping[str, str] = field(default_factory=dict)
    agreements: Mapping[str, str] = field(default_factory=dict)
    categories: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def title(names: Mapping[str, str], name: str) -> str:
        """The declared title or description of `name`, without a closing full stop, to sit inside a sentence."""
        return (names.get(name) or name.replace("_", " ")).strip().rstrip(".")


_OUTCOMES = {
    AnswerStatus.MATCH.value: "shared information about you",
    AnswerStatus.NO_MATCH.value: "held no information about you, so nothing was shared",
    AnswerStatus.WITHHELD.value: "nothing was shared: the rules did not allow it",
    AnswerStatus.UNAVAILABLE.value: "could not be reached, so nothing was shared",
    AnswerStatus.TIMED_OUT.value: "did not answer in time, so nothing was shared",
    AnswerStatus.REJECTED.value: "could not answer, so nothing was shared",
}

_STYLE = """
body { font-family: Georgia, serif; max-width: 46em; margin: 2em auto; line-height: 1.5; color: #111; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.5em; border-bottom: 1px solid #999; }
dl { display: grid; grid-template-columns: 12em 1fr; gap: .2em 1em; } dt { font-weight: bold; }
.note { font-size: .95em; color: #333; }
@media print { body { margin: 0; max-width: none; } section { break-inside: avoid; } }
"""


def subject_report_html(records: Sequence[AuditRecord], glossary: Glossary, *, generated_at: datetime,
                        period: str = "", not_asked: int = 0) -> str:
    """A printable HTML report for the data subject: who asked about them, why, under what law and agreement,
    and what was shared. It holds no identifiers of anyone: no staff ids, case references or record ids, and
    details held back to protect other people are reported as held back, never shown."""
    esc = html.escape
    t = Glossary.title
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>Who asked about your information</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>Who asked about your information</h1>",
        f"<p>This report was made on {esc(generated_at.strftime('%d %B %Y'))}"
        f"{esc(f' and covers {period}') if period else ''}. It lists every time an organisation in the "
        "Multi-Agency Safeguarding Hub asked for information about you through the information-sharing "
        "gateway, the reason they gave, the law that allowed it, and what was shared.</p>",
    ]
    if not records:
        parts.append("<p>No organisation asked for information about you in this period.</p>")
    for number, record in enumerate(records, start=1):
        e = record.event
        when = e.occurred_at.strftime("%d %B %Y at %H:%M UTC")
        asker = t(glossary.agencies, organisation_of(e.caller)) if organisation_of(e.caller) else "an organisation"
        rows: list[tuple[str, str]] = [("When", when)]
        if e.kind is AuditKind.AUDIT_ACCESS:
            heading = "An auditor reviewed the record of requests about you"
            rows.append(("Why", "to check that information about you was shared lawfully"))
        elif e.kind is AuditKind.REFUSAL:
            heading = "A request about you was refused"
            rows.append(("Who asked", asker))
            rows.append(("Outcome", "the gateway refused the request, so nothing was shared"))
        else:
            heading = f"{t(glossary.agencies, e.agency)} was asked about you"
            role = t(glossary.roles, e.role)
            role = "the" + role[3:] if role.startswith("The ") else role  # it follows "as" mid-sentence
            rows.append(("Who asked", f"{asker}, as {role}" if e.role else asker))
            rows.append(("Outcome", f"{t(glossary.agencies, e.agency)} "
                                    f"{_OUTCOMES.get(e.status, 'answered; see the outcome code ' + e.status)}"))
            if e.categories:
                rows.append(("What was shared", "; ".join(t(glossary.categories, c) for c in e.categories)))
            held = _held_back(record, glossary)
            if held:
                rows.append(("Held back", held))
        if e.purpose:
            rows.append(("Reason given", t(glossary.purposes, e.purpose)))
        if e.legal_basis:
            rows.append(("Law that allows it", t(glossary.legal_bases, e.legal_basis)))
        if e.agreement:
            rows.append(("Sharing agreement", t(glossary.agreements, e.agreement)))
        parts.append(f"<section><h2>{number}. {esc(heading)}</h2><dl>")
        parts.extend(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
        parts.append("</dl></section>")
    if not_asked:
        parts.append(f'<p class="note">In addition, {not_asked} time{"s" if not_asked != 1 else ""} an '
                     "organisation that could have been asked was not asked, so nothing about you was shared "
                     "by it. These are not listed one by one.</p>")
    parts.append('<p class="note">Some details may be held back to protect other people, such as family '
                 "members; this report says where that happened but does not show them. If you have questions "
                 "about this report, contact the data protection officer of the organisation that gave it to "
                 "you.</p></body></html>")
    return "\n".join(parts) + "\n"


def _held_back(record: AuditRecord, glossary: Glossary) -> str:
    counts = Counter(m.category for m in record.event.manifest
                     if m.disclosure in (FieldDisclosure.REDACTED, FieldDisclosure.WITHHELD))
    return "; ".join(f"{Glossary.title(glossary.categories, category)} ({n} detail{'s' if n != 1 else ''})"
                     for category, n in sorted(counts.items()))
