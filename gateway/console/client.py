"""The console's only way to the gateway: its gRPC API over mutual TLS with the console's own certificate.

Every call carries the signed-in person's user id and role (`x-mash-user`, `x-mash-role`), so the gateway
checks the role against the certificate's bindings and audits each read under that person.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio

from gateway.api.identity import ROLE_METADATA, USER_METADATA
from gateway.generated.mash.gateway.v1 import (
    audit_service_pb2_grpc,
    hub_service_pb2_grpc,
    policy_service_pb2_grpc,
    referral_service_pb2_grpc,
    review_service_pb2_grpc,
)

CALL_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class GatewayTarget:
    address: str
    ca: Path
    cert: Path
    key: Path


class GatewayClient:
    """One channel to the gateway for the whole console, and a stub per service."""

    def __init__(self, target: GatewayTarget) -> None:
        """Reads the credentials now (so a missing file stops the console at start); connects on `open`."""
        self._target = target
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=target.ca.read_bytes(), private_key=target.key.read_bytes(),
            certificate_chain=target.cert.read_bytes())

    def open(self) -> None:
        """Opens the channel; call it inside the event loop that serves the console."""
        self._channel = grpc.aio.secure_channel(self._target.address, self._credentials)
        self.audit = audit_service_pb2_grpc.AuditServiceStub(self._channel)
        self.hub = hub_service_pb2_grpc.HubServiceStub(self._channel)
        self.policy = policy_service_pb2_grpc.PolicyServiceStub(self._channel)
        self.referrals = referral_service_pb2_grpc.ReferralServiceStub(self._channel)
        self.reviews = review_service_pb2_grpc.ReviewServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()


def metadata(user: str, role: str) -> tuple[tuple[str, str], ...]:
    """The identity metadata of one person's call."""
    return ((USER_METADATA, user), (ROLE_METADATA, role))
