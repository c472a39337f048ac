"""Who is calling: the SPIFFE identity of the verified client certificate, and the asserted user and role."""

from __future__ import annotations

import grpc.aio
import structlog

from gateway.errors import RequestRefused
from gateway.pki import identity_from_pem
from gateway.service.validation import Caller

USER_METADATA = "x-mash-user"
ROLE_METADATA = "x-mash-role"

log = structlog.get_logger("gateway.identity")


def _metadata(context: grpc.aio.ServicerContext[object, object], key: str) -> str:
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            value = item[1]
            return value.decode() if isinstance(value, bytes) else value
    return ""


def caller_from_context(context: grpc.aio.ServicerContext[object, object]) -> Caller:
    """The caller as the service layer sees it. An unidentifiable certificate gives an empty identity,
    which no binding matches, so the request is refused and audited like any other refusal."""
    identity, agency = "", ""
    pems = list(context.auth_context().get("x509_pem_cert") or ())
    if pems:
        try:
            parsed = identity_from_pem(bytes(pems[0]))
            identity, agency = parsed.uri, parsed.agency
        except RequestRefused as exc:
            log.warning("unusable client certificate identity", reason=exc.reason)
    return Caller(identity=identity, agency=agency, user=_metadata(context, USER_METADATA),
                  role=_metadata(context, ROLE_METADATA))

