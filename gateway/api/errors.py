"""Mapping the gateway's exception tree to gRPC status codes with rich `google.rpc.Status` details."""

from __future__ import annotations

from typing import NoReturn

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.errors import AuditUnavailable, GatewayError, InvalidRequest, NotFound, PolicyError, RequestRefused

ERROR_DOMAIN = "mash.gateway"


def _pack(message: error_details_pb2.BadRequest | error_details_pb2.ErrorInfo) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(exc: GatewayError) -> status_pb2.Status:
    """The rich status for one of our errors; its message never carries personal data."""
    if isinstance(exc, InvalidRequest):
        bad = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in exc.violations
        ])
        return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=f"invalid request: {exc}",
                                 details=[_pack(bad)])
    if isinstance(exc, RequestRefused):
        info = error_details_pb2.ErrorInfo(reason=exc.code, domain=ERROR_DOMAIN,
                                           metadata={"field": exc.field} if exc.field else {})
        return status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message=f"refused: {exc.reason}",
                                 details=[_pack(info)])
    if isinstance(exc, AuditUnavailable):
        info = error_details_pb2.ErrorInfo(reason="AUDIT_UNAVAILABLE", domain=ERROR_DOMAIN)
        return status_pb2.Status(
            code=code_pb2.UNAVAILABLE,
            message="the audit log cannot record this request, so nothing was disclosed; retry later",
            details=[_pack(info)],
        )
    if isinstance(exc, NotFound):
        return status_pb2.Status(code=code_pb2.NOT_FOUND, message=str(exc))
    if isinstance(exc, PolicyError):
        return status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=str(exc))
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


async def abort(context: grpc.aio.ServicerContext[object, object], exc: GatewayError) -> NoReturn:
    status = rpc_status.to_status(to_status(exc))
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("abort returned")  # pragma: no cover - context.abort always raises
