"""A simulated agency node: a grpc.aio server implementing AgencyService (Lookup, Describe) over one dataset."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agency_stubs.dataset import (
    MATCH_BY_NAME_AND_DATE_OF_BIRTH,
    MATCH_BY_NHS_NUMBER,
    AgencyDataset,
    PersonMatchResult,
)
from agency_stubs.summary import TokensOf, summarise, summarise_cohort
from gateway.analysis.convert import person_to_proto, row_to_proto
from gateway.api.convert import contact_to_proto, kind_to_proto, record_to_proto, subject_from_proto
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import agency_service_pb2_grpc as agency_grpc
from gateway.linkage import normalise_date, normalise_nhs_number, normalise_subject

SERVICE_NAME = "mash.gateway.v1.AgencyService"

_METHODS = {
    MATCH_BY_NHS_NUMBER: agency_pb.MATCH_METHOD_NHS_NUMBER,
    MATCH_BY_NAME_AND_DATE_OF_BIRTH: agency_pb.MATCH_METHOD_NAME_AND_DATE_OF_BIRTH,
}
# Where grpc puts a TLS peer's identities: every SAN, the URI SANs, and (if there is one) its SPIFFE ID.
_SAN_KEYS = ("x509_subject_alternative_name", "peer_uri", "peer_spiffe_id")


def match_to_proto(match: PersonMatchResult) -> agency_pb.PersonMatch:
    return agency_pb.PersonMatch(
        person_ref=match.person_ref, method=_METHODS[match.method],
        records=[record_to_proto(r) for r in match.records],
        known_in_existence_categories=match.known_in_existence_categories,
    )


def peer_spiffe_ids(context: Any) -> frozenset[str]:
    """The SPIFFE URIs in the verified peer certificate of a call (empty without mutual TLS)."""
    auth = context.auth_context() or {}
    ids: set[str] = set()
    for key in _SAN_KEYS:
        for raw in auth.get(key, ()):
            value = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            if value.startswith("spiffe://"):
                ids.add(value)
    return frozenset(ids)


def validate_lookup(dataset: AgencyDataset, request: agency_pb.LookupRequest) -> list[str]:
    """What is wrong with a lookup request, one "field: problem" line each; empty if it may be answered."""
    problems: list[str] = []
    asked = [*request.categories, *request.existence_categories]
    if not asked:
        problems.append("categories: no record category requested")
    for field_name in ("categories", "existence_categories"):
        for category in dataset.unknown_categories(getattr(request, field_name)):
            problems.append(f"{field_name}: {dataset.agency} holds no record category {category!r}")
    subject = subject_from_proto(request.subject)
    if subject.nhs_number.strip():
        try:
            normalise_nhs_number(subject.nhs_number)
        except ValueError as exc:
            problems.append(f"subject.nhs_number: {exc}")
    if subject.date_of_birth.strip():
        try:
            normalise_date(subject.date_of_birth)
        except ValueError as exc:
            problems.append(f"subject.date_of_birth: {exc}")
    if not normalise_subject(subject).usable and not any(p.startswith("subject.") for p in problems):
        problems.append("subject: no usable identifiers; give an NHS number, or given name, family name and "
                        "date of birth")
    return problems


class AgencyNodeServicer(agency_grpc.AgencyServiceServicer):
    """Answers lookups from one agency dataset; only allowed callers (by certificate identity) if configured."""

    def __init__(
        self,
        dataset: AgencyDataset,
        *,
        allowed_callers: Collection[str] | None = None,
        latency: float = 0.0,
        logger: Any = None,
    ) -> None:
        self.dataset = dataset
        self.allowed_callers = frozenset(allowed_callers) if allowed_callers is not None else None
        self.latency = latency
        self._log = logger if logger is not None else structlog.get_logger("agency_stubs.node")
        self.features: tuple[agency_pb.Feature.ValueType, ...] = (  # listed in Describe
            agency_pb.FEATURE_LOOKUP_BATCH, agency_pb.FEATURE_LOOKUP_STREAM, agency_pb.FEATURE_SUMMARISE)
        self.tokens_of: TokensOf | None = None  # set once the node enrols in the locator (cohort rows need it)

    async def _check_caller(self, context: Any, rpc: str, request_id: str) -> None:
        if self.allowed_callers is None:
            return
        ids = peer_spiffe_ids(context)
        if not ids & self.allowed_callers:
            # Certificate identities are not personal data, so the refusal can name who was refused.
            self._log.warning("caller_refused", agency=self.dataset.agency, rpc=rpc, request_id=request_id,
                              caller=sorted(ids))
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"this {self.dataset.agency} node does not answer that caller")

    async def Lookup(self, request: agency_pb.LookupRequest, context: Any) -> agency_pb.LookupResponse:
        await self._check_caller(context, "Lookup", request.request_id)
        problems = self._problems(request)
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problems)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return self._answer(request)

    async def LookupBatch(
        self, request: agency_pb.LookupBatchRequest, context: Any
    ) -> agency_pb.LookupBatchResponse:
        await self._check_caller(context, "LookupBatch", "")
        await self._wait(request)
        return self._answer_batch(request)

    async def LookupStream(  # type: ignore[override]  # answers with context.write, not by yielding
        self, requests: AsyncIterator[agency_pb.LookupStreamRequest], context: Any
    ) -> None:
        """Each batch answered as LookupBatch answers it, under its tag, as soon as it is ready (so not
        necessarily in order)."""
        await self._check_caller(context, "LookupStream", "")
        if agency_pb.FEATURE_LOOKUP_STREAM not in self.features:  # a node configured as one without streams
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this node does not offer LookupStream")
        loop = asyncio.get_running_loop()
        writing = asyncio.Lock()  # one write at a time on a call
        answering: set[asyncio.Task[None]] = set()

        async def answer(message: agency_pb.LookupStreamRequest) -> None:
            await self._wait(message.batch)
            response = agency_pb.LookupStreamResponse(tag=message.tag, batch=self._answer_batch(message.batch))
            async with writing:
                await context.write(response)

        async for message in requests:
            if message is _UNDECODABLE:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a LookupStream request is not a valid message")
            task = loop.create_task(answer(message))  # side by side, as separate calls would be: none waits
            answering.add(task)                       # for another
            task.add_done_callback(answering.discard)
        await asyncio.gather(*answering)

    async def _wait(self, batch: agency_pb.LookupBatchRequest) -> None:
        """The node's simulated latency: one round trip per batch, which is what batching saves."""
        if self.latency > 0:
            await asyncio.sleep(self.latency)

    def _answer_batch(self, request: agency_pb.LookupBatchRequest) -> agency_pb.LookupBatchResponse:
        results = []
        for lookup in request.lookups:
            problems = self._problems(lookup)
            if problems:
                results.append(agency_pb.LookupBatchResult(
                    request_id=lookup.request_id, error_code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                    error_message=problems))
            else:
                results.append(agency_pb.LookupBatchResult(request_id=lookup.request_id,
                                                           response=self._answer(lookup)))
        return agency_pb.LookupBatchResponse(results=results)

    def _problems(self, request: agency_pb.LookupRequest) -> str:
        problems = validate_lookup(self.dataset, request)
        if problems:
            self._log.info("lookup_rejected", agency=self.dataset.agency, request_id=request.request_id,
                           problems=len(problems))
        return "; ".join(problems)

    def _answer(self, request: agency_pb.LookupRequest) -> agency_pb.LookupResponse:
        started = time.perf_counter()
        dataset = self.dataset
        matches = dataset.lookup(subject_from_proto(request.subject), tuple(request.categories),
                                 tuple(request.existence_categories))
        self._log.info(
            "lookup", agency=dataset.agency, request_id=request.request_id, purpose=request.purpose,
            categories=len(request.categories), existence_categories=len(request.existence_categories),
            matches=len(matches), records=sum(len(m.records) for m in matches),
            methods=sorted({m.method for m in matches}),
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return agency_pb.LookupResponse(
            agency=dataset.agency, matches=[match_to_proto(m) for m in matches],
            mash_contact=contact_to_proto(dataset.mash_contact),
        )

    async def Summarise(self, request: agency_pb.SummariseRequest, context: Any) -> agency_pb.SummariseResponse:
        """Counts and dates per category, area and year of each person the subject matches; no records."""
        await self._check_caller(context, "Summarise", request.request_id)
        await self._offered(context, "Summarise")
        lookup = agency_pb.LookupRequest(subject=request.subject, categories=request.categories,
                                         existence_categories=request.existence_categories)
        problems = self._problems(lookup)
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problems)
        dataset = self.dataset
        people = summarise(dataset, subject_from_proto(request.subject), tuple(request.categories),
                           tuple(request.existence_categories))
        self._log.info("summarise", agency=dataset.agency, request_id=request.request_id, purpose=request.purpose,
                       categories=len(request.categories), matches=len(people))
        return agency_pb.SummariseResponse(
            agency=dataset.agency, people=[person_to_proto(p, _METHODS[p.method]) for p in people],
            mash_contact=contact_to_proto(dataset.mash_contact))

    async def SummariseCohort(
        self, request: agency_pb.SummariseCohortRequest, context: Any
    ) -> agency_pb.SummariseCohortResponse:
        """Per-person counts over a period, keyed by enrolled locator tokens; no records, no identifiers."""
        await self._check_caller(context, "SummariseCohort", request.request_id)
        await self._offered(context, "SummariseCohort")
        dataset = self.dataset
        problems = [f"categories: {dataset.agency} holds no record category {c!r}"
                    for c in dataset.unknown_categories(request.categories)]
        try:
            start, end = date.fromisoformat(request.period_start), date.fromisoformat(request.period_end)
        except ValueError:
            problems.append("period_start, period_end: must be YYYY-MM-DD dates")
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        key_id, rows = summarise_cohort(dataset, tuple(request.categories), start, end, self.tokens_of)
        self._log.info("summarise_cohort", agency=dataset.agency, request_id=request.request_id,
                       purpose=request.purpose, categories=len(request.categories), rows=len(rows))
        return agency_pb.SummariseCohortResponse(agency=dataset.agency, key_id=key_id,
                                                 rows=[row_to_proto(r) for r in rows])

    async def _offered(self, context: Any, rpc: str) -> None:
        if agency_pb.FEATURE_SUMMARISE not in self.features:  # a node configured as one without summaries
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"this node does not offer {rpc}")

    async def Describe(
        self, request: agency_pb.DescribeRequest, context: Any
    ) -> agency_pb.DescribeResponse:
        dataset = self.dataset
        await self._check_caller(context, "Describe", "")
        self._log.info("describe", agency=dataset.agency, record_categories=len(dataset.catalogue))
        return agency_pb.DescribeResponse(
            agency=dataset.agency,
            record_categories=[
                agency_pb.RecordCategory(category=s.category, kind=kind_to_proto(s.kind), description=s.description,
                                         field_categories=list(s.field_categories))
                for s in dataset.catalogue
            ],
            mash_contact=contact_to_proto(dataset.mash_contact),
            features=list(self.features),
        )


