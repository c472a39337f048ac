"""Analysis use cases: an analyst's view of one person and the partnership's strategic picture, as counts and
dates only, admitted, planned and routed exactly as hub queries are, and audited before they are returned."""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Protocol

import structlog

from gateway.analysis.convert import person_from_proto, row_from_proto
from gateway.analysis.model import Cell, CohortRow
from gateway.analysis.picture import MEASURES, count, link, suppress
from gateway.analysis.suppression import Shown
from gateway.api.convert import contact_from_proto, subject_to_proto
from gateway.audit.sealing import IdentifierSealer
from gateway.domain import AgencyContact, AuditEvent, AuditReceipt, Clock, DisclosureLevel, SubjectIdentifiers
from gateway.errors import AgencyRejected, AgencyTimedOut, AgencyUnavailable, FieldViolation, InvalidRequest
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.linkage import SubjectTokeniser
from gateway.locator.inputs import TOKEN_BYTES
from gateway.service.admission import Admission, AdmittedRequest
from gateway.service.planning import AgencyPlan, Router, plan_request
from gateway.service.ports import AuditSink, PolicySource, PolicyView
from gateway.service.validation import Caller, QueryCommand

log = structlog.get_logger("gateway.analysis")

MAX_PERIOD_DAYS = 3653  # ten years
FEATURES_FOR = 60.0  # seconds a node's Describe answer (summaries or not) is trusted before asking again


class SummaryTransport(Protocol):
    """Reaches agency nodes' other AgencyService methods (`GrpcAgencyTransport` is one)."""

    async def call(self, agency: str, rpc: str, request: Any, *, timeout: float) -> Any: ...

    async def features(self, agency: str, *, timeout: float = 5.0) -> frozenset[int]: ...


class SummaryStatus(enum.Enum):
    KNOWN = "KNOWN"
    NOT_KNOWN = "NOT_KNOWN"
    WITHHELD = "WITHHELD"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    UNAVAILABLE = "UNAVAILABLE"
    AMBIGUOUS = "AMBIGUOUS"


@dataclass(frozen=True, slots=True)
class CategoryCount:
    category: str
    level: DisclosureLevel
    records: int
    first: date
    last: date


@dataclass(frozen=True, slots=True)
class AgencyPart:
    """One agency's part of a person's description, as released."""

    agency: str
    area: str
    status: SummaryStatus
    level: DisclosureLevel
    categories: tuple[CategoryCount, ...] = ()
    contact: AgencyContact | None = None
    detail: str = ""
    cells: tuple[Cell, ...] = ()  # what the counts above came from: used for the person's areas and years
    receipt: AuditReceipt | None = None


@dataclass(frozen=True, slots=True)
class AreaPart:
    area: str
    agencies: tuple[str, ...]
    records: int
    first: date
    last: date


@dataclass(frozen=True, slots=True)
class YearPart:
    year: int
    areas: tuple[tuple[str, int], ...]  # (area, records), by area
    main_area: str
    moved_from: str


@dataclass(frozen=True, slots=True)
class PersonView:
    request_id: str
    policy_version: str
    agencies: tuple[AgencyPart, ...]
    areas: tuple[AreaPart, ...]
    as_victim: int
    as_perpetrator: int
    years: tuple[YearPart, ...]

    @property
    def moves(self) -> int:
        return sum(1 for y in self.years if y.moved_from)


@dataclass(frozen=True, slots=True)
class PictureCommand:
    """A strategic picture request: the usual terms, no subject, and a period."""

    request_id: str
    purpose: str
    legal_basis: str
    agreement: str
    case_reference: str
    period_start: str
    period_end: str


@dataclass(frozen=True, slots=True)
class Picture:
    request_id: str
    policy_version: str
    period_start: date
    period_end: date
    areas: Mapping[str, Mapping[str, Shown]]
    total: Mapping[str, Shown]
    counted: tuple[str, ...]
    left_out: tuple[tuple[str, str], ...]  # (agency, why)
    receipt: AuditReceipt | None = None


