"""Reading a peer's SPIFFE identity from its certificate's URI SAN (never from the CN)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

from gateway.errors import RequestRefused


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """A SPIFFE identity such as ``spiffe://mash.local/agency/police/system/case-system``."""

    uri: str
    trust_domain: str
    agency: str  # "" for the gateway itself
    kind: str  # "system", "node" or "gateway"
    name: str  # the system name, or "" for nodes and the gateway


def parse_spiffe_id(uri: str) -> CallerIdentity:
    """Parse a SPIFFE URI of one of the shapes the gateway issues; raise ValueError otherwise."""
    parts = urlsplit(uri)
    if parts.scheme != "spiffe" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("not a SPIFFE URI")
    segments = [s for s in parts.path.split("/") if s]
    match segments:
        case ["gateway"]:
            return CallerIdentity(uri, parts.netloc, "", "gateway", "")
        case ["agency", agency, "node"]:
            return CallerIdentity(uri, parts.netloc, agency, "node", "")
        case ["agency", agency, "system", name]:
            return CallerIdentity(uri, parts.netloc, agency, "system", name)
    raise ValueError("SPIFFE path is not /gateway, /agency/<a>/node or /agency/<a>/system/<name>")


@functools.lru_cache(maxsize=256)
def identity_from_pem(pem: bytes) -> CallerIdentity:
    """The single SPIFFE URI SAN of a PEM certificate; refuse certificates with none or several."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise RequestRefused("client certificate has no usable subject alternative name",
                             code="NO_IDENTITY") from exc
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]
    if len(uris) != 1:
        raise RequestRefused("client certificate must carry exactly one SPIFFE URI SAN", code="NO_IDENTITY")
    try:
        return parse_spiffe_id(uris[0])
    except ValueError as exc:
        raise RequestRefused(f"client certificate identity is not recognised: {exc}",
                             code="NO_IDENTITY") from exc