_UNDECODABLE: Any = object()  # stands in for request bytes that are not a valid message


class _UndecodableRequests(grpc.aio.ServerInterceptor):
    """Parses AgencyService requests leniently, so bytes that are not a valid message are INVALID_ARGUMENT
    (after the caller check), as the gateway answers them, instead of the UNKNOWN grpc gives when a
    deserializer fails."""

    def __init__(self, servicer: AgencyNodeServicer) -> None:
        self._servicer = servicer

    async def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or handler.request_deserializer is None or not method.startswith(f"/{SERVICE_NAME}/"):
            return handler
        parse = handler.request_deserializer

        def lenient(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception:
                return _UNDECODABLE

        if handler.stream_stream is not None:  # LookupStream refuses an undecodable message itself
            return handler._replace(request_deserializer=lenient)
        if handler.unary_unary is None:
            return handler
        answer = handler.unary_unary
        rpc = method.rsplit("/", 1)[-1]
        servicer = self._servicer

        async def checked(request: Any, context: Any) -> Any:
            if request is _UNDECODABLE:
                await servicer._check_caller(context, rpc, "")
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the {rpc} request is not a valid message")
            return await answer(request, context)

        return handler._replace(unary_unary=checked, request_deserializer=lenient)


@dataclass
class RunningNode:
    """A started agency node server."""

    agency: str
    host: str
    port: int
    server: grpc.aio.Server
    servicer: AgencyNodeServicer
    on_change: list[Callable[[AgencyDataset], None]] = field(default_factory=list)  # e.g. locator enrolment

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def replace_dataset(self, dataset: AgencyDataset) -> None:
        """Serve `dataset` from the next call on (tests plant records this way)."""
        if dataset.agency != self.agency:
            raise ValueError(f"a {dataset.agency} dataset cannot be served by the {self.agency} node")
        self.servicer.dataset = dataset
        for hook in self.on_change:
            hook(dataset)

    async def stop(self, grace: float | None = None) -> None:
        await self.server.stop(grace)


async def serve_node(
    dataset: AgencyDataset,
    *,
    credentials: grpc.ServerCredentials | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    allowed_callers: Collection[str] | None = None,
    latency: float = 0.0,
    logger: Any = None,
) -> RunningNode:
    """Start a node for `dataset` on host:port (0 picks a free port); insecure when `credentials` is None.

    With `allowed_callers`, only peers whose certificate carries one of those SPIFFE URIs get answers;
    an insecure node given `allowed_callers` therefore refuses everyone.
    """
    servicer = AgencyNodeServicer(dataset, allowed_callers=allowed_callers, latency=latency, logger=logger)
    server = grpc.aio.server(interceptors=[_UndecodableRequests(servicer)])
    agency_grpc.add_AgencyServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_secure_port(bind, credentials) if credentials is not None else server.add_insecure_port(bind)
    if bound == 0:
        raise OSError(f"could not bind the {dataset.agency} node to {bind}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningNode(dataset.agency, host, bound, server, servicer)


async def serve_world(
    datasets: Mapping[str, AgencyDataset] | Iterable[AgencyDataset],
    *,
    credentials_for: Callable[[str], grpc.ServerCredentials | None] | None = None,
    host: str = "127.0.0.1",
    allowed_callers: Collection[str] | None = None,
    latency: Mapping[str, float] | None = None,
) -> dict[str, RunningNode]:
    """Start one node per dataset on free ports; `credentials_for(agency)` gives each node its credentials."""
    items = list(datasets.values()) if isinstance(datasets, Mapping) else list(datasets)
    nodes: dict[str, RunningNode] = {}
    try:
        for ds in items:
            creds = credentials_for(ds.agency) if credentials_for is not None else None
            nodes[ds.agency] = await serve_node(ds, credentials=creds, host=host, allowed_callers=allowed_callers,
                                                latency=(latency or {}).get(ds.agency, 0.0))
    except BaseException:
        await asyncio.gather(*(n.stop(None) for n in nodes.values()))
        raise
    return nodes
