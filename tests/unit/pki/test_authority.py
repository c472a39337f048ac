"""The development PKI issues the right certificates, keeps keys private, and identities come from URI SANs."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from gateway.errors import RequestRefused
from gateway.partnership import load_plan
from gateway.pki import identity_from_pem, init_pki, parse_spiffe_id
from gateway.pki.authority import issue_certificate, make_ca


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory, policy_dir: Path) -> Path:
    """A PKI for the shipped policy's record-holding agencies and bound client systems."""
    directory = tmp_path_factory.mktemp("pki")
    plan = load_plan(policy_dir)
    init_pki(directory, nodes=plan.record_holders, clients=plan.clients)
    return directory


def test_every_private_key_is_readable_only_by_its_owner(pki_dir: Path, policy_dir: Path) -> None:
    """Private keys (CA, gateway, one per node and per bound client) are written with mode 0600."""
    plan = load_plan(policy_dir)
    keys = list(pki_dir.rglob("*.key"))
    assert len(keys) == 1 + 1 + len(plan.record_holders) + len(plan.clients)
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key.name


def test_node_certificates_carry_their_agency_identity_and_server_name(pki_dir: Path) -> None:
    """An agency node's certificate names it by SPIFFE URI and by <agency>.node.<trust domain>."""
    cert = x509.load_pem_x509_certificate((pki_dir / "nodes" / "police.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://mash.local/agency/police/node"]
    assert san.get_values_for_type(x509.DNSName) == ["police.node.mash.local"]


def test_client_identity_is_read_from_the_uri_san_not_the_cn(pki_dir: Path) -> None:
    """The caller identity is the certificate's SPIFFE URI SAN, parsed into agency and system."""
    identity = identity_from_pem((pki_dir / "clients" / "police-case-system.pem").read_bytes())
    assert identity.uri == "spiffe://mash.local/agency/police/system/case-system"
    assert (identity.agency, identity.kind, identity.name) == ("police", "system", "case-system")


def test_a_certificate_without_a_spiffe_san_is_refused() -> None:
    """A certificate with only a DNS SAN has no identity the gateway will accept."""
    ca = make_ca()
    issued = issue_certificate(ca, "https://example.invalid/not-spiffe")
    with pytest.raises(RequestRefused, match="exactly one SPIFFE URI SAN"):
        identity_from_pem(issued.cert_pem)


def test_init_refuses_to_replace_an_existing_ca(pki_dir: Path) -> None:
    """Running pki init twice does not silently replace the CA every certificate chains to."""
    with pytest.raises(FileExistsError):
        init_pki(pki_dir)


@pytest.mark.parametrize(
    "uri",
    ["https://mash.local/gateway", "spiffe:///gateway", "spiffe://mash.local/agency/police",
     "spiffe://mash.local/agency/police/system", "spiffe://mash.local/other?x=1"],
)
def test_malformed_spiffe_ids_are_rejected(uri: str) -> None:
    """Only the identity shapes the gateway issues are accepted."""
    with pytest.raises(ValueError, match="SPIFFE"):
        parse_spiffe_id(uri)


def test_a_server_certificate_without_a_dns_name_is_not_issued() -> None:
    """TLS name checks fall back to the CN when there is no DNS SAN, so the CA refuses to issue one."""
    with pytest.raises(ValueError, match="DNS name"):
        issue_certificate(make_ca(), "spiffe://mash.local/agency/police/node", server=True)