def digest(document: object) -> str:
    encoded = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


def iso_date(text: str) -> date:
    """A YYYY-MM-DD date (ValueError for any other form, including ones `date.fromisoformat` would take)."""
    if len(text) != 10:
        raise ValueError("not YYYY-MM-DD")
    return date.fromisoformat(text)


def check_period(command: PictureCommand) -> Callable[[PolicyView, QueryCommand], None]:
    """The picture's own check after the common ones: a period of real dates, in order, at most ten years."""
    def check(policy: PolicyView, _: QueryCommand) -> None:
        violations = []
        dates: dict[str, date] = {}
        for name in ("period_start", "period_end"):
            text = getattr(command, name)
            try:
                dates[name] = iso_date(text)
            except ValueError:
                violations.append(FieldViolation(name, "is required, as a YYYY-MM-DD date" if not text
                                                 else "must be a YYYY-MM-DD date"))
        if not violations:
            span = (dates["period_end"] - dates["period_start"]).days
            if span < 0:
                violations.append(FieldViolation("period_end", "is before period_start"))
            elif span > MAX_PERIOD_DAYS:
                violations.append(FieldViolation("period_end", "the period may be at most ten years long"))
        if violations:
            raise InvalidRequest(violations)

    return check


class AnalysisService:
    """DescribePerson and GetPartnershipPicture under the active policy snapshot."""

    def __init__(self, *, policy: PolicySource, transport: SummaryTransport, audit: AuditSink,
                 tokeniser: SubjectTokeniser, sealer: IdentifierSealer, clock: Clock, router: Router | None = None,
                 active_key: Callable[[], str] | None = None, default_timeout: float = 5.0,
                 max_timeout: float = 30.0, audit_margin: float = 0.1) -> None:
        self._transport = transport
        self._audit = audit
        self._clock = clock
        self._router = router
        self._active_key = active_key  # the locator's active key id: cohort tokens must be under it to link
        self._admission = Admission(policy=policy, audit=audit, tokeniser=tokeniser, sealer=sealer, clock=clock,
                                    default_timeout=default_timeout, max_timeout=max_timeout,
                                    audit_margin=audit_margin)
        self._features: dict[str, tuple[float, frozenset[int]]] = {}

    async def _summarises(self, agency: str, remaining: float) -> bool:
        """Whether the agency's node lists FEATURE_SUMMARISE in Describe (asked again after FEATURES_FOR)."""
        seen = self._features.get(agency)
        if seen is None or time.monotonic() - seen[0] > FEATURES_FOR:
            features = await self._transport.features(agency, timeout=max(0.001, min(remaining, 1.0)))
            if features:  # a node that did not answer is asked again next time
                self._features[agency] = (time.monotonic(), features)
            seen = (time.monotonic(), features)
        return agency_pb.FEATURE_SUMMARISE in seen[1]

    # -- one person ----------------------------------------------------------------------------------------

    async def describe_person(self, caller: Caller, command: QueryCommand, *, timeout: float | None) -> PersonView:
        """One person's counts and dates from each agency policy and the locator let us ask, every agency's
        part audited before the answer; a refusal is audited and raised (see `Admission.admit`)."""
        request = await self._admission.admit(caller, command, timeout)
        routing = None if self._router is None else await self._router.route(request.command.subject)
        plans = plan_request(request.policy, role=caller.role, purpose=request.command.purpose,
                             agreement=request.command.agreement, categories=request.command.categories,
                             requester=caller.agency, routing=routing)
        answered = await asyncio.gather(*(self._describe_one(request, plan) for plan in plans))
        receipts = await self._audit.append([event for _, event in answered])
        parts = tuple(replace(part, receipt=r) for (part, _), r in zip(answered, receipts, strict=True))
        log.info("person described", request_id=request.request_id,
                 statuses={p.agency: p.status.value for p in parts})
        return person_view(request.request_id, request.policy.version, parts)

    async def _describe_one(self, request: AdmittedRequest, plan: AgencyPlan) -> tuple[AgencyPart, AuditEvent]:
        event = replace(request.base_event, agency=plan.agency, level=plan.level.name,
                        deciding_rules=plan.rules, occurred_at=self._clock.now())
        area = request.policy.area_of(plan.agency)
        if request.policy.areas:  # the answering agency's area, as a query's entries record it
            event = replace(event, details={**event.details, "area": area})
        try:
            part = await self._ask_one(request, plan, area)
        except Exception as exc:  # a fault of ours withholds this agency's part, not the rest
            log.error("internal error while summarising an agency", request_id=request.request_id,
                      agency=plan.agency, error_type=type(exc).__name__)
            part = AgencyPart(plan.agency, area, SummaryStatus.UNAVAILABLE, plan.level,
                              detail="the gateway could not process this agency's answer; nothing from it was "
                                     "disclosed")
        return part, _part_event(event, part)

    async def _ask_one(self, request: AdmittedRequest, plan: AgencyPlan, area: str) -> AgencyPart:
        base = AgencyPart(plan.agency, area, SummaryStatus.NOT_KNOWN, plan.level,
                          detail="not known to this agency in the categories this caller may see")
        if plan.level <= DisclosureLevel.NONE:
            return replace(base, status=SummaryStatus.WITHHELD, level=DisclosureLevel.NONE,
                           detail=plan.refusal or ("policy allows nothing from this agency for this role, purpose "
                                                   "and agreement" if plan.requested
                                                   else "none of this agency's categories was requested"))
        remaining = request.deadline - asyncio.get_running_loop().time()
        if not plan.asked:  # the locator: this node holds no token of the subject and never hears of it
            await asyncio.sleep(max(0.0, min(plan.hold, remaining)))
            return base
        try:
            if remaining <= 0:
                raise AgencyTimedOut("no time left before the caller's deadline")
            if not await self._summarises(plan.agency, remaining):
                return replace(base, status=SummaryStatus.NOT_SUPPORTED,
                               detail="this agency's node does not offer summaries: it was not asked, and no "
                                      "records were fetched instead")
            remaining = request.deadline - asyncio.get_running_loop().time()
            response = await self._transport.call(plan.agency, "Summarise", agency_pb.SummariseRequest(
                request_id=request.request_id, subject=subject_to_proto(request.command.subject),
                categories=list(plan.content), existence_categories=list(plan.existence),
                purpose=request.command.purpose, legal_basis=request.command.legal_basis,
            ), timeout=remaining)
            people = [person_from_proto(p, frozenset(plan.content)) for p in response.people]
        except (AgencyTimedOut, AgencyUnavailable, AgencyRejected, ValueError) as exc:
            log.info("summary unavailable", request_id=request.request_id, agency=plan.agency,
                     error_type=type(exc).__name__)
            return replace(base, status=SummaryStatus.UNAVAILABLE,
                           detail="the agency node could not be reached, did not answer in time, or sent an "
                                  "answer the gateway could not read")
        if not people:
            return base
        contact = contact_from_proto(response.mash_contact, plan.agency)
        if len(people) > 1:
            return replace(base, status=SummaryStatus.AMBIGUOUS, level=DisclosureLevel.EXISTS, contact=contact,
                           detail=f"{len(people)} people match these identifiers, so no counts were released; "
                                  "give an NHS number or contact the agency")
        (person,) = people
        if not person.cells and not (plan.existence and person.known_in_existence_categories):
            return base
        return replace(base, status=SummaryStatus.KNOWN, contact=contact, cells=person.cells,
                       categories=_categories(person.cells, plan.content),
                       detail="" if person.cells else "known to this agency; policy allows no counts: contact them")

    # -- the partnership -----------------------------------------------------------------------------------

    async def partnership_picture(self, caller: Caller, command: PictureCommand, *,
                                  timeout: float | None) -> Picture:
        """Suppressed counts per area over the period, people linked by locator token in memory only; one audit
        entry of what was released; a refusal is audited and raised."""
        query = QueryCommand(request_id=command.request_id, subject=SubjectIdentifiers(), purpose=command.purpose,
                             legal_basis=command.legal_basis, agreement=command.agreement,
                             case_reference=command.case_reference)
        request = await self._admission.admit(caller, query, timeout, extra_check=check_period(command),
                                              about_subject=False)
        start, end = iso_date(command.period_start), iso_date(command.period_end)
        plans = plan_request(request.policy, role=caller.role, purpose=request.command.purpose,
                             agreement=request.command.agreement, categories=(), requester=caller.agency)
        key_id = self._active_key() if self._active_key is not None else ""
        gathered = await asyncio.gather(*(self._cohort(request, plan, start, end, key_id) for plan in plans))
        rows: list[CohortRow] = []
        left_out: list[tuple[str, str]] = []
        counted: list[str] = []
        for plan, (got, why) in zip(plans, gathered, strict=True):
            if why:
                left_out.append((plan.agency, why))
            else:
                counted.append(plan.agency)
                rows += got
        people = link(rows)
        del rows  # the linked rows live no longer than the count
        areas = tuple(sorted(request.policy.areas)) or ("",)
        shown_areas, shown_total = suppress(count(people, areas))
        picture = Picture(request.request_id, request.policy.version, start, end, shown_areas, shown_total,
                          tuple(counted), tuple(left_out))
        released = _released(picture)
        event = replace(request.base_event, occurred_at=self._clock.now(), status="OK", level="",
                        categories=tuple(sorted({c for p in plans if p.agency in counted for c in p.content})),
                        deciding_rules=tuple(r for p in plans if p.agency in counted for r in p.rules),
                        payload_digest=digest(released),
                        details={**request.base_event.details, "analysis": "partnership_picture",
                                 "period": f"{start.isoformat()}/{end.isoformat()}",
                                 "released": json.dumps(released["areas"], separators=(",", ":"), sort_keys=True),
                                 "counted": ",".join(counted), "left_out": ",".join(a for a, _ in left_out)})
        (receipt,) = await self._audit.append([event])
        log.info("partnership picture", request_id=request.request_id, counted=len(counted), left_out=len(left_out))
        return replace(picture, receipt=receipt)

    async def _cohort(self, request: AdmittedRequest, plan: AgencyPlan, start: date, end: date,
                      key_id: str) -> tuple[list[CohortRow], str]:
        """(rows, "") or ([], why the agency is left out)."""
        if plan.refusal:
            return [], plan.refusal
        if not plan.content:
            return [], "policy allows no counts from this agency for this role, purpose and agreement"
        if not key_id:
            return [], "the gateway runs without a locator, so people cannot be linked across agencies"
        try:
            remaining = request.deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AgencyTimedOut("no time left before the caller's deadline")
            if not await self._summarises(plan.agency, remaining):
                return [], "the agency's node does not offer summaries"
            response = await self._transport.call(plan.agency, "SummariseCohort", agency_pb.SummariseCohortRequest(
                request_id=request.request_id, period_start=start.isoformat(), period_end=end.isoformat(),
                categories=list(plan.content), purpose=request.command.purpose,
                legal_basis=request.command.legal_basis,
            ), timeout=request.deadline - asyncio.get_running_loop().time())
            if response.rows and response.key_id != key_id:
                return [], "the agency's node has not enrolled under the active locator key, so its people " \
                           "cannot be linked"
            if not response.key_id:
                return [], "the agency's node has not enrolled in the locator, so its people cannot be linked"
            categories = frozenset(plan.content)
            return [row_from_proto(r, categories, TOKEN_BYTES) for r in response.rows], ""
        except (AgencyTimedOut, AgencyUnavailable, AgencyRejected, ValueError) as exc:
            log.info("cohort unavailable", request_id=request.request_id, agency=plan.agency,
                     error_type=type(exc).__name__)
            return [], "the agency's node could not be reached, did not answer in time, or sent an unreadable answer"


