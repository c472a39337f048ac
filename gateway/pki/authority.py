"""Making a development certificate authority and the certificates of a whole partnership."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.pki.identity import parse_spiffe_id

DEFAULT_TRUST_DOMAIN = "mash.local"

_VALIDITY = dt.timedelta(days=397)


@dataclass(frozen=True, slots=True)
class PkiLayout:
    """Where `init_pki` puts things inside its directory.

    ``ca.pem``/``ca.key``, ``gateway.pem``/``gateway.key``, ``nodes/<agency>.pem|.key`` and
    ``clients/<agency>-<system>.pem|.key``; private keys are mode 0600.
    """

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    def gateway(self) -> tuple[Path, Path]:
        return self.root / "gateway.pem", self.root / "gateway.key"

    def node(self, agency: str) -> tuple[Path, Path]:
        return self.root / "nodes" / f"{agency}.pem", self.root / "nodes" / f"{agency}.key"

    def client(self, agency: str, system: str) -> tuple[Path, Path]:
        stem = f"{agency}-{system}"
        return self.root / "clients" / f"{stem}.pem", self.root / "clients" / f"{stem}.key"

    def client_for(self, spiffe_id: str) -> tuple[Path, Path]:
        """Where the certificate of a client identity (``…/agency/<a>/system/<name>``) goes."""
        agency, system = client_parts(spiffe_id)
        return self.client(agency, system)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate and key as PEM bytes."""

    cert_pem: bytes
    key_pem: bytes


def node_server_name(agency: str, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    """The DNS name an agency node's certificate carries; the gateway checks it on every call."""
    return f"{agency}.node.{trust_domain}"


def gateway_server_name(trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    return f"gateway.{trust_domain}"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(common_name: str = "MASH Gateway development CA") -> IssuedCertificate:
    """A fresh self-signed CA (ECDSA P-256) for development and tests."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def load_ca(layout: PkiLayout) -> IssuedCertificate:
    return IssuedCertificate(layout.ca_cert.read_bytes(), layout.ca_key.read_bytes())


def issue_certificate(
    ca: IssuedCertificate,
    spiffe_id: str,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    server: bool = False,
    client: bool = True,
) -> IssuedCertificate:
    """Issue a leaf certificate whose identity is the URI SAN `spiffe_id`.

    A server certificate must name its DNS names: TLS name checks would otherwise fall back to the CN.
    """
    if server and not dns_names:
        raise ValueError("a server certificate needs at least one DNS name")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
    sans += [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        # The CN is informational only: identity is the URI SAN.
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spiffe_id.rsplit("/", 1)[-1])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return IssuedCertificate(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def save(issued: IssuedCertificate, cert_path: Path, key_path: Path) -> None:
    """Write a certificate (0644) and its private key (0600)."""
    _write_public(cert_path, issued.cert_pem)
    _write_private(key_path, issued.key_pem)


def client_parts(spiffe_id: str) -> tuple[str, str]:
    """(agency, system) of a client identity; ValueError for any other shape."""
    identity = parse_spiffe_id(spiffe_id)
    if identity.kind != "system":
        raise ValueError("a client identity has the path /agency/<agency>/system/<name>")
    return identity.agency, identity.name


def issue_node(layout: PkiLayout, agency: str, *, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> tuple[Path, Path]:
    """Issue (or replace) an agency node's certificate from the CA in `layout`: it serves AgencyService and,
    as a client, calls the gateway's LocatorService."""
    issued = issue_certificate(
        load_ca(layout), f"spiffe://{trust_domain}/agency/{agency}/node",
        dns_names=[node_server_name(agency, trust_domain)], server=True, client=True,
    )
    paths = layout.node(agency)
    save(issued, *paths)
    return paths


def issue_client(layout: PkiLayout, spiffe_id: str) -> tuple[Path, Path]:
    """Issue (or replace) a client system's certificate whose identity is `spiffe_id`."""
    paths = layout.client_for(spiffe_id)
    save(issue_certificate(load_ca(layout), spiffe_id), *paths)
    return paths


def init_pki(
    directory: Path,
    *,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    nodes: Iterable[str] = (),
    clients: Iterable[str] = (),
    overwrite: bool = False,
) -> PkiLayout:
    """Create a CA, the gateway's certificate, one per agency node in `nodes`, one per client identity."""
    layout = PkiLayout(directory)
    if layout.ca_cert.exists() and not overwrite:
        raise FileExistsError(f"{layout.ca_cert} already exists; refusing to replace a CA")
    clients = tuple(clients)
    for spiffe_id in clients:
        client_parts(spiffe_id)  # refuse a malformed identity before writing anything
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    save(ca, layout.ca_cert, layout.ca_key)
    save(
        issue_certificate(
            ca, f"spiffe://{trust_domain}/gateway",
            dns_names=[gateway_server_name(trust_domain), "localhost"], ip_addresses=["127.0.0.1"],
            server=True, client=True,
        ),
        *layout.gateway(),
    )
    for agency in nodes:
        issue_node(layout, agency, trust_domain=trust_domain)
    for spiffe_id in clients:
        issue_client(layout, spiffe_id)
    return layout
