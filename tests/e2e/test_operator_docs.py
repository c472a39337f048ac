"""The README's operator steps and settings work exactly as written, from a fresh copy of the repository's policy."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _readme_toml() -> str:
    (block,) = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    return block


def _cli(cwd: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("source", ["README.md", "docs/gateway.example.toml"])
def test_the_documented_settings_start_a_gateway_after_the_documented_set_up(tmp_path: Path, source: str) -> None:
    """pki init, keys init and the settings copied as the README says give a gateway that starts cleanly."""
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    _cli(tmp_path, "pki", "init", "state/pki")
    _cli(tmp_path, "keys", "init", "--state-dir", "state")
    text = _readme_toml() if source == "README.md" else (ROOT / source).read_text()
    (tmp_path / "gateway.toml").write_text(text)
    serve = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--config", "gateway.toml", "--listen", "127.0.0.1:0"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )
    events = []
    try:
        assert serve.stderr is not None
        for line in serve.stderr:
            events.append(json.loads(line))
            if events[-1]["event"] in ("gateway serving", "gateway failed to start"):
                break
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
    assert events[-1]["event"] == "gateway serving", events
    assert not [e for e in events if e.get("level") in ("warning", "error")]
    assert (tmp_path / "state" / "audit.sqlite").exists()
