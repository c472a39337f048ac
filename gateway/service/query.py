"""The hub query use case: admit, plan per agency × category, fan out, audit every answer, then answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import structlog

from gateway.audit.sealing import IdentifierSealer
from gateway.audit.store import PendingEntry
from gateway.domain import AuditEvent, Clock
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser
from gateway.review.model import Review
from gateway.review.store import ReviewStore
from gateway.service.admission import Admission, AdmittedRequest
from gateway.service.fanout import AgencyAnswer, AgencyFanout, AgencyOutcome
from gateway.service.occupancy import Occupancy
from gateway.service.planning import AgencyPlan, PlanMemo, Router
from gateway.service.ports import AgencyTransport, AuditSink, PolicySource
from gateway.service.request_ids import RequestLedger
from gateway.service.reviews import Opened, ReviewDesk, ReviewNotifier
from gateway.service.screening import Screening, ScreenOutcome, ScreenResult
from gateway.service.validation import Caller, QueryCommand
from gateway.tasks import read_outcome

__all__ = ["AgencyOutcome", "Caller", "QueryCommand", "QueryResult", "QueryService", "ScreenOutcome",
           "ScreenResult"]

log = structlog.get_logger("gateway.query")

Prepare = Callable[[float | None], Awaitable[float | None]]
"""Runs before a request is answered afresh, never before a replay: may refuse it, or cut its timeout."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    request_id: str
    policy_version: str
    answers: tuple[AgencyOutcome, ...]
    replayed: bool = False  # a retry answered from the request-id ledger: nothing was disclosed again


