"""Certificate revocation: a CRL file (PEM or DER), verified against the CA and reread when it changes.

gRPC Python's TLS credentials take no CRL, so the gateway checks certificates itself: a client's on every
call (from the verified peer certificate), an agency node's before the gateway asks it anything.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import GatewayError
from gateway.pki.authority import PkiLayout

log = structlog.get_logger("gateway.revocation")

CRL_FILE = "crl.pem"
"""Where `mash-gateway pki revoke` keeps the development CA's revocation list, inside the PKI directory."""


class RevocationListError(GatewayError):
    """The revocation list cannot be read, is not signed by the CA, or names another issuer."""


def load_crl(data: bytes, ca: x509.Certificate) -> x509.CertificateRevocationList:
    """Parse a PEM or DER CRL and check it is the CA's and signed by it."""
    try:
        crl = (x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----BEGIN")
               else x509.load_der_x509_crl(data))
    except ValueError as exc:
        raise RevocationListError("the revocation list is neither a PEM nor a DER CRL") from exc
    if crl.issuer != ca.subject:
        raise RevocationListError("the revocation list was issued by another CA")
    public_key = ca.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(public_key):
        raise RevocationListError("the revocation list's signature does not verify with the CA key")
    return crl


class RevocationList:
    """The CA's revocation list as found in a file, checked again at most every `recheck` seconds.

    A file that stops being readable or valid is logged and the last good list stays in force: an
    operator's mistake must neither stop the gateway nor silently un-revoke anyone.
    """

    def __init__(self, path: Path, ca_cert: Path, *, recheck: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        self._recheck = recheck
        self._clock = clock
        self._checked_at = clock()
        self._stamp = self._file_stamp()
        self._revoked = self._read()  # a bad list at start-up is an error, not a warning

    @property
    def path(self) -> Path:
        return self._path

    def _file_stamp(self) -> tuple[int, int, int]:
        info = os.stat(self._path)
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _read(self) -> frozenset[int]:
        try:
            data = self._path.read_bytes()
        except OSError as exc:
            raise RevocationListError(f"cannot read the revocation list: {exc.strerror}") from exc
        return frozenset(entry.serial_number for entry in load_crl(data, self._ca))

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked_at < self._recheck:
            return
        self._checked_at = now
        try:
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._revoked, self._stamp = self._read(), stamp
                log.info("revocation list reloaded", revoked=len(self._revoked))
        except (OSError, RevocationListError) as exc:
            log.error("revocation list unusable; the last good one stays in force", reason=str(exc))

    def is_revoked(self, certificate: x509.Certificate) -> bool:
        """Whether the CA revoked `certificate` (certificates of other issuers are not the CA's to revoke)."""
        self._refresh()
        return certificate.issuer == self._ca.subject and certificate.serial_number in self._revoked

    def is_revoked_pem(self, pem: bytes) -> bool:
        """`is_revoked` for a PEM certificate; an unparsable certificate counts as revoked."""
        try:
            return self.is_revoked(x509.load_pem_x509_certificate(pem))
        except ValueError:
            return True


def revoke(layout: PkiLayout, certificates: Iterable[Path], *, days: int = 7) -> Path:
    """Add `certificates` to the development CA's CRL (`crl.pem` in the PKI directory), signed anew."""
    ca_cert = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(layout.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise RevocationListError("the CA key is not an EC key")
    path = layout.root / CRL_FILE
    now = dt.datetime.now(dt.UTC)
    entries: dict[int, x509.RevokedCertificate] = {}
    if path.exists():
        entries = {e.serial_number: e for e in load_crl(path.read_bytes(), ca_cert)}
    for cert_path in certificates:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            raise RevocationListError(f"{cert_path.name} was not issued by this CA") from None
        entries.setdefault(cert.serial_number, x509.RevokedCertificateBuilder()
                           .serial_number(cert.serial_number).revocation_date(now).build())
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now).next_update(now + dt.timedelta(days=days)))
    for entry in entries.values():
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca_key, hashes.SHA256())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path)  # readers see the old list or the new one, never half of one
    return path
