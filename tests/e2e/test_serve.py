"""`mash-gateway serve` as an operator runs it: JSON logs, health, SIGHUP policy reload, graceful SIGTERM."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.tls import client_credentials
from gateway.cli.main import main as cli
from gateway.keys import KeyPaths, init_keys
from gateway.pki import PkiLayout, init_pki

ROOT = Path(__file__).resolve().parents[2]


def _read_until(stream: IO[str], wanted: str, timeout: float = 30) -> dict[str, Any]:
    """The first JSON log line whose event is `wanted` (other lines are skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise AssertionError(f"the gateway exited before logging {wanted!r}")
        doc = json.loads(line)
        if doc.get("event") == wanted:
            return doc  # type: ignore[no-any-return]
    raise AssertionError(f"no {wanted!r} log line within {timeout} s")


@pytest.fixture
def served(tmp_path: Path, policy_dir: Path) -> Iterator[tuple[subprocess.Popen[str], Path, PkiLayout]]:
    policies = tmp_path / "policies"
    shutil.copytree(policy_dir, policies)
    pki = init_pki(tmp_path / "pki", clients=["spiffe://mash.local/agency/police/system/case-system"])
    init_keys(KeyPaths(tmp_path / "state" / "keys"))
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\nstate_dir = "state"\npolicy_dir = "policies"\npki_dir = "pki"\nlisten = "127.0.0.1:0"\n'
        "policy_watch_interval = 0\ncheckpoint_interval = 3600\n"
        '[agencies]\npolice = "127.0.0.1:9"\n'
    )
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(config)],
                               cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        yield process, policies, pki
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_serve_logs_json_answers_health_reloads_on_sighup_and_stops_on_sigterm(
    served: tuple[subprocess.Popen[str], Path, PkiLayout], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The operator's lifecycle: start, health SERVING, SIGHUP activates or refuses a policy, SIGTERM stops,
    signing a final checkpoint, so `audit verify` finds every entry signed (exit 0, not 3)."""
    process, policies, pki = served
    assert process.stderr is not None
    started = _read_until(process.stderr, "gateway serving")
    assert started["level"] == "info"
    assert started["event_loop"] == "uvloop"  # the default ("auto") where uvloop is installed
    port = started["port"]

    channel = grpc.secure_channel(f"127.0.0.1:{port}", client_credentials(pki, "police", "case-system"),
                                  options=[("grpc.ssl_target_name_override", "gateway.mash.local")])
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    police = policies / "agencies" / "police.csv"
    police.write_text(police.read_text() + "# reviewed\n")
    process.send_signal(signal.SIGHUP)
    activated = _read_until(process.stderr, "policy activated")
    assert activated["trigger"] == "SIGHUP"
    assert activated["policy_version"] != started["policy_version"]

    police.write_text(police.read_text() + "p, role:nobody, agency:police\n")
    process.send_signal(signal.SIGHUP)
    refused = _read_until(process.stderr, "policy refused; the last good policy keeps serving")
    assert "police.csv" in refused["findings"]

    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    assert cli(["audit", "verify", "--state-dir", str(tmp_path / "state")]) == 0, capsys.readouterr().out


def _prepare(tmp_path: Path, policy_dir: Path, listen: str) -> tuple[PkiLayout, Path]:
    """A fresh state directory, PKI, keys and settings file for one `serve` run; returns the PKI and the file."""
    shutil.copytree(policy_dir, tmp_path / "policies")
    pki = init_pki(tmp_path / "pki")
    init_keys(KeyPaths(tmp_path / "state" / "keys"))
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\nstate_dir = "state"\npolicy_dir = "policies"\npki_dir = "pki"\n'
        f'listen = "{listen}"\npolicy_watch_interval = 0\ncheckpoint_interval = 3600\n'
    )
    return pki, config


def test_serve_with_unreadable_gateway_credentials_exits_2_without_a_traceback(
    tmp_path: Path, policy_dir: Path,
) -> None:
    """A missing key file is a one-line start-up error naming the file, exit code 2, not a Python traceback."""
    pki, config = _prepare(tmp_path, policy_dir, "127.0.0.1:0")
    gateway_key = pki.gateway()[1]
    gateway_key.unlink()
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    failed = [json.loads(line) for line in done.stderr.splitlines() if "gateway failed to start" in line]
    assert failed
    assert failed[0]["path"].endswith(gateway_key.name)


def test_serve_on_a_port_in_use_exits_2_and_closes_what_it_opened(tmp_path: Path, policy_dir: Path) -> None:
    """When the listening port is taken, serve stops with exit code 2 and the audit log is closed cleanly."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        _, config = _prepare(tmp_path, policy_dir, f"127.0.0.1:{taken.getsockname()[1]}")
        done = subprocess.run([sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(config)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    # A clean close leaves no SQLite write-ahead log behind.
    assert not (tmp_path / "state" / "audit.sqlite-wal").exists()
