"""`open_dependencies` against a real SQLite audit store: whatever start-up opened is closed on every outcome."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from gateway.app import open_dependencies
from gateway.errors import PolicyError
from gateway.keys import KeyPaths, init_keys
from gateway.pki import init_pki
from gateway.settings import Settings


def _store_threads() -> set[threading.Thread]:
    """The live threads of SQLite audit stores (each open store runs a writer thread)."""
    return {t for t in threading.enumerate() if t.name.startswith("audit-sqlite")}


def _settings(tmp_path: Path, policy_dir: Path, pki_dir: Path) -> Settings:
    state = tmp_path / "state"
    init_keys(KeyPaths(state / "keys"))
    return Settings(state_dir=state, policy_dir=policy_dir, pki_dir=pki_dir, policy_watch_interval=1.0)


async def test_unreadable_agency_credentials_close_the_audit_store(tmp_path: Path, policy_dir: Path) -> None:
    """Start-up that fails at the agency credentials closes the audit log and store it had opened."""
    before = _store_threads()
    settings = _settings(tmp_path, policy_dir, tmp_path / "no-pki")
    with pytest.raises(FileNotFoundError):
        await open_dependencies(settings)
    assert _store_threads() == before
    assert (settings.state_dir / "audit.sqlite").exists()  # the store was opened before the failure


async def test_a_broken_policy_closes_the_audit_store(tmp_path: Path, policy_dir: Path) -> None:
    """Start-up that fails on a policy that does not load closes the audit store it had opened."""
    broken = tmp_path / "policies"
    shutil.copytree(policy_dir, broken)
    (broken / "bindings.yaml").write_text("bindings: [")
    before = _store_threads()
    settings = _settings(tmp_path, broken, tmp_path / "no-pki")
    with pytest.raises(PolicyError):
        await open_dependencies(settings)
    assert _store_threads() == before
    assert (settings.state_dir / "audit.sqlite").exists()


async def test_closing_opened_dependencies_closes_the_audit_store(tmp_path: Path, policy_dir: Path) -> None:
    """Dependencies that opened successfully close their audit store (and everything else) on aclose."""
    before = _store_threads()
    pki = tmp_path / "pki"
    init_pki(pki)
    deps = await open_dependencies(_settings(tmp_path, policy_dir, pki))
    assert _store_threads() != before
    await deps.aclose()
    assert _store_threads() == before