def _categories(cells: Sequence[Cell], levels: Mapping[str, DisclosureLevel]) -> tuple[CategoryCount, ...]:
    by: dict[str, list[Cell]] = {}
    for cell in cells:
        by.setdefault(cell.category, []).append(cell)
    return tuple(
        CategoryCount(category, levels[category], sum(c.records for c in group),
                      min(c.first for c in group if c.first), max(c.last for c in group if c.last))
        for category, group in sorted(by.items())
    )


def _part_event(event: AuditEvent, part: AgencyPart) -> AuditEvent:
    """The audit entry of one agency's part: what was released, as counts."""
    released = {c.category: c.records for c in part.categories}
    document = {"agency": part.agency, "status": part.status.value, "level": part.level.name,
                "categories": [[c.category, c.level.name, c.records, c.first, c.last] for c in part.categories],
                "roles": [sum(c.victim for c in part.cells), sum(c.perpetrator for c in part.cells)],
                "cells": [[c.category, c.area, c.year, c.records] for c in part.cells]}
    return replace(event, status=part.status.value, level=part.level.name,
                   categories=tuple(c.category for c in part.categories), payload_digest=digest(document),
                   reason=part.detail,
                   details={**event.details, "analysis": "describe_person",
                            "released": json.dumps(released, separators=(",", ":"), sort_keys=True)})


