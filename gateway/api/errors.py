"""Mapping the gateway's exception tree to gRPC status codes with rich `google.rpc.Status` details."""

from __future__ import annotations

import contextlib
import math
import traceback
from collections.abc import AsyncIterator
from typing import NoReturn

import grpc
import grpc.aio
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.errors import (
    AuditUnavailable,
    GatewayError,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    PolicyError,
    RequestRefused,
)
from gateway.review.model import ReviewAlreadyDecided, ReviewStoreError
from gateway.service.access import clip
from gateway.workflow.referral import InvalidTransition, VersionConflict
from gateway.workflow.store import ReferralStoreError

ERROR_DOMAIN = "mash.gateway"
_MAX_FIELD, _MAX_DESCRIPTION, _MAX_MESSAGE, _MAX_VIOLATIONS = 128, 256, 2048, 20

log = structlog.get_logger("gateway.api")


def _pack(message: error_details_pb2.BadRequest | error_details_pb2.ErrorInfo | error_details_pb2.RetryInfo
          ) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(exc: GatewayError) -> status_pb2.Status:
    """The rich status for one of our errors; its message never carries personal data.

    Status and details travel in trailing metadata, which grpc caps (16 KiB by default): a description that
    quotes a huge bad value would turn the answer into RESOURCE_EXHAUSTED, so every text is clipped.
    """
    if isinstance(exc, InvalidRequest):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=clip(v.field, _MAX_FIELD),
                                                        description=clip(v.description, _MAX_DESCRIPTION))
            for v in exc.violations[:_MAX_VIOLATIONS]
        ]
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        bad = error_details_pb2.BadRequest(field_violations=violations)
        return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT,
                                 message=clip(f"invalid request: {text}", _MAX_MESSAGE), details=[_pack(bad)])
    if isinstance(exc, RequestRefused):
        info = error_details_pb2.ErrorInfo(reason=exc.code, domain=ERROR_DOMAIN,
                                           metadata={"field": clip(exc.field, _MAX_FIELD)} if exc.field else {})
        return status_pb2.Status(code=code_pb2.PERMISSION_DENIED,
                                 message=clip(f"refused: {exc.reason}", _MAX_MESSAGE), details=[_pack(info)])
    if isinstance(exc, LimitExceeded):
        info = error_details_pb2.ErrorInfo(reason=exc.code, domain=ERROR_DOMAIN)
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromMilliseconds(math.ceil(exc.retry_after * 1000))
        return status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=clip(f"limited: {exc.reason}", _MAX_MESSAGE),
                                 details=[_pack(info), _pack(retry)])
    if isinstance(exc, AuditUnavailable):
        info = error_details_pb2.ErrorInfo(reason="AUDIT_UNAVAILABLE", domain=ERROR_DOMAIN)
        return status_pb2.Status(
            code=code_pb2.UNAVAILABLE,
            message="the audit log cannot record this request, so nothing was disclosed; retry later",
            details=[_pack(info)],
        )
    if isinstance(exc, ReferralStoreError | ReviewStoreError):
        # The store's own words stay in the log: they may name tables, files or hosts.
        store = "referral" if isinstance(exc, ReferralStoreError) else "review"
        log.warning("store unavailable", store=store, cause=type(exc.__cause__).__name__ if exc.__cause__ else "")
        info = error_details_pb2.ErrorInfo(reason="STORE_UNAVAILABLE", domain=ERROR_DOMAIN, metadata={"store": store})
        return status_pb2.Status(code=code_pb2.UNAVAILABLE,
                                 message=f"the {store} store cannot be used now, so nothing was disclosed; retry later",
                                 details=[_pack(info)])
    if isinstance(exc, InvalidTransition):
        # Callers switch on the reason and read the state the referral is really in.
        info = error_details_pb2.ErrorInfo(reason="INVALID_TRANSITION", domain=ERROR_DOMAIN,
                                           metadata={"current_state": exc.current.value, "action": exc.action.value})
        return status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=clip(str(exc), _MAX_MESSAGE),
                                 details=[_pack(info)])
    if isinstance(exc, ReviewAlreadyDecided):
        # The loser learns the decision that won, so it need not open the review again to find out.
        winner = exc.winner
        info = error_details_pb2.ErrorInfo(reason="REVIEW_ALREADY_DECIDED", domain=ERROR_DOMAIN, metadata={
            "state": winner.state.value, "decided_role": winner.decided_role,
            "decided_at": winner.decided_at.isoformat() if winner.decided_at else ""})
        return status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=clip(str(exc), _MAX_MESSAGE),
                                 details=[_pack(info)])
    if isinstance(exc, VersionConflict):
        info = error_details_pb2.ErrorInfo(reason="VERSION_CONFLICT", domain=ERROR_DOMAIN)
        return status_pb2.Status(code=code_pb2.ABORTED, message=str(exc), details=[_pack(info)])
    if isinstance(exc, NotFound):
        return status_pb2.Status(code=code_pb2.NOT_FOUND, message=str(exc))
    if isinstance(exc, PolicyError):
        return status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=str(exc))
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


@contextlib.asynccontextmanager
async def errors_as_status(context: grpc.aio.ServicerContext[object, object]) -> AsyncIterator[None]:
    """Inside a servicer: our errors become their status codes, anything unexpected becomes INTERNAL."""
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except GatewayError as exc:
        await abort(context, exc)
    except Exception as exc:
        await abort_internal(context, exc)


async def abort_internal(context: grpc.aio.ServicerContext[object, object], exc: Exception) -> NoReturn:
    """An unexpected fault: log where it happened (its message may quote data, so not that) and say INTERNAL."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    log.error("unexpected error", error_type=type(exc).__name__,
              location=f"{where.filename}:{where.lineno}" if where else "")
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    raise AssertionError("abort returned")  # pragma: no cover - context.abort always raises


async def abort(context: grpc.aio.ServicerContext[object, object], exc: GatewayError) -> NoReturn:
    status = rpc_status.to_status(to_status(exc))
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("abort returned")  # pragma: no cover - context.abort always raises
