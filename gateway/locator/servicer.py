"""LocatorService servicer: only agency nodes call it, each about its own enrolment; refusals are audited."""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.api.calls import Call
from gateway.api.errors import ERROR_DOMAIN
from gateway.domain import AuditEvent, AuditKind, Clock
from gateway.errors import FieldViolation, InvalidRequest, LimitExceeded, RequestRefused
from gateway.generated.mash.gateway.v1 import locator_service_pb2 as locator_pb
from gateway.locator.core import Locator, NotEnrolling, UnknownLocatorKey
from gateway.locator.store import LocatorStoreError
from gateway.pki.identity import parse_spiffe_id
from gateway.service.access import Refusals
from gateway.service.ports import AuditSink, PolicySource

_COMPLETENESS = {
    locator_pb.COMPLETENESS_UNSPECIFIED: None,
    locator_pb.COMPLETENESS_COMPLETE: True,
    locator_pb.COMPLETENESS_INCOMPLETE: False,
}


def _status(code: int, message: str, reason: str, metadata: dict[str, str]) -> status_pb2.Status:
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata))
    return status_pb2.Status(code=code, message=message, details=[packed])


class LocatorServicer:
    """Translates LocatorService calls for the locator; the node is the one its certificate names."""

    def __init__(self, locator: Locator, refusals: Refusals, policy: PolicySource, audit: AuditSink, clock: Clock,
                 *, trust_domain: str) -> None:
        self._locator = locator
        self._refusals = refusals
        self._policy = policy
        self._audit = audit
        self._clock = clock
        self._trust_domain = trust_domain

    async def _node(self, call: Call) -> str:
        """The calling node's routing name (its agency), or an audited PERMISSION_DENIED."""
        try:
            identity = parse_spiffe_id(call.caller.identity)
        except ValueError:
            identity = None
        agency = self._policy.current.agencies.get(identity.agency) if identity else None
        if (identity is None or identity.kind != "node" or identity.trust_domain != self._trust_domain
                or agency is None or not agency.holds_records):
            await self._refusals.refuse(call.caller, call.rpc, RequestRefused(
                "only a record-holding agency's node certificate may use the locator", code="NOT_AN_AGENCY_NODE"))
        assert identity is not None
        return identity.agency

    async def _fail(self, call: Call, code: int, grpc_code: grpc.StatusCode, message: str, reason: str,
                    metadata: dict[str, str]) -> NoReturn:
        await self._audit.append([AuditEvent(
            kind=AuditKind.LOCATOR, occurred_at=self._clock.now(), caller=call.caller.identity,
            status=grpc_code.name, reason=f"{reason}: {message}"[:256],
            policy_version=self._policy.current.version, details={"rpc": call.rpc},
        )])
        status = rpc_status.to_status(_status(code, message, reason, metadata))
        await call.context.abort(status.code, status.details, status.trailing_metadata)
        raise AssertionError("abort returned")  # pragma: no cover

    async def Evaluate(self, request: locator_pb.EvaluateRequest, call: Call) -> locator_pb.EvaluateResponse:
        node = await self._node(call)
        try:
            async with self._refusals.audited(call.caller, call.rpc):
                result = await self._locator.evaluate(node, call.caller.identity, list(request.blinded_elements))
        except LimitExceeded as exc:
            refused = self._locator.limiter.should_audit(node)
            await self._refusals.limited(call.caller, call.rpc, exc, audit=refused is not None, refused=refused or 0)
        return locator_pb.EvaluateResponse(key_id=result.key_id, evaluated_elements=list(result.elements),
                                           evaluations_remaining=result.remaining)

    async def Enrol(self, request: locator_pb.EnrolRequest, call: Call) -> locator_pb.EnrolResponse:
        node = await self._node(call)
        complete = _COMPLETENESS.get(request.completeness)
        try:
            async with self._refusals.audited(call.caller, call.rpc):
                if request.completeness not in _COMPLETENESS:
                    raise InvalidRequest([FieldViolation("completeness",
                                                         "must be UNSPECIFIED, COMPLETE or INCOMPLETE")])
                change = await self._locator.enrol(node, call.caller.identity, request.key_id, list(request.tokens),
                                                   complete)
        except UnknownLocatorKey as exc:
            await self._fail(call, code_pb2.FAILED_PRECONDITION, grpc.StatusCode.FAILED_PRECONDITION, str(exc),
                             "UNKNOWN_LOCATOR_KEY", {"active_key_id": exc.active_key_id})
        except NotEnrolling as exc:
            await self._fail(call, code_pb2.FAILED_PRECONDITION, grpc.StatusCode.FAILED_PRECONDITION, str(exc),
                             "NODE_NOT_ENROLLING", {"feature": "FEATURE_LOCATOR_ENROLMENT"})
        except LocatorStoreError:
            await self._unavailable(call)
        return locator_pb.EnrolResponse(added=change.changed, enrolled=change.total, complete=change.complete)

    async def Withdraw(self, request: locator_pb.WithdrawRequest, call: Call) -> locator_pb.WithdrawResponse:
        node = await self._node(call)
        try:
            async with self._refusals.audited(call.caller, call.rpc):
                change = await self._locator.withdraw(node, call.caller.identity, request.key_id,
                                                      list(request.tokens), request.all)
        except UnknownLocatorKey as exc:
            await self._fail(call, code_pb2.FAILED_PRECONDITION, grpc.StatusCode.FAILED_PRECONDITION, str(exc),
                             "UNKNOWN_LOCATOR_KEY", {"active_key_id": exc.active_key_id})
        except LocatorStoreError:
            await self._unavailable(call)
        return locator_pb.WithdrawResponse(removed=change.changed, enrolled=change.total, complete=change.complete)

    async def GetEnrolmentState(self, request: locator_pb.GetEnrolmentStateRequest,
                                call: Call) -> locator_pb.GetEnrolmentStateResponse:
        node = await self._node(call)
        try:
            enrolment, remaining = await self._locator.state(node)
        except LocatorStoreError:
            await self._unavailable(call)
        return locator_pb.GetEnrolmentStateResponse(
            node=node, active_key_id=self._locator.keys.active_id, evaluations_remaining=remaining,
            enrolments=[locator_pb.KeyEnrolment(key_id=k.key_id, tokens=k.tokens, complete=k.complete,
                                                updated_at=k.updated_at) for k in enrolment.keys])

    async def _unavailable(self, call: Call) -> NoReturn:
        status = rpc_status.to_status(_status(code_pb2.UNAVAILABLE, "the locator index cannot be used now; retry later",
                                              "STORE_UNAVAILABLE", {"store": "locator"}))
        await call.context.abort(status.code, status.details, status.trailing_metadata)
        raise AssertionError("abort returned")  # pragma: no cover