class QueryService:
    """Runs hub queries and referral screening under the active policy snapshot."""

    def __init__(
        self,
        *,
        policy: PolicySource,
        transport: AgencyTransport,
        audit: AuditSink,
        tokeniser: SubjectTokeniser,
        sealer: IdentifierSealer,
        pseudonym_keys: Keyring,
        clock: Clock,
        default_timeout: float = 5.0,
        max_timeout: float = 30.0,
        audit_margin: float = 0.1,
        requests: RequestLedger | None = None,
        review_store: ReviewStore | None = None,
        review_notifier: ReviewNotifier | None = None,
        router: Router | None = None,
        occupancy: Occupancy | None = None,
    ) -> None:
        self._audit = audit
        # Requests in progress are counted here; a transport that coalesces lookups under load (the gRPC one)
        # must be given the same counter, or it sees an idle gateway and never waits for company.
        self._occupancy = occupancy or Occupancy()
        self._router = router  # the locator: without it every agency's node is asked
        self._plans = PlanMemo()
        self._requests = requests or RequestLedger()
        self._admission = Admission(
            policy=policy, audit=audit, tokeniser=tokeniser, sealer=sealer, clock=clock,
            default_timeout=default_timeout, max_timeout=max_timeout, audit_margin=audit_margin,
        )
        self._fanout = AgencyFanout(transport=transport, pseudonym_keys=pseudonym_keys, clock=clock)
        self._screening = Screening(admission=self._admission, fanout=self._fanout, audit=audit, router=router)
        # Without a review store nothing is ever held for review: callers get what policy gives without it.
        self.reviews = None if review_store is None else ReviewDesk(
            store=review_store, policy=policy, audit=audit, fanout=self._fanout, sealer=sealer, clock=clock,
            notifier=review_notifier,
        )

    async def query(self, caller: Caller, command: QueryCommand, *, timeout: float | None,
                    prepare: Prepare | None = None) -> QueryResult:
        """Ask every agency at once; every answer is audited before any is returned. A retry of the same
        request id and request within the ledger's window gets the first answer and its receipts again."""
        answered = []

        async def produce(reused: bool) -> QueryResult:
            answered.append(True)
            cut = timeout if prepare is None else await prepare(timeout)
            return await self._query(caller, command, cut, reused)

        result = await self._requests.once("query", caller, command, produce)
        return result if answered else replace(result, replayed=True)

    async def _query(self, caller: Caller, command: QueryCommand, timeout: float | None, reused: bool) -> QueryResult:
        with self._occupancy:
            return await self._answer(caller, command, timeout, reused)

    async def _answer(self, caller: Caller, command: QueryCommand, timeout: float | None, reused: bool) -> QueryResult:
        request, plans = await self._admit(caller, command, timeout, reused)
        # The reviews are stored while the agencies answer: it costs the caller no deadline.
        opening = asyncio.ensure_future(self._open(request, plans))
        answering = asyncio.gather(*(self._prepared(request, plan, opening) for plan in plans))
        try:
            # A review step that fails ends the request at once, not when an agency answers or times out.
            await asyncio.wait((opening, answering), return_when=asyncio.FIRST_EXCEPTION)
            opened = await opening
            prepared = await answering
        finally:
            opening.cancel()  # no-ops once they are done; otherwise the request failed or was cancelled
            if not answering.done():
                # A cancelled gather ends with CancelledError as its exception, which nobody is left to read.
                answering.add_done_callback(read_outcome)
                answering.cancel()
        answers = [answer for answer, _ in prepared]
        # The reviews' "requested" entries go first in the answers' own append: one commit, same order.
        appended = await self._audit.append([*opened.steps, *(entry for _, entry in prepared)])
        receipts = appended[len(opened.steps):]
        if self.reviews is not None:
            self.reviews.announce_soon(opened)  # after the append; the answer does not wait for the notice
        outcomes = tuple(replace(a.outcome, receipt=r) for a, r in zip(answers, receipts, strict=True))
        log.info("query answered", request_id=request.request_id,
                 statuses={o.agency: o.status.value for o in outcomes})
        return QueryResult(request.request_id, request.policy.version, outcomes)

    async def _prepared(self, request: AdmittedRequest, plan: AgencyPlan,
                        opening: asyncio.Future[Opened]) -> tuple[AgencyAnswer, AuditEvent | PendingEntry]:
        """One agency's answer, marked if it is under review, with its audit entry encoded as the answer arrives
        (while slower agencies are still answering), not after the slowest one."""
        answer = await self._fanout.answer(request, plan)
        entry = self._audit.prepare(answer.event)
        # The reviews are often known only after most answers (shielded: this task may be cancelled alone).
        opened = opening.result() if opening.done() else await asyncio.shield(opening)
        if answer.outcome.agency in opened.reviews:  # rare: encoded again with the review's marks
            answer = _pending(answer, opened.reviews)
            entry = self._audit.prepare(answer.event)
        return answer, entry

    async def stream(
        self, caller: Caller, command: QueryCommand, *, timeout: float | None,
        on_replay: Callable[[], None] | None = None, prepare: Prepare | None = None,
    ) -> AsyncIterator[tuple[str, str, AgencyOutcome]]:
        """Yield (request id, policy version, answer) per agency as each answers, each audited first.

        A retry of a stream that ran to its end replays the same answers and receipts (calling `on_replay`
        first); one cut short is answered (and audited) afresh.
        """
        ticket = await self._requests.begin("stream", caller, command)
        if ticket.replay:
            if on_replay is not None:
                on_replay()
            for item in ticket.replay[0]:
                yield item
            return
        sent: list[tuple[str, str, AgencyOutcome]] = []
        try:
            if prepare is not None:
                timeout = await prepare(timeout)
            request, plans = await self._admit(caller, command, timeout, ticket.reused)
            tasks = [asyncio.ensure_future(self._fanout.answer(request, plan)) for plan in plans]
            try:
                held = await self._hold(request, plans)
                for next_done in asyncio.as_completed(tasks):
                    answer = _pending(await next_done, held)
                    (receipt,) = await self._audit.append([answer.event])
                    sent.append((request.request_id, request.policy.version, replace(answer.outcome, receipt=receipt)))
                    yield sent[-1]
            finally:
                for task in tasks:
                    task.cancel()
        except BaseException:
            ticket.failed()
            raise
        ticket.answered(tuple(sent))

    async def screen(self, caller: Caller, command: QueryCommand, *, timeout: float | None,
                     subject_kind: str = "child") -> ScreenOutcome:
        """Is the child (or adult at risk) open to social care, and if so who holds the case? (see `screening`)"""
        return await self._requests.once(  # the kind is part of the request: a child's answer is not an adult's
            f"screen:{subject_kind}", caller, command,
            lambda reused: self._screening.screen(caller, command, timeout=timeout, reused=reused,
                                                  subject_kind=subject_kind))

    async def _admit(
        self, caller: Caller, command: QueryCommand, timeout: float | None, reused: bool
    ) -> tuple[AdmittedRequest, tuple[AgencyPlan, ...]]:
        request = await self._admission.admit(caller, command, timeout, reused=reused)
        routing = None if self._router is None else await self._router.route(request.command.subject)
        plans = self._plans.plan(request.policy, role=caller.role, purpose=request.command.purpose,
                                 agreement=request.command.agreement, categories=request.command.categories,
                                 routing=routing, requester=caller.agency)
        return request, plans

    async def _hold(self, request: AdmittedRequest, plans: tuple[AgencyPlan, ...]) -> dict[str, Review]:
        return {} if self._no_reviews(request) or self.reviews is None else await self.reviews.hold(request, plans)

    async def _open(self, request: AdmittedRequest, plans: tuple[AgencyPlan, ...]) -> Opened:
        if self._no_reviews(request) or self.reviews is None:
            return Opened({})
        return await self.reviews.store_reviews(request, plans)

    @staticmethod
    def _no_reviews(request: AdmittedRequest) -> bool:
        """A preview (MASH staff seeing what a receiving role would get) asks no owner for a review."""
        return bool(request.caller.previewed_by)


def _pending(answer: AgencyAnswer, held: dict[str, Review]) -> AgencyAnswer:
    """Mark an agency's answer as under review: the caller gets the review's id and deadline with it."""
    review = held.get(answer.outcome.agency)
    if review is None:
        return answer
    return AgencyAnswer(
        replace(answer.outcome, review_id=review.review_id, review_deadline=review.deadline),
        replace(answer.event, details={**answer.event.details, "review_id": review.review_id, "step": "answered"}),
    )
