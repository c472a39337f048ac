"""Auditors and data protection officers: search the log, open an entry, who accessed a person's records,
the subject-access report, the log's verification state and charts of disclosures and refusals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.datastructures import FormData
from starlette.responses import Response

from gateway.console import charts
from gateway.console.web import Page, Refused
from gateway.generated.mash.gateway.v1 import audit_service_pb2 as audit_pb
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb

Handler = Callable[[Page], Awaitable[Response]]

FILTERS = ("agency", "purpose", "role", "user", "case_reference", "status")
IDENTIFIERS = ("nhs_number", "given_name", "family_name", "date_of_birth", "postcode", "address_line")
KINDS = [(name.removeprefix("AUDIT_ENTRY_KIND_").lower(), value)
         for name, value in audit_pb.AuditEntryKind.items() if value]


def when(ts: Timestamp) -> datetime | None:
    """A protobuf timestamp as an aware datetime; None when unset."""
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None


def kind_name(kind: int) -> str:
    name = audit_pb.AuditEntryKind.Name(audit_pb.AuditEntryKind.ValueType(kind))
    return name.removeprefix("AUDIT_ENTRY_KIND_").lower().replace("_", " ")


def level_name(level: int) -> str:
    if not level:
        return ""
    return common_pb2.DisclosureLevel.Name(common_pb2.DisclosureLevel.ValueType(level)).removeprefix(
        "DISCLOSURE_LEVEL_").lower()


def _day(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise Refused(400, f"{field} must be a date, YYYY-MM-DD.") from exc


def _stamp(day: date) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(datetime(day.year, day.month, day.day, tzinfo=UTC))
    return ts


def period(form: FormData) -> tuple[date | None, date | None]:
    """The form's period: `since` inclusive, `until` inclusive (a whole day)."""
    return _day(str(form.get("since", "")), "From"), _day(str(form.get("until", "")), "To")


def _request(form: FormData, limit: int) -> audit_pb.ListEntriesRequest:
    request = audit_pb.ListEntriesRequest(limit=limit)
    for name in FILTERS:
        setattr(request, name, str(form.get(name, "")).strip())
    since, until = period(form)
    if since:
        request.since.CopyFrom(_stamp(since))
    if until:
        request.until.CopyFrom(_stamp(until + timedelta(days=1)))
    kind = str(form.get("kind", ""))
    if kind:
        request.kind = dict(KINDS).get(kind, audit_pb.AUDIT_ENTRY_KIND_UNSPECIFIED)
        if not request.kind:
            raise Refused(400, "Choose a kind from the list.")
    return request


async def list_entries(current: Page, request: audit_pb.ListEntriesRequest) -> list[audit_pb.AuditEntry]:
    stream = current.console.gateway.audit.ListEntries(request, metadata=current.meta, timeout=30)
    return [response.entry async for response in stream]


async def search_form(current: Page) -> Response:
    current.require("audit")
    return current.render("audit_search.html", kinds=KINDS, filters={}, results=None)


