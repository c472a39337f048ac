"""Access to the gateway's services: role bindings, and refusals and reads written to the audit log, bounded."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Collection, Mapping
from typing import NoReturn, TypeVar

from gateway.domain import AuditEvent, AuditKind, Clock
from gateway.errors import InvalidRequest, LimitExceeded, RequestRefused
from gateway.service.ports import AuditSink, PolicySource
from gateway.service.validation import INVALID, USER_PATTERN, Caller

MAX_REASON = 256
"""Longest refusal reason kept; a refusal must not let a caller grow the permanent log with a large request."""
MAX_DETAIL = 128
_MAX_FIELDS = 8
T = TypeVar("T")


def clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters (the cut marked)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def refusal_reason(exc: InvalidRequest | RequestRefused) -> str:
    """What a refusal entry says: the code and reason, or only the names of the bad fields (their
    descriptions may quote the values sent), clipped to a fixed size."""
    if isinstance(exc, RequestRefused):
        return clip(f"{exc.code}: {exc.reason}", MAX_REASON)
    names = list(dict.fromkeys(clip(v.field, 64) for v in exc.violations))
    more = f" and {len(names) - _MAX_FIELDS} more" if len(names) > _MAX_FIELDS else ""
    return clip("invalid request: " + ", ".join(names[:_MAX_FIELDS]) + more, MAX_REASON)


def audited_user(caller: Caller) -> str:
    """The asserted user id as an audit entry may hold it: only in its strict format, else a marker."""
    return caller.user if not caller.user or USER_PATTERN.fullmatch(caller.user) else INVALID


class Refusals:
    """Writes one bounded refusal entry before a refusal reaches the caller, so no refusal goes unaudited."""

    def __init__(self, policy: PolicySource, audit: AuditSink, clock: Clock) -> None:
        self._policy = policy
        self._audit = audit
        self._clock = clock

    async def refuse(self, caller: Caller, rpc: str, exc: InvalidRequest | RequestRefused,
                     details: Mapping[str, str] | None = None) -> NoReturn:
        """Audit the refusal of `rpc`, then raise `exc`."""
        status = "INVALID_ARGUMENT" if isinstance(exc, InvalidRequest) else "PERMISSION_DENIED"
        await self._audit.append([AuditEvent(
            kind=AuditKind.REFUSAL, occurred_at=self._clock.now(), caller=caller.identity,
            user=audited_user(caller), status=status, reason=refusal_reason(exc),
            policy_version=self._policy.current.version,
            details={"rpc": clip(rpc, MAX_DETAIL),
                     **{clip(k, MAX_DETAIL): clip(v, MAX_DETAIL) for k, v in (details or {}).items()}},
        )])
        raise exc

    async def limited(self, caller: Caller, rpc: str, exc: LimitExceeded, *, audit: bool, refused: int) -> NoReturn:
        """Refuse a call over a limit. Only the first refusal per caller, limit and window is audited, counting
        the refusals since the last entry, so a flood of calls cannot flood the permanent log."""
        if audit:
            await self._audit.append([AuditEvent(
                kind=AuditKind.REFUSAL, occurred_at=self._clock.now(), caller=caller.identity,
                user=audited_user(caller), status="RESOURCE_EXHAUSTED", reason=clip(f"{exc.code}: {exc.reason}",
                                                                                    MAX_REASON),
                policy_version=self._policy.current.version,
                details={"rpc": clip(rpc, MAX_DETAIL), "refused_since_last_entry": str(refused)},
            )])
        raise exc

    @contextlib.asynccontextmanager
    async def audited(self, caller: Caller, rpc: str) -> AsyncIterator[None]:
        """Inside: a request found invalid is audited as a refusal before the error propagates."""
        try:
            yield
        except InvalidRequest as exc:
            await self.refuse(caller, rpc, exc)

    async def checked(self, caller: Caller, rpc: str, step: Awaitable[T]) -> T:
        """The result of `step`; if it finds the request invalid, that refusal is audited first."""
        async with self.audited(caller, rpc):
            return await step
        raise AssertionError("unreachable")  # pragma: no cover - audited() re-raises every error


class AccessGuard:
    """Lets a call through only if its certificate is bound to a role; every refusal is an audit entry."""

    def __init__(self, policy: PolicySource, audit: AuditSink, clock: Clock) -> None:
        self._policy = policy
        self._audit = audit
        self._clock = clock
        self.refusals = Refusals(policy, audit, clock)

    async def require(self, caller: Caller, role: str, rpc: str) -> None:
        """The certificate must be bound to `role` (e.g. auditor, policy_admin), and the caller must act in it:
        a certificate bound to several roles (a console, say) lends this one only to a caller asserting it, and
        a caller asserting another role is refused even where it is the certificate's only role."""
        bound = self._policy.current.roles_for(caller.identity)
        if role not in bound:
            await self.refusals.refuse(
                caller, rpc, RequestRefused(f"the certificate is not bound to the {role} role", code="ROLE_NOT_BOUND"),
                {"required_role": role})
        if caller.role != role and (caller.role or len(bound) > 1):
            await self.refusals.refuse(
                caller, rpc,
                RequestRefused(f"this call needs the {role} role to be asserted", code="ROLE_NOT_ASSERTED"),
                {"required_role": role})

    async def require_any(self, caller: Caller, rpc: str) -> None:
        """The certificate must be bound to at least one role."""
        if not self._policy.current.roles_for(caller.identity):
            await self.refusals.refuse(
                caller, rpc, RequestRefused("the certificate is not bound to any role", code="ROLE_NOT_BOUND"))

    async def record_access(self, caller: Caller, rpc: str, *, subject_tokens: Collection[str] = (),
                            details: Mapping[str, str] | None = None) -> int:
        """Write who read the log, how, and (for subject access) about whom, before anything is returned;
        the index of that entry, so an answer can be the log as it stood when asked."""
        receipts = await self._audit.append([AuditEvent(
            kind=AuditKind.AUDIT_ACCESS, occurred_at=self._clock.now(), caller=caller.identity,
            user=audited_user(caller),
            role=caller.role if caller.role in self._policy.current.roles_for(caller.identity) else "",
            status="OK", subject_tokens=tuple(sorted(subject_tokens)),
            policy_version=self._policy.current.version, details={"rpc": rpc, **(details or {})},
        )])
        return receipts[0].index
