"""The revocation list file: PEM or DER, reread when it changes, the last good list kept when it breaks."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.pki import PkiLayout, init_pki
from gateway.pki.revocation import RevocationList, RevocationListError, load_crl, revoke

CLIENTS = [("police", "case-system"), ("csc", "case-system"), ("health", "gp-system"), ("hub", "policy-admin")]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    layout = PkiLayout(tmp_path_factory.mktemp("pki"))
    init_pki(layout.root, nodes=["health"], clients=[f"spiffe://mash.local/agency/{agency}/system/{system}" for
                                                      agency, system in CLIENTS])
    return layout


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_a_der_crl_is_read_like_a_pem_one(pki: PkiLayout, tmp_path: Path) -> None:
    """The same list written as DER revokes the same certificates."""
    pem = revoke(pki, [pki.client("police", "case-system")[0]])
    der = tmp_path / "crl.der"
    ca = cert(pki.ca_cert)
    der.write_bytes(load_crl(pem.read_bytes(), ca).public_bytes(serialization.Encoding.DER))
    revocations = RevocationList(der, pki.ca_cert)
    assert revocations.is_revoked(cert(pki.client("police", "case-system")[0]))
    assert not revocations.is_revoked(cert(pki.client("csc", "case-system")[0]))


def test_a_changed_crl_is_reread_and_a_broken_one_keeps_the_last_good_list(pki: PkiLayout, tmp_path: Path) -> None:
    """A newly revoked certificate counts after the recheck interval; a CRL file then overwritten with
    garbage changes nothing: nobody revoked before is let back in."""
    clock = Clock()
    path = tmp_path / "crl.pem"
    path.write_bytes(revoke(pki, [pki.client("hub", "policy-admin")[0]]).read_bytes())
    revocations = RevocationList(path, pki.ca_cert, recheck=1.0, clock=clock)
    health = cert(pki.client("health", "gp-system")[0])
    assert not revocations.is_revoked(health)
    path.write_bytes(revoke(pki, [pki.client("health", "gp-system")[0]]).read_bytes())
    assert not revocations.is_revoked(health)  # not looked at again within the interval
    clock.now = 1.0
    assert revocations.is_revoked(health)
    path.write_bytes(b"-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n")
    clock.now = 2.0
    assert revocations.is_revoked(health)
    path.unlink()
    clock.now = 3.0
    assert revocations.is_revoked(health)


def test_an_unparsable_peer_certificate_counts_as_revoked(pki: PkiLayout) -> None:
    """A peer certificate that cannot be read is never waved through."""
    revocations = RevocationList(revoke(pki, [pki.node("health")[0]]), pki.ca_cert)
    assert revocations.is_revoked_pem(b"not a certificate")
    assert revocations.is_revoked_pem(pki.node("health")[0].read_bytes())


def test_revoking_a_certificate_of_another_ca_is_refused(pki: PkiLayout, tmp_path: Path) -> None:
    """`pki revoke` only lists certificates its own CA issued."""
    other = PkiLayout(tmp_path / "other")
    init_pki(other.root, clients=["spiffe://mash.local/agency/police/system/case-system"])
    with pytest.raises(RevocationListError):
        revoke(pki, [other.client("police", "case-system")[0]])
