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
    served: tuple[subprocess.Popen[str], Path, PkiLayout],
) -> None:
    """The operator's lifecycle: start, health SERVING, SIGHUP activates or refuses a policy, SIGTERM stops."""
    process, policies, pki = served
    assert process.stderr is not None
    started = _read_until(process.stderr, "gateway serving")
    assert started["level"] == "info"
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
