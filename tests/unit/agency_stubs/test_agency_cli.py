"""The `python -m agency_stubs` entry point's argument handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from agency_stubs.__main__ import main, node_credentials


def test_an_agency_the_policy_does_not_declare_is_refused(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--agency must name an agency of the policy directory; anything else exits 2 and says why."""
    assert main(["--agency", "fire", "--policy-dir", str(policy_dir)]) == 2
    assert "declares no agency 'fire'" in capsys.readouterr().err


def test_an_agency_that_holds_no_records_is_refused(policy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The hub is declared but holds no records, so no node can be run for it."""
    assert main(["--agency", "hub", "--policy-dir", str(policy_dir)]) == 2
    assert "holds no records" in capsys.readouterr().err


def test_tls_dir_without_a_ca_fails_before_serving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A TLS directory without ca.pem exits with status 2 and says what is missing."""
    assert main(["--agency", "police", "--tls-dir", str(tmp_path)]) == 2
    assert "ca.pem" in capsys.readouterr().err


def test_node_credentials_read_the_pki_layout(tmp_path: Path) -> None:
    """Credentials come from ca.pem and nodes/<agency>.pem/.key as `pki init` writes them."""
    from gateway.pki import init_pki

    init_pki(tmp_path, nodes=["housing"])
    assert node_credentials(tmp_path, "housing") is not None
    with pytest.raises(FileNotFoundError):
        node_credentials(tmp_path / "missing", "housing")
