"""Access to the auditor and policy-administration services: certificate bindings, refusals and reads audited."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from gateway.domain import AuditEvent, AuditKind, Clock
from gateway.errors import RequestRefused
from gateway.service.ports import AuditSink, PolicySource
from gateway.service.validation import INVALID, USER_PATTERN, Caller


class AccessGuard:
    """Lets a call through only if its certificate is bound to a role; every refusal is an audit entry."""

    def __init__(self, policy: PolicySource, audit: AuditSink, clock: Clock) -> None:
        self._policy = policy
        self._audit = audit
        self._clock = clock

    async def require(self, caller: Caller, role: str, rpc: str) -> None:
        """The certificate must be bound to `role` (e.g. auditor, policy_admin)."""
        if role not in self._policy.current.roles_for(caller.identity):
            await self._refuse(caller, rpc, f"certificate {caller.identity or '(no identity)'} is not bound to "
                                            f"the {role} role", required=role)

    async def record_access(self, caller: Caller, rpc: str, *, subject_tokens: Collection[str] = (),
                            details: Mapping[str, str] | None = None) -> None:
        """Write who read the log, how, and (for subject access) about whom, before anything is returned."""
        await self._audit.append([AuditEvent(
            kind=AuditKind.AUDIT_ACCESS, occurred_at=self._clock.now(), caller=caller.identity,
            user=self._user(caller), status="OK", subject_tokens=tuple(sorted(subject_tokens)),
            policy_version=self._policy.current.version, details={"rpc": rpc, **(details or {})},
        )])

    async def require_any(self, caller: Caller, rpc: str) -> None:
        """The certificate must be bound to at least one role."""
        if not self._policy.current.roles_for(caller.identity):
            await self._refuse(caller, rpc, f"certificate {caller.identity or '(no identity)'} is not bound to "
                                            "any role", required="")

    async def _refuse(self, caller: Caller, rpc: str, reason: str, *, required: str) -> None:
        refused = RequestRefused(reason, code="ROLE_NOT_BOUND")
        await self._audit.append([AuditEvent(
            kind=AuditKind.REFUSAL, occurred_at=self._clock.now(), caller=caller.identity, user=self._user(caller),
            status="PERMISSION_DENIED", reason=f"{refused.code}: {reason}",
            policy_version=self._policy.current.version,
            details={"rpc": rpc, **({"required_role": required} if required else {})},
        )])
        raise refused

    @staticmethod
    def _user(caller: Caller) -> str:
        return caller.user if not caller.user or USER_PATTERN.fullmatch(caller.user) else INVALID