async def search(current: Page) -> Response:
    """Newest first, a page at a time, with the total the gateway counted when the first page was read.

    The gateway's page tokens carry the listing on from where the first page stood, so entries written since
    (this search's own audit_access entry among them) do not shift later pages; the tokens of the pages seen so
    far travel in the form, so "Newer" can step back too.
    """
    current.require("audit")
    form = await current.form()
    size = current.console.settings.page_size
    tokens = str(form.get("tokens", "")).split()
    try:
        number = max(1, min(int(str(form.get("page", "1"))), len(tokens) + 1))
    except ValueError:
        number = 1
    request = _request(form, 0)
    request.page_size = size
    request.page_token = tokens[number - 2] if number > 1 else ""
    shown, total, following = [], None, ""
    async for response in current.console.gateway.audit.ListEntries(request, metadata=current.meta, timeout=30):
        shown.append(response.entry)
        if response.HasField("total_size"):
            total = response.total_size
        following = response.next_page_token or following
    if total is None:
        try:
            total = int(str(form.get("total", "0"))) if number > 1 else 0
        except ValueError:
            total = 0
    if following and len(tokens) < number:
        tokens.append(following)
    filters = {f: str(form.get(f, "")) for f in (*FILTERS, "kind", "since", "until")}
    return current.render("audit_search.html", kinds=KINDS, filters=filters, results=shown, total=total,
                          tokens=" ".join(tokens[:number]), page=number, pages=max(1, -(-total // size)),
                          more=bool(following), when=when, kind_name=kind_name, level_name=level_name)


async def entry(current: Page) -> Response:
    current.require("audit")
    form = await current.form()
    try:
        index = int(str(form.get("index", "")))
    except ValueError as exc:
        raise Refused(400, "An entry number is a whole number.") from exc
    response = await current.console.gateway.audit.GetEntry(audit_pb.GetEntryRequest(index=index),
                                                             metadata=current.meta, timeout=10)
    return current.render("audit_entry.html", entry=response.entry, when=when, kind_name=kind_name,
                          level_name=level_name,
                          disclosure=lambda d: hub_pb.FieldDisclosure.Name(d).removeprefix("FIELD_DISCLOSURE_")
                          .lower() if d else "")


def _subject(form: FormData) -> common_pb2.SubjectIdentifiers:
    subject = common_pb2.SubjectIdentifiers(**{f: str(form.get(f, "")).strip() for f in IDENTIFIERS})
    if not any(getattr(subject, f) for f in IDENTIFIERS):
        raise Refused(400, "Give at least one identifier of the person.")
    return subject


async def subject_entries(current: Page, form: FormData) -> list[audit_pb.AuditEntry]:
    stream = current.console.gateway.audit.SubjectAccess(audit_pb.SubjectAccessRequest(subject=_subject(form)),
                                                         metadata=current.meta, timeout=30)
    return [response.entry async for response in stream]


def _within(entries: list[audit_pb.AuditEntry], since: date | None, until: date | None) -> list[audit_pb.AuditEntry]:
    def inside(e: audit_pb.AuditEntry) -> bool:
        day = e.occurred_at.ToDatetime(tzinfo=UTC).date()
        return (since is None or day >= since) and (until is None or day <= until)
    return [e for e in entries if inside(e)]


async def who_form(current: Page) -> Response:
    current.require("audit")
    return current.render("audit_who.html", identifiers=IDENTIFIERS, rows=None)


async def who(current: Page) -> Response:
    """Who received this person's records, when, why and under which agreement, in a period."""
    current.require("audit")
    form = await current.form()
    since, until = period(form)
    found = _within(await subject_entries(current, form), since, until)
    rows = [e for e in found if e.kind == audit_pb.AUDIT_ENTRY_KIND_DISCLOSURE and e.categories]
    rows.sort(key=lambda e: e.index, reverse=True)
    asked = sum(1 for e in found if e.kind == audit_pb.AUDIT_ENTRY_KIND_DISCLOSURE)
    return current.render("audit_who.html", identifiers=IDENTIFIERS, rows=rows, asked=asked,
                          refusals=sum(1 for e in found if e.kind == audit_pb.AUDIT_ENTRY_KIND_REFUSAL),
                          since=since, until=until, when=when, level_name=level_name)


async def report_form(current: Page) -> Response:
    current.require("audit")
    return current.render("audit_report_form.html", identifiers=IDENTIFIERS)


async def report(current: Page) -> Response:
    """The subject-access report, in plain language, ready to print."""
    current.require("audit")
    form = await current.form()
    found = await subject_entries(current, form)
    shared = [e for e in found if e.kind == audit_pb.AUDIT_ENTRY_KIND_DISCLOSURE and e.categories]
    checked = [e for e in found if e.kind == audit_pb.AUDIT_ENTRY_KIND_DISCLOSURE and not e.categories]
    refused = [e for e in found if e.kind == audit_pb.AUDIT_ENTRY_KIND_REFUSAL]
    reads = [e for e in found if e.kind == audit_pb.AUDIT_ENTRY_KIND_AUDIT_ACCESS]
    return current.render("audit_report.html", shared=shared, checked=checked, refused=refused, reads=reads,
                          generated=datetime.now(UTC), when=when, level_name=level_name)


async def verification(current: Page) -> Response:
    """The last checkpoint, its age, its witnesses, and how many entries no checkpoint covers yet."""
    current.require("audit")
    gateway = current.console.gateway.audit
    latest: audit_pb.SignedCheckpoint | None
    try:
        latest = (await gateway.GetLatestCheckpoint(audit_pb.GetLatestCheckpointRequest(), metadata=current.meta,
                                                    timeout=10)).checkpoint
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        latest = None  # a young log: nothing signed yet
    verified = await gateway.VerifyLog(audit_pb.VerifyLogRequest(), metadata=current.meta, timeout=60)
    stamped = when(latest.timestamp) if latest is not None else None
    age = datetime.now(UTC) - stamped if stamped else None
    return current.render("audit_verification.html", checkpoint=latest, verified=verified, stamped=stamped,
                          age=charts.duration(age) if age is not None else "",
                          unsigned=max(0, verified.entries - (latest.tree_size if latest is not None else 0)),
                          witnesses=[line.split(" ", 2)[1] if line.count(" ") >= 2 else line
                                     for line in (latest.cosignatures if latest is not None else ())])


async def chart(current: Page) -> Response:
    """Disclosures and refusals per day, by agency and by purpose, as server-drawn SVG with the numbers beside."""
    current.require("audit")
    limit = current.console.settings.scan_limit
    disclosures = await list_entries(current, audit_pb.ListEntriesRequest(
        kind=audit_pb.AUDIT_ENTRY_KIND_DISCLOSURE, limit=limit))
    refusals = await list_entries(current, audit_pb.ListEntriesRequest(kind=audit_pb.AUDIT_ENTRY_KIND_REFUSAL,
                                                                       limit=limit))
    shared = [e for e in disclosures if e.categories]
    by_agency = charts.series(shared, refusals, lambda e: e.agency or "(no agency asked)")
    by_purpose = charts.series(shared, refusals, lambda e: e.purpose or "(no valid purpose)")
    return current.render("audit_chart.html", by_agency=by_agency, by_purpose=by_purpose,
                          agency_svg=charts.bar_chart(by_agency, "Disclosures and refusals per agency and day"),
                          purpose_svg=charts.bar_chart(by_purpose, "Disclosures and refusals per purpose and day"),
                          capped=len(disclosures) >= limit or len(refusals) >= limit)


GET: dict[str, Handler] = {
    "/audit": search_form,
    "/audit/who": who_form,
    "/audit/report": report_form,
    "/audit/verification": verification,
    "/audit/chart": chart,
}
POST: dict[str, Handler] = {
    "/audit/search": search,
    "/audit/entry": entry,
    "/audit/who": who,
    "/audit/report": report,
}