def _released(picture: Picture) -> dict[str, Any]:
    return {"areas": {a: {m: row[m].text for m in MEASURES} for a, row in picture.areas.items()},
            "total": {m: picture.total[m].text for m in MEASURES},
            "period": [picture.period_start, picture.period_end], "counted": list(picture.counted)}


def person_view(request_id: str, policy_version: str, parts: tuple[AgencyPart, ...]) -> PersonView:
    """The person's areas, domestic-abuse roles and years, from the cells of the agencies that released counts."""
    cells = [(p.agency, c) for p in parts if p.status is SummaryStatus.KNOWN for c in p.cells]
    areas: dict[str, list[tuple[str, Cell]]] = {}
    years: dict[int, dict[str, int]] = {}
    for agency, cell in cells:
        areas.setdefault(cell.area, []).append((agency, cell))
        by_area = years.setdefault(cell.year, {})
        by_area[cell.area] = by_area.get(cell.area, 0) + cell.records
    area_parts = tuple(
        AreaPart(area, tuple(sorted({a for a, _ in group})), sum(c.records for _, c in group),
                 min(c.first for _, c in group if c.first), max(c.last for _, c in group if c.last))
        for area, group in sorted(areas.items())
    )
    year_parts: list[YearPart] = []
    previous = ""
    for year, by_area in sorted(years.items()):
        main = min(by_area, key=lambda a: (-by_area[a], a))
        year_parts.append(YearPart(year, tuple(sorted(by_area.items())), main,
                                   previous if previous and previous != main else ""))
        previous = main
    return PersonView(request_id, policy_version, parts, area_parts,
                      sum(c.victim for _, c in cells), sum(c.perpetrator for _, c in cells), tuple(year_parts))


def open_analysis(transport: object, *, locator: Any, **kwargs: Any) -> AnalysisService | None:
    """The analysis service over `transport` if it reaches nodes' other methods (the gRPC transport does),
    routed by `locator` (a `Locator`, or None to ask every node and leave the picture unlinked)."""
    if not (callable(getattr(transport, "call", None)) and callable(getattr(transport, "features", None))):
        return None
    active_key = None if locator is None else (lambda: str(locator.keys.active_id))
    return AnalysisService(transport=transport, router=locator, active_key=active_key, **kwargs)  # type: ignore[arg-type]
