"""Admitting a hub request: check it, pin it to one policy snapshot, and audit a refusal before raising it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date

import structlog

from gateway.audit.sealing import IdentifierSealer
from gateway.domain import AuditEvent, AuditKind, Clock
from gateway.errors import FieldViolation, InvalidRequest, RequestRefused
from gateway.linkage import SubjectTokeniser
from gateway.service.access import clip
from gateway.service.ports import AuditSink, PolicySource, PolicyView
from gateway.service.validation import (
    INVALID,
    Caller,
    QueryCommand,
    auditable,
    check_caller,
    check_request,
    ensure_request_id,
    new_request_id,
    sealable,
    within_limits,
)

log = structlog.get_logger("gateway.admission")

MAX_REASON = 2000
"""Longest refusal reason written to the permanent log; violations are capped upstream, this is the backstop."""


def requester_area(policy: PolicyView, requester: str) -> dict[str, str]:
    """The audit details naming the requesting agency's area, where the partnership declares areas ("" for a
    requester serving the whole partnership); none otherwise, so a partnership without areas logs as before."""
    return {"requester_area": policy.area_of(requester)} if policy.areas else {}


ExtraCheck = Callable[[PolicyView, QueryCommand], None]
"""A use case's own check after the common ones; raises InvalidRequest or RequestRefused."""


class BaseEvent:
    """The audit event every answer to a request starts from, made when it is first needed (once, whichever
    thread asks first). A query's lookups thus leave before its subject's identifiers are tokenised and
    sealed, work that is only needed for the audit entries and is done while the agencies answer."""

    __slots__ = ("_event", "_lock", "_make")

    def __init__(self, make: Callable[[], AuditEvent] | AuditEvent) -> None:
        self._event: AuditEvent | None = make if isinstance(make, AuditEvent) else None
        self._make = None if isinstance(make, AuditEvent) else make
        self._lock = threading.Lock()  # a large answer is redacted (and its entry made) on a worker thread

    def get(self) -> AuditEvent:
        event = self._event
        if event is None:
            with self._lock:
                if self._event is None:
                    assert self._make is not None
                    self._event, self._make = self._make(), None
                event = self._event
        return event


@dataclass(frozen=True, slots=True)
class AdmittedRequest:
    """A validated request pinned to one policy snapshot, with the audit entry every answer starts from."""

    caller: Caller
    command: QueryCommand
    policy: PolicyView
    today: date
    deadline: float  # event-loop time by which every agency call must be done
    base: BaseEvent = field(repr=False)

    @property
    def base_event(self) -> AuditEvent:
        return self.base.get()

    @property
    def request_id(self) -> str:
        return self.command.request_id

    @property
    def inside_mash(self) -> bool:
        return self.policy.roles[self.caller.role].inside_mash


class Admission:
    """Validates requests. The subject's identifiers are tokenised and sealed (bounded work, on the event loop)
    only when the request's audit event is first needed (see `BaseEvent`)."""

    def __init__(
        self,
        *,
        policy: PolicySource,
        audit: AuditSink,
        tokeniser: SubjectTokeniser,
        sealer: IdentifierSealer,
        clock: Clock,
        default_timeout: float,
        max_timeout: float,
        audit_margin: float,
    ) -> None:
        self._policy = policy
        self._audit = audit
        self._tokeniser = tokeniser
        self._sealer = sealer
        self._clock = clock
        self._default_timeout = default_timeout
        self._max_timeout = max_timeout
        self._audit_margin = audit_margin

    async def admit(
        self, caller: Caller, command: QueryCommand, timeout: float | None, *, extra_check: ExtraCheck | None = None,
        reused: bool = False, about_subject: bool = True,
    ) -> AdmittedRequest:
        """The admitted request; on refusal a refusal entry is written first, then the error is raised.

        `reused` says the request id was already used for a different request, which is refused. A request
        not `about_subject` (an aggregate) is checked without a subject.
        """
        loop = asyncio.get_running_loop()
        budget = self._default_timeout if timeout is None else min(timeout, self._max_timeout)
        deadline = loop.time() + max(0.0, budget - self._audit_margin)
        policy = self._policy.current
        now = self._clock.now()
        try:
            request_id, bad_request_id = ensure_request_id(command.request_id), None
        except InvalidRequest as exc:
            request_id, bad_request_id = new_request_id(), exc
        command = replace(command, request_id=request_id)

        def base_event() -> AuditEvent:
            # Bounded work (identifiers have length limits): cheaper on the loop than a hand-off to a thread.
            tokens, sealed = self._identify(command, request_id)
            safe = auditable(policy, caller, command)
            return AuditEvent(
                kind=AuditKind.DISCLOSURE, occurred_at=now, request_id=request_id, caller=caller.identity,
                user=safe["user"], role=safe["role"], purpose=safe["purpose"], legal_basis=safe["legal_basis"],
                agreement=safe["agreement"], case_reference=safe["case_reference"], subject_tokens=tokens,
                sealed_identifiers=sealed, policy_version=policy.version,
                details={**({"request_id": INVALID} if bad_request_id else {"request_id": "reused"} if reused
                            else {}),
                         **requester_area(policy, caller.agency),
                         **({"preview_by_role": caller.previewed_by} if caller.previewed_by else {})},
            )

        base = BaseEvent(base_event)
        try:
            if bad_request_id is not None:
                raise bad_request_id
            if reused:
                raise InvalidRequest([FieldViolation(
                    "request_id", "was already used for a different request; use a new request id")])
            check_caller(policy, caller)
            check_request(policy, caller, command, now.date(), about_subject=about_subject)
            if extra_check is not None:
                extra_check(policy, command)
        except InvalidRequest as exc:
            await self._refuse(base.get(), "INVALID_ARGUMENT", str(exc))
            raise
        except RequestRefused as exc:
            await self._refuse(base.get(), "PERMISSION_DENIED", f"{exc.code}: {exc.reason}")
            raise
        return AdmittedRequest(caller, command, policy, now.date(), deadline, base)

    def _identify(self, command: QueryCommand, request_id: str) -> tuple[tuple[str, ...], str]:
        """Subject tokens from the identifiers within their size limits, and the sealed identifiers if all are."""
        subject = command.subject
        tokens = self._tokeniser.tokens(within_limits(subject))
        sealed = (self._sealer.seal(subject, aad=request_id.encode())
                  if not subject.is_empty() and sealable(subject) else "")
        return tokens, sealed

    async def _refuse(self, base: AuditEvent, status: str, reason: str) -> None:
        refusal = replace(base, kind=AuditKind.REFUSAL, status=status, reason=clip(reason, MAX_REASON))
        await self._audit.append([refusal])
        log.info("request refused", request_id=base.request_id, status=status)
