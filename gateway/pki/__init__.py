"""Development PKI: a CA and mTLS certificates whose identities are SPIFFE URI SANs."""

from gateway.pki.authority import (
    DEFAULT_TRUST_DOMAIN,
    IssuedCertificate,
    PkiLayout,
    init_pki,
    issue_certificate,
    issue_client,
    issue_node,
    load_ca,
)
from gateway.pki.identity import CallerIdentity, identity_from_pem, parse_spiffe_id

__all__ = [
    "DEFAULT_TRUST_DOMAIN",
    "CallerIdentity",
    "IssuedCertificate",
    "PkiLayout",
    "identity_from_pem",
    "init_pki",
    "issue_certificate",
    "issue_client",
    "issue_node",
    "load_ca",
    "parse_spiffe_id",
]
