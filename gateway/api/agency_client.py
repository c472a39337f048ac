"""The AgencyTransport adapter over grpc.aio: one channel per agency node, deadlines carried through."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import grpc.aio
import structlog

from gateway.api.convert import lookup_result_from_proto, lookup_to_proto
from gateway.errors import AgencyRejected, AgencyTimedOut, AgencyUnavailable
from gateway.generated.mash.gateway.v1 import agency_service_pb2_grpc as agency_grpc
from gateway.pki.authority import node_server_name
from gateway.service.ports import LookupCommand, LookupResult

log = structlog.get_logger("gateway.transport")

_REJECTED = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS,
}


class GrpcAgencyTransport:
    """Calls each agency node's AgencyService over mTLS, checking the node's certificate name."""

    def __init__(self, stubs: Mapping[str, agency_grpc.AgencyServiceAsyncStub], channels: list[grpc.aio.Channel]):
        self._stubs = dict(stubs)
        self._channels = channels

    @classmethod
    def connect(
        cls,
        endpoints: Mapping[str, str],
        credentials: grpc.ChannelCredentials | None,
        *,
        trust_domain: str,
    ) -> GrpcAgencyTransport:
        """One channel per agency, created inside the running event loop.

        With credentials, the node must present a certificate for `<agency>.node.<trust domain>`, so one
        agency's node cannot answer for another.
        """
        stubs: dict[str, agency_grpc.AgencyServiceAsyncStub] = {}
        channels: list[grpc.aio.Channel] = []
        for agency, address in endpoints.items():
            options: list[tuple[str, str | int]] = [
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ]
            if credentials is None:
                channel = grpc.aio.insecure_channel(address, options=options)
            else:
                options.append(("grpc.ssl_target_name_override", node_server_name(agency, trust_domain)))
                channel = grpc.aio.secure_channel(address, credentials, options=options)
            channels.append(channel)
            stubs[agency] = agency_grpc.AgencyServiceStub(channel)
        return cls(stubs, channels)

    async def lookup(self, agency: str, command: LookupCommand, *, timeout: float) -> LookupResult:
        stub = self._stubs.get(agency)
        if stub is None:
            raise AgencyUnavailable(f"no endpoint configured for agency {agency!r}")
        try:
            response = await stub.Lookup(lookup_to_proto(command), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            log.info("agency call failed", agency=agency, request_id=command.request_id, code=code.name)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise AgencyTimedOut(f"{agency} did not answer in time") from exc
            if code in _REJECTED:
                raise AgencyRejected(f"{code.name.lower()}") from exc
            raise AgencyUnavailable(f"{agency} could not be reached ({code.name.lower()})") from exc
        try:
            return lookup_result_from_proto(response, agency, command.categories)
        except ValueError as exc:
            # The reason names the fault, never the record: it reaches the log, not the caller.
            log.warning("agency answer malformed", agency=agency, request_id=command.request_id, reason=str(exc))
            raise AgencyRejected("malformed answer") from exc

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
