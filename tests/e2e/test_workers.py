"""`mash-gateway serve --workers N`: several gateway processes on one port sharing one PostgreSQL audit log."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import grpc
import grpc.aio
import psycopg
import pytest

from gateway.api.tls import client_credentials
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import hub_service_pb2_grpc as hub_grpc
from gateway.keys import KeyPaths, init_keys
from gateway.partnership import load_plan
from gateway.pki import PkiLayout, init_pki
from gateway.pki.authority import gateway_server_name

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
METADATA = (("x-mash-user", "worker-test"), ("x-mash-role", "mash_researcher_police"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(tmp: Path, policy_dir: Path, port: int, stores: str = "", metrics: int = 0,
              agencies: dict[str, str] | None = None) -> Path:
    config = tmp / "gateway.toml"
    config.write_text("\n".join([
        "[gateway]", f'state_dir = "{tmp / "state"}"', f'policy_dir = "{policy_dir}"', f'pki_dir = "{tmp / "pki"}"',
        f'listen = "127.0.0.1:{port}"', "policy_watch_interval = 0", "checkpoint_interval = 3600",
        *(f'{store} = "{stores}"' for store in ("audit_store", "review_store", "referral_store") if stores),
        *([f'metrics_listen = "127.0.0.1:{metrics}"'] if metrics else []),
        "[agencies]", *(f'"{name}" = "{address}"' for name, address in (agencies or {}).items()), "",
    ]))
    return config


def test_more_than_one_worker_on_sqlite_stores_is_refused_naming_the_stores(tmp_path: Path, policy_dir: Path) -> None:
    """SQLite has one writer process: `--workers 2` on the default stores exits 2 with a clear reason."""
    config = _settings(tmp_path, policy_dir, _free_port())
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(config),
                           "--workers", "2"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    error = next(json.loads(line) for line in done.stderr.splitlines() if "failed to start" in line)["error"]
    assert "audit_store" in error
    assert "not PostgreSQL" in error


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"workers_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
        try:
            yield name
        finally:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


class _Lines:
    """Collects a process's stderr lines on a thread so neither pipe can fill and block it."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Lock()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)

    def events(self, name: str) -> list[dict[str, object]]:
        with self._changed:
            lines = list(self.lines)
        found = []
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == name:
                found.append(doc)
        return found

    def wait_for(self, name: str, count: int, timeout: float = 60.0) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while len(found := self.events(name)) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(found) >= count, f"{len(found)} of {count} {name!r} lines; log:\n{''.join(self.lines)[-3000:]}"
        return found


async def _ask(port: int, pki: PkiLayout, nhs_numbers: list[str], channels: int) -> list[hub_pb.QueryResponse]:
    """Queries over `channels` separate connections at once (each its own subchannel, so the kernel may hand
    each to a different worker)."""
    credentials = client_credentials(pki, "police", "case-system")
    opened = [grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=[
        ("grpc.ssl_target_name_override", gateway_server_name()), ("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)]
    try:
        calls = [hub_grpc.HubServiceStub(opened[i % channels]).Query(
            hub_pb.QueryRequest(subject=common_pb.SubjectIdentifiers(nhs_number=nhs), purpose="safeguarding_screening",
                                legal_basis="dpa_2018_sch1_para18", agreement="mash-isa-2026",
                                case_reference="WORKERS-1"), metadata=METADATA, timeout=30)
            for i, nhs in enumerate(nhs_numbers)]
        return list(await asyncio.gather(*calls))
    finally:
        for channel in opened:
            await channel.close()


def _served_queries(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mash_gateway_rpc_requests_total{") and 'Query"' in line)


@pytest.mark.postgres
def test_three_workers_on_one_port_answer_together_into_one_gap_free_audit_log_that_verifies(
    tmp_path: Path, policy_dir: Path, schema: str, shared_world: object
) -> None:
    """Three workers share a port and a PostgreSQL log: several of them answer, every answer's receipt is the
    stored entry at its index, indices run 0..n-1 without gap or duplicate, and `audit verify` passes after a
    graceful stop (each worker signs a final checkpoint over the shared log)."""
    plan = load_plan(policy_dir)
    pki = init_pki(tmp_path / "pki", nodes=plan.record_holders, clients=plan.clients)
    init_keys(KeyPaths(tmp_path / "state" / "keys"))
    nodes = subprocess.Popen([sys.executable, "-m", "bench.node_host", "--pki", str(tmp_path / "pki"), "--agencies",
                              ",".join(plan.record_holders)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    supervisor: subprocess.Popen[str] | None = None
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        assert nodes.stdout is not None
        endpoints = json.loads(nodes.stdout.readline())
        port, metrics = _free_port(), _free_port()
        config = _settings(tmp_path, policy_dir, port, url, metrics, endpoints)
        supervisor = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(config),
                                       "--workers", "3"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
        assert supervisor.stderr is not None
        log = _Lines(supervisor.stderr)
        serving = log.wait_for("gateway serving", 3)
        assert {doc["port"] for doc in serving} == {port}
        assert sorted(doc["worker"] for doc in serving) == [0, 1, 2]  # type: ignore[type-var]

        people = [p.nhs_number for p in list(shared_world.people)[:90]]  # type: ignore[attr-defined]
        responses = asyncio.run(_ask(port, pki, people, channels=30))
        served = [_served_queries(metrics + i) for i in range(3)]
        assert sum(served) == len(people)
        assert sum(count > 0 for count in served) >= 2, served  # the kernel spread the connections

        receipts = [(a.receipt.entry_index, a.receipt.leaf_hash) for r in responses for a in r.answers]
        assert receipts
        assert all(len(h) == 32 for _, h in receipts)
        assert len({i for i, _ in receipts}) == len(receipts)  # no index handed out twice

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0
        assert len(log.events("audit_final_checkpoint")) >= 1

        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT idx, leaf_hash FROM audit_entries ORDER BY idx").fetchall()
        assert [r[0] for r in rows] == list(range(len(rows)))  # gap-free, each index once
        stored = {int(i): bytes(h) for i, h in rows}
        assert all(stored[i] == h for i, h in receipts)  # every receipt names the entry stored at its index

        verify = subprocess.run([sys.executable, "-m", "gateway.cli.main", "audit", "verify", "--state-dir",
                                 str(tmp_path / "state"), "--store", url], cwd=ROOT, capture_output=True, text=True,
                                timeout=120, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        if supervisor is not None and supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(10)
        assert nodes.stdin is not None
        nodes.stdin.close()
        nodes.terminate()
        nodes.wait(10)
