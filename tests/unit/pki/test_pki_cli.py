"""`mash-gateway pki init|issue-node|issue-client` issue what the policy declares, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from gateway.cli.main import main
from gateway.partnership import load_plan
from gateway.pki import PkiLayout
from tests.joining_agency import YOS_CLIENT, add_youth_offending_service

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory, policy_dir: Path) -> Path:
    """The shipped policy with a youth offending service added."""
    return add_youth_offending_service(policy_dir, tmp_path_factory.mktemp("policy") / "policies")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory, joined: Path) -> PkiLayout:
    """A PKI made by `pki init` for the shipped policy with the youth offending service added."""
    layout = PkiLayout(tmp_path_factory.mktemp("pki") / "pki")
    assert main(["pki", "init", str(layout.root), "--policy-dir", str(joined)]) == 0
    return layout


def _uris(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def test_init_issues_a_node_per_record_holder_and_a_client_per_binding(pki: PkiLayout) -> None:
    """The joining agency gets its node and client certificates without any change to code; the hub gets no node."""
    shipped = load_plan(ROOT / "policies")
    nodes = sorted(p.stem for p in (pki.root / "nodes").glob("*.pem"))
    assert nodes == sorted([*shipped.record_holders, "yos"])
    assert "asc" in nodes
    assert "hub" not in nodes
    assert _uris(pki.client("yos", "case-system")[0]) == [YOS_CLIENT]
    # one per shipped binding, and the joining agency's
    assert len(list((pki.root / "clients").glob("*.pem"))) == len(shipped.clients) + 1


def test_issue_node_issues_for_a_declared_agency(pki: PkiLayout, joined: Path) -> None:
    """`pki issue-node yos` writes the node certificate with the agency's node identity and server name."""
    pki.node("yos")[0].unlink()
    assert main(["pki", "issue-node", "yos", "--pki-dir", str(pki.root), "--policy-dir", str(joined)]) == 0
    cert = x509.load_pem_x509_certificate(pki.node("yos")[0].read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["yos.node.mash.local"]
    assert _uris(pki.node("yos")[0]) == ["spiffe://mash.local/agency/yos/node"]


@pytest.mark.parametrize(
    ("agency", "message"),
    [("fire", "declares no agency 'fire'"), ("../ca", "declares no agency"), ("hub", "holds no records")],
)
def test_issue_node_refuses_what_the_policy_does_not_declare_as_a_record_holder(
    pki: PkiLayout, joined: Path, capsys: pytest.CaptureFixture[str], agency: str, message: str
) -> None:
    """An undeclared name (or a path) and the hub get no node certificate and exit 2."""
    before = sorted(pki.root.rglob("*"))
    assert main(["pki", "issue-node", agency, "--pki-dir", str(pki.root), "--policy-dir", str(joined)]) == 2
    assert message in " ".join(capsys.readouterr().out.split())
    assert sorted(pki.root.rglob("*")) == before


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        ("spiffe://mash.local/agency/fire/system/cad", "declares no agency 'fire'"),
        ("spiffe://mash.local/agency/yos/system/other", "not bound in bindings.yaml"),
        ("spiffe://mash.local/agency/yos/node", "not a client identity"),
        ("https://example.org/x", "not a client identity"),
    ],
)
def test_issue_client_refuses_identities_the_bindings_do_not_name(
    pki: PkiLayout, joined: Path, capsys: pytest.CaptureFixture[str], identity: str, message: str
) -> None:
    """Only an identity bound in bindings.yaml (so able to assert a role) gets a client certificate."""
    before = sorted(pki.root.rglob("*"))
    assert main(["pki", "issue-client", identity, "--pki-dir", str(pki.root), "--policy-dir", str(joined)]) == 2
    assert message in " ".join(capsys.readouterr().out.split())
    assert sorted(pki.root.rglob("*")) == before


def test_issuing_without_a_ca_says_to_run_init_first(
    tmp_path: Path, joined: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No CA in --pki-dir: exit 2 and point at `pki init`, writing nothing."""
    assert main(["pki", "issue-node", "yos", "--pki-dir", str(tmp_path / "none"), "--policy-dir", str(joined)]) == 2
    assert "pki init" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()


def test_init_refuses_a_broken_policy_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a readable policy there is nothing to issue for: exit 2, no CA."""
    assert main(["pki", "init", str(tmp_path / "pki"), "--policy-dir", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "pki").exists()
