"""Who is calling: the SPIFFE identity of the verified client certificate, and the asserted user and role."""

from __future__ import annotations

import grpc.aio
import structlog

from gateway.errors import FieldViolation, RequestRefused
from gateway.pki import identity_from_pem
from gateway.service.validation import INVALID, Caller

USER_METADATA = "x-mash-user"
ROLE_METADATA = "x-mash-role"

log = structlog.get_logger("gateway.identity")


def _metadata(context: grpc.aio.ServicerContext[object, object], key: str) -> list[str]:
    return [value.decode(errors="replace") if isinstance(value, bytes) else value
            for name, value in context.invocation_metadata() or () if name == key]


def peer_certificate(context: grpc.aio.ServicerContext[object, object]) -> bytes | None:
    """The verified client certificate (PEM) of the call, if any."""
    pems = list(context.auth_context().get("x509_pem_cert") or ())
    return bytes(pems[0]) if pems else None


def caller_from_context(
    context: grpc.aio.ServicerContext[object, object],
) -> tuple[Caller, tuple[FieldViolation, ...]]:
    """The caller as the service layer sees it, and what is wrong with its identity metadata.

    An unidentifiable certificate gives an empty identity, which no binding matches, so the request is
    refused and audited like any other refusal. A user or role sent more than once is a violation (a
    proxy may have added one): the caller then carries a marker, never any of the values.
    """
    identity, agency = "", ""
    pem = peer_certificate(context)
    if pem is not None:
        try:
            parsed = identity_from_pem(pem)
            identity, agency = parsed.uri, parsed.agency
        except RequestRefused as exc:
            log.warning("unusable client certificate identity", reason=exc.reason)
    asserted: dict[str, str] = {}
    violations = []
    for key in (USER_METADATA, ROLE_METADATA):
        values = _metadata(context, key)
        if len(values) > 1:
            violations.append(FieldViolation(f"metadata.{key}", "must be sent once"))
            asserted[key] = INVALID
        else:
            asserted[key] = values[0] if values else ""
    return (Caller(identity=identity, agency=agency, user=asserted[USER_METADATA], role=asserted[ROLE_METADATA]),
            tuple(violations))
