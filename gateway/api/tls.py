"""gRPC mTLS credentials from a PKI directory laid out by `mash-gateway pki init`."""

from __future__ import annotations

from pathlib import Path

import grpc

from gateway.pki import PkiLayout


def server_credentials(ca_cert: Path, cert: Path, key: Path) -> grpc.ServerCredentials:
    """Server credentials that require and verify a client certificate issued by the CA."""
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=ca_cert.read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(ca_cert: Path, cert: Path, key: Path) -> grpc.ChannelCredentials:
    """Client credentials presenting our certificate and trusting only the CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_cert.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )


def gateway_server_credentials(layout: PkiLayout) -> grpc.ServerCredentials:
    return server_credentials(layout.ca_cert, *layout.gateway())


def gateway_client_credentials(layout: PkiLayout) -> grpc.ChannelCredentials:
    """What the gateway presents to agency nodes (its certificate carries clientAuth too)."""
    return channel_credentials(layout.ca_cert, *layout.gateway())


def node_server_credentials(layout: PkiLayout, agency: str) -> grpc.ServerCredentials:
    return server_credentials(layout.ca_cert, *layout.node(agency))


def client_credentials(layout: PkiLayout, agency: str, system: str) -> grpc.ChannelCredentials:
    return channel_credentials(layout.ca_cert, *layout.client(agency, system))
