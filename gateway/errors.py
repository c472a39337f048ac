"""The gateway's exception tree. The cores raise these; only `gateway.api` maps them to gRPC status codes.

    GatewayError
    ├── InvalidRequest        → INVALID_ARGUMENT, with field violations
    ├── RequestRefused        → PERMISSION_DENIED, with a reason
    ├── LimitExceeded         → RESOURCE_EXHAUSTED, with a reason and a retry delay
    ├── NotFound              → NOT_FOUND
    ├── AuditUnavailable      → UNAVAILABLE (nothing is disclosed)
    ├── AgencyError           → per-agency status, never a failed call
    │   ├── AgencyUnavailable
    │   ├── AgencyTimedOut
    │   └── AgencyRejected
    └── PolicyError           → a policy snapshot could not be loaded or activated
"""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request: the field path and what is wrong with it."""

    field: str
    description: str


class InvalidRequest(GatewayError):
    """The request is malformed or names something unknown; nothing was disclosed."""

    def __init__(self, violations: list[FieldViolation] | tuple[FieldViolation, ...]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))


class RequestRefused(GatewayError):
    """The request is well formed but not allowed; nothing was disclosed."""

    def __init__(self, reason: str, *, code: str = "REFUSED", field: str = "") -> None:
        self.reason = reason
        self.code = code
        self.field = field
        super().__init__(reason)


class LimitExceeded(GatewayError):
    """The caller is over its rate or concurrency limit; nothing was done, it may retry after `retry_after`."""

    def __init__(self, reason: str, *, code: str, retry_after: float) -> None:
        self.reason = reason
        self.code = code
        self.retry_after = retry_after
        super().__init__(reason)


class NotFound(GatewayError):
    """The thing asked for does not exist."""


class AuditUnavailable(GatewayError):
    """The audit store could not durably take an entry, so nothing may be disclosed."""


class AgencyError(GatewayError):
    """An agency node did not give a usable answer."""


class AgencyUnavailable(AgencyError):
    """The agency node could not be reached."""


class AgencyTimedOut(AgencyError):
    """The agency node did not answer within the deadline."""


class AgencyRejected(AgencyError):
    """The agency node refused or could not process the lookup."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found in a policy directory, located as file:line."""

    file: str
    line: int
    message: str
    severity: str = "error"  # "error" blocks activation; "warning" does not

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class PolicyError(GatewayError):
    """A policy snapshot could not be loaded, validated or activated."""

    def __init__(self, findings: list[Finding] | tuple[Finding, ...], summary: str = "") -> None:
        self.findings = tuple(findings)
        text = summary or f"{len(self.findings)} problem(s) in the policy"
        if self.findings:
            text += ": " + "; ".join(str(f) for f in self.findings[:5])
        super().__init__(text)
