"""`mash-gateway dev up` / `dev down` as the README has an operator run them, with the integrator example between."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.partnership import load_plan

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "State:\tZ" not in status.read_text()


def test_dev_up_starts_every_agency_of_the_policy_and_dev_down_stops_them(tmp_path: Path) -> None:
    """One command starts a node per record-holding agency and a gateway; the example query works; down stops all."""
    state = tmp_path / "dev"
    up = cli("dev", "up", "--state-dir", str(state), "--listen", "127.0.0.1:0", "--people", "200")
    run = json.loads((state / "dev.json").read_text()) if (state / "dev.json").exists() else {}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        config = tomllib.loads((state / "gateway.toml").read_text())
        assert list(config["agencies"]) == list(load_plan(ROOT / "policies").record_holders)
        assert "asc" in config["agencies"]  # adult social care, served from its seeded records
        assert "policy_releases" not in config["gateway"], "no release store unless asked for"
        again = cli("dev", "up", "--state-dir", str(state))
        assert again.returncode == 2
        assert "already running" in " ".join(again.stdout.split())

        pki = state / "pki"
        example = subprocess.run(
            [sys.executable, "examples/query.py", "--gateway", run["gateway"], "--ca", str(pki / "ca.pem"),
             "--cert", str(pki / "clients" / "police-case-system.pem"),
             "--key", str(pki / "clients" / "police-case-system.key")],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
        assert example.returncode == 0, example.stderr
        lines = {line.split()[0]: line.split()[1] for line in example.stdout.splitlines()[1:]}
        assert lines == {"police": "MATCH", "health": "MATCH", "csc": "MATCH", "education": "MATCH",
                         "housing": "NO_MATCH", "probation": "NO_MATCH", "asc": "NO_MATCH"}
    finally:
        down = cli("dev", "down", "--state-dir", str(state))
    assert down.returncode == 0
    assert "Stopped" in down.stdout
    assert not [p["name"] for p in run["processes"] if _alive(p["pid"])]
    assert not (state / "dev.json").exists()


def test_dev_down_with_nothing_running_says_so(tmp_path: Path) -> None:
    """Stopping a partnership that is not running is not an error."""
    down = cli("dev", "down", "--state-dir", str(tmp_path))
    assert down.returncode == 0
    assert "Nothing" in down.stdout


def test_dev_up_refuses_a_broken_policy_before_starting_anything(tmp_path: Path) -> None:
    """A policy directory whose vocabulary cannot be read starts no process."""
    up = cli("dev", "up", "--state-dir", str(tmp_path / "dev"), "--policy-dir", str(tmp_path / "missing"))
    assert up.returncode == 2
    assert not (tmp_path / "dev" / "dev.json").exists()


def test_dev_up_refuses_a_release_store_without_its_signers_before_starting_anything(tmp_path: Path) -> None:
    """The gateway checks a release's signatures against the signers file, so the two come together."""
    up = cli("dev", "up", "--state-dir", str(tmp_path / "dev"), "--policy-releases", str(tmp_path / "releases"))
    assert up.returncode == 2
    assert "--policy-signers" in " ".join(up.stdout.split())
    assert not (tmp_path / "dev" / "dev.json").exists()
