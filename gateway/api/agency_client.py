"""The AgencyTransport adapter over grpc.aio: one channel per agency node, deadlines carried through."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
import grpc.aio
import structlog
from cryptography import x509

from gateway.api.convert import lookup_result_from_proto, lookup_to_proto
from gateway.errors import AgencyRejected, AgencyTimedOut, AgencyUnavailable
from gateway.generated.mash.gateway.v1 import agency_service_pb2_grpc as agency_grpc
from gateway.pki.authority import PkiLayout, node_server_name
from gateway.pki.revocation import RevocationList
from gateway.service.ports import LookupCommand, LookupResult

log = structlog.get_logger("gateway.transport")

_REJECTED = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # also: the answer was larger than the gateway accepts
}


DEFAULT_MAX_ANSWER_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class NodeCertificateCheck:
    """Checks each agency node's certificate against the revocation list before the gateway asks it anything.

    grpc.aio shows a client nothing of the server's certificate, so the gateway opens its own TLS connection
    to the node (same address, same CA, same expected name, presenting the gateway's certificate) and reads
    the certificate there. The certificate seen is remembered for `recheck` seconds; the revocation list is
    consulted on every lookup, so a revocation takes effect at once.
    """

    layout: PkiLayout
    revocations: RevocationList
    trust_domain: str
    recheck: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, tuple[float, x509.Certificate]] = field(default_factory=dict)
    _context: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.layout.ca_cert))
            context.load_cert_chain(*(str(p) for p in self.layout.gateway()))
            context.set_alpn_protocols(["h2"])
            self._context = context
        return self._context

    async def _fetch(self, agency: str, address: str, timeout: float) -> x509.Certificate:
        host, _, port = address.rpartition(":")
        _, writer = await asyncio.wait_for(asyncio.open_connection(
            host.strip("[]"), int(port), ssl=self._ssl_context(),
            server_hostname=node_server_name(agency, self.trust_domain)), timeout)
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        finally:
            writer.close()
        return x509.load_der_x509_certificate(der)

    async def check(self, agency: str, address: str, *, timeout: float) -> None:
        """Return if the node's certificate is not revoked; AgencyUnavailable if it is or cannot be read."""
        now = self.clock()
        seen = self._seen.get(agency)
        if seen is None or now - seen[0] >= self.recheck:
            try:
                seen = (now, await self._fetch(agency, address, timeout))
            except (OSError, ssl.SSLError, ValueError, TimeoutError) as exc:
                log.info("agency node certificate could not be checked", agency=agency, error_type=type(exc).__name__)
                raise AgencyUnavailable(f"{agency} could not be reached") from exc
            self._seen[agency] = seen
        if self.revocations.is_revoked(seen[1]):
            log.warning("agency node presents a revoked certificate; not asked", agency=agency,
                        serial=format(seen[1].serial_number, "x"))
            raise AgencyUnavailable(f"{agency} presents a revoked certificate")


class GrpcAgencyTransport:
    """Calls each agency node's AgencyService over mTLS, checking the node's certificate name (and, with a
    revocation list, that the certificate is not revoked)."""

    def __init__(self, stubs: Mapping[str, agency_grpc.AgencyServiceAsyncStub], channels: list[grpc.aio.Channel],
                 *, addresses: Mapping[str, str] | None = None, node_check: NodeCertificateCheck | None = None):
        self._stubs = dict(stubs)
        self._channels = channels
        self._addresses = dict(addresses or {})
        self._node_check = node_check

    @classmethod
    def connect(
        cls,
        endpoints: Mapping[str, str],
        credentials: grpc.ChannelCredentials | None,
        *,
        trust_domain: str,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        node_check: NodeCertificateCheck | None = None,
    ) -> GrpcAgencyTransport:
        """One channel per agency, created inside the running event loop.

        With credentials, the node must present a certificate for `<agency>.node.<trust domain>`, so one
        agency's node cannot answer for another. An answer larger than `max_answer_bytes` is refused by
        grpc before it is decoded, so one node cannot make the gateway hold more than that per call.
        """
        stubs: dict[str, agency_grpc.AgencyServiceAsyncStub] = {}
        channels: list[grpc.aio.Channel] = []
        for agency, address in endpoints.items():
            options: list[tuple[str, str | int]] = [
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.max_receive_message_length", max_answer_bytes),
                ("grpc.max_metadata_size", 16 * 1024),
            ]
            if credentials is None:
                channel = grpc.aio.insecure_channel(address, options=options)
            else:
                options.append(("grpc.ssl_target_name_override", node_server_name(agency, trust_domain)))
                channel = grpc.aio.secure_channel(address, credentials, options=options)
            channels.append(channel)
            stubs[agency] = agency_grpc.AgencyServiceStub(channel)
        return cls(stubs, channels, addresses=endpoints, node_check=node_check)

    async def lookup(self, agency: str, command: LookupCommand, *, timeout: float) -> LookupResult:
        stub = self._stubs.get(agency)
        if stub is None:
            raise AgencyUnavailable(f"no endpoint configured for agency {agency!r}")
        if self._node_check is not None:
            started = time.monotonic()
            await self._node_check.check(agency, self._addresses[agency], timeout=timeout)
            timeout -= time.monotonic() - started
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
        if response is None:
            # grpc hands over None when the answer's bytes are not a LookupResponse (bad wire format,
            # invalid UTF-8): the node sent something, but nothing readable.
            log.warning("agency answer undecodable", agency=agency, request_id=command.request_id)
            raise AgencyRejected("malformed answer")
        try:
            return lookup_result_from_proto(response, agency, command.categories)
        except ValueError as exc:
            # The reason names the fault, never the record: it reaches the log, not the caller.
            log.warning("agency answer malformed", agency=agency, request_id=command.request_id, reason=str(exc))
            raise AgencyRejected("malformed answer") from exc

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
