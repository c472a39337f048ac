"""A witness started from the CLI cosigns the gateway's checkpoints, and witnessed history cannot be rewritten."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.backends import open_store
from gateway.audit.checkpoint import CheckpointSigner, generate_signing_key, load_signer
from gateway.audit.log import AuditLog
from gateway.audit.merkle import MerkleTree
from gateway.audit.note import Verifier, parse_note, verify_note
from gateway.cli.audit_cmd import register
from gateway.testing import FixedClock
from gateway.witness import Witness, WitnessClient, WitnessConfig, WitnessError
from gateway.witness.http import make_server
from tests.unit.audit.conftest import make_event

ROOT = Path(__file__).resolve().parents[2]
WHEN = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
_LISTENING = re.compile(r"^witness (\S+) listening on (http://\S+)$")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    generate_signing_key(tmp_path / "keys" / "checkpoint", "cp1")
    return tmp_path


@pytest.fixture
def witness(state: Path) -> Iterator[tuple[str, str]]:
    """`mash-gateway witness serve` for the state's log on a free port; yields (its vkey, its URL)."""
    log_vkey = load_signer(state / "keys" / "checkpoint").vkey
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "witness", "serve", "--state-dir", str(state / "witness"),
         "--name", "witness.partner.example/w1", "--log", log_vkey, "--listen", "127.0.0.1:0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        match = _LISTENING.match(process.stdout.readline().strip())
        assert match, "the witness prints its key and address on start"
        yield match.group(1), match.group(2)
    finally:
        process.terminate()
        assert process.wait(10) == 0, "the witness stops cleanly on SIGTERM"


async def _log_with_witness(state: Path, vkey: str, url: str, entries: list[int]) -> None:
    store = await open_store(f"sqlite:///{state / 'audit.sqlite'}")
    try:
        log = await AuditLog.open(store, load_signer(state / "keys" / "checkpoint"), FixedClock(),
                                  checkpoint_interval=None, witnesses=[WitnessClient(WitnessConfig(url, vkey))])
        for n in entries:
            await log.append([make_event(i) for i in range(log.size, log.size + n)])
            await log.checkpoint()
    finally:
        await store.close()


def _verify(capsys: pytest.CaptureFixture[str], state: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser(prog="mash-gateway")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", "verify", "--state-dir", str(state), *extra])
    code: int = args.func(args)
    capsys.readouterr()
    return code


def test_a_witness_from_the_cli_cosigns_each_checkpoint(state: Path, witness: tuple[str, str]) -> None:
    """Each checkpoint is submitted with a consistency proof; the witness's cosignatures are stored and verify."""
    vkey, url = witness
    asyncio.run(_log_with_witness(state, vkey, url, [5, 3]))
    with sqlite3.connect(state / "audit.sqlite") as db:
        rows = db.execute("SELECT tree_size, line FROM audit_cosignatures ORDER BY tree_size").fetchall()
    assert [size for size, _ in rows] == [5, 8]
    origin = load_signer(state / "keys" / "checkpoint").origin
    origin_hash = hashlib.sha256(origin.encode()).hexdigest()
    with urllib.request.urlopen(f"{url}/{origin_hash}/checkpoint") as answer:  # noqa: S310 - our witness URL
        served = parse_note(answer.read())
    assert served.text.split(b"\n")[1] == b"8"
    assert verify_note(served, [Verifier.parse(vkey)]) == [Verifier.parse(vkey)]


def test_deleting_a_witnessed_entry_fails_verify_even_with_re_signed_checkpoints(
        state: Path, witness: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """An operator who deletes a witnessed entry and re-signs the checkpoints fools a keys-only check, not witnesses."""
    vkey, url = witness
    asyncio.run(_log_with_witness(state, vkey, url, [5, 3]))
    assert _verify(capsys, state, "--witness", vkey) == 0
    with sqlite3.connect(state / "audit.sqlite") as db:  # the operator's rewrite: drop entry 7, and its checkpoint
        db.execute("DELETE FROM audit_entries WHERE idx = 7")
        db.execute("DELETE FROM audit_checkpoints WHERE tree_size = 8")

    async def re_sign() -> None:
        store = await open_store(f"sqlite:///{state / 'audit.sqlite'}")
        try:
            log = await AuditLog.open(store, load_signer(state / "keys" / "checkpoint"), FixedClock(),
                                      checkpoint_interval=None)
            await log.checkpoint()
        finally:
            await store.close()

    asyncio.run(re_sign())
    assert _verify(capsys, state) == 0, "with only the operator's keys the rewrite is invisible"
    assert _verify(capsys, state, "--witness", vkey) == 1


def test_unsigned_entries_after_the_last_witnessed_checkpoint_exit_3(
        state: Path, witness: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Entries a signed but not yet witnessed checkpoint covers are the unsigned tail when witnesses are required."""
    vkey, url = witness
    asyncio.run(_log_with_witness(state, vkey, url, [4]))

    async def unwitnessed_checkpoint() -> None:
        store = await open_store(f"sqlite:///{state / 'audit.sqlite'}")
        try:
            log = await AuditLog.open(store, load_signer(state / "keys" / "checkpoint"), FixedClock(),
                                      checkpoint_interval=None)
            await log.append([make_event(4)])
            await log.checkpoint()
        finally:
            await store.close()

    asyncio.run(unwitnessed_checkpoint())
    assert _verify(capsys, state) == 0
    assert _verify(capsys, state, "--witness", vkey) == 3


def test_witness_and_quorum_flags_are_checked(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log key given as a witness key, or a quorum without witnesses, is a usage error (exit 2)."""
    signer = load_signer(state / "keys" / "checkpoint")

    async def fill() -> None:
        store = await open_store(f"sqlite:///{state / 'audit.sqlite'}")
        try:
            log = await AuditLog.open(store, signer, FixedClock(), checkpoint_interval=None)
            await log.append([make_event(0)])
            await log.checkpoint()
        finally:
            await store.close()

    asyncio.run(fill())
    assert _verify(capsys, state) == 0
    assert _verify(capsys, state, "--witness", signer.vkey) == 2
    assert _verify(capsys, state, "--quorum", "1") == 2


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="mash-gateway")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", *argv])
    code: int = args.func(args)
    return code, capsys.readouterr().out


def test_verify_proof_checks_a_saved_proof_and_witnessed_checkpoint_offline(
        state: Path, witness: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """With the database gone, a saved proof and the witness's cosigned checkpoint still prove the entry."""
    vkey, url = witness
    asyncio.run(_log_with_witness(state, vkey, url, [5, 3]))
    log_vkey = load_signer(state / "keys" / "checkpoint").vkey
    code, out = _cli(capsys, "prove", "3", "--state-dir", str(state), "--json")
    assert code == 0
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(out)
    origin_hash = hashlib.sha256(load_signer(state / "keys" / "checkpoint").origin.encode()).hexdigest()
    with urllib.request.urlopen(f"{url}/{origin_hash}/checkpoint") as answer:  # noqa: S310 - our witness URL
        (tmp_path / "checkpoint.note").write_bytes(answer.read())
    receipt = tmp_path / "receipt.json"
    doc = json.loads(out)
    receipt.write_text(json.dumps({"index": 3, "leaf_hash": doc["leaf_hash"]}))
    (state / "audit.sqlite").unlink()

    offline = ("verify-proof", str(proof_file), "--log-key", log_vkey, "--json")
    code, out = _cli(capsys, *offline, "--checkpoint", str(tmp_path / "checkpoint.note"), "--witness", vkey,
                     "--receipt", str(receipt))
    assert (code, json.loads(out)["witnesses"]) == (0, ["witness.partner.example/w1"])
    code, out = _cli(capsys, *offline, "--witness", vkey)
    assert (code, json.loads(out)["verified"]) == (1, False), "the log's own copy carries no cosignature"
    receipt.write_text(json.dumps({"index": 4, "leaf_hash": doc["leaf_hash"]}))
    assert _cli(capsys, *offline, "--receipt", str(receipt))[0] == 1
    doc["path"][0] = "00" * 32
    proof_file.write_text(json.dumps(doc))
    assert _cli(capsys, *offline, "--checkpoint", str(tmp_path / "checkpoint.note"))[0] == 1


def test_the_witness_copy_of_a_checkpoint_catches_a_rewrite_that_also_deleted_the_cosignatures(
        state: Path, witness: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The note a witness serves, passed as a trusted checkpoint, still exposes a deletion the store hides."""
    vkey, url = witness
    asyncio.run(_log_with_witness(state, vkey, url, [6]))
    origin_hash = hashlib.sha256(load_signer(state / "keys" / "checkpoint").origin.encode()).hexdigest()
    with urllib.request.urlopen(f"{url}/{origin_hash}/checkpoint") as answer:  # noqa: S310 - our witness URL
        (tmp_path / "witnessed.note").write_bytes(answer.read())
    with sqlite3.connect(state / "audit.sqlite") as db:
        db.execute("DELETE FROM audit_entries WHERE idx = 5")
        db.execute("DELETE FROM audit_checkpoints")
        db.execute("DELETE FROM audit_cosignatures")
    kept = ("--trusted-checkpoint", str(tmp_path / "witnessed.note"))
    code, out = _cli(capsys, "verify", "--state-dir", str(state), "--json", *kept)
    assert code == 1
    assert "truncated" in [p["kind"] for p in json.loads(out)["problems"]]


@pytest.fixture
def http_witness(tmp_path: Path) -> Iterator[tuple[Witness, str, CheckpointSigner]]:
    """A witness on a real HTTP server (port 0) in this process, for one log; yields it, its URL and the log."""
    log = CheckpointSigner.generate("cp1", origin="gateway.example.org/audit")
    witness = Witness("witness.example.org/w1", Ed25519PrivateKey.generate(), [Verifier.parse(log.vkey)],
                      tmp_path / "w.sqlite")
    server = make_server(witness, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield witness, f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
        witness.close()


async def test_a_client_that_lost_track_learns_the_witnessed_size_and_proves_from_it(
        http_witness: tuple[Witness, str, CheckpointSigner]) -> None:
    """After a restart the client sends old 0, gets 409 with the witness's size, and retries with a proof."""
    witness, url, log = http_witness
    tree = MerkleTree(hashlib.sha256(bytes([i])).digest() for i in range(9))

    async def proof(old: int, new: int) -> list[bytes]:
        return tree.consistency_proof(old, new)

    config = WitnessConfig(url, witness.verifier.vkey)
    first = await WitnessClient(config).add_checkpoint(log.sign(5, tree.root(5), WHEN).note(), 5, proof)
    restarted = WitnessClient(config)
    second = await restarted.add_checkpoint(log.sign(9, tree.root(9), WHEN).note(), 9, proof)
    assert (first.name, second.name) == ("witness.example.org/w1", "witness.example.org/w1")
    forked = MerkleTree(hashlib.sha256(b"x" + bytes([i])).digest() for i in range(12))

    async def forked_proof(old: int, new: int) -> list[bytes]:
        return forked.consistency_proof(old, new)

    with pytest.raises(WitnessError, match="refused the checkpoint"):
        await restarted.add_checkpoint(log.sign(12, forked.root(), WHEN).note(), 12, forked_proof)


async def test_a_witness_that_is_down_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """An unreachable witness raises WitnessError; a bad URL scheme or key type is refused up front."""
    log = CheckpointSigner.generate("cp1")
    key = Verifier("w", 0x04, Ed25519PrivateKey.generate().public_key()).vkey
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = WitnessClient(WitnessConfig(f"http://127.0.0.1:{port}", key), timeout=2)

    async def proof(old: int, new: int) -> list[bytes]:
        return []

    with pytest.raises(WitnessError, match="unreachable"):
        await client.add_checkpoint(log.sign(0, hashlib.sha256(b"").digest(), WHEN).note(), 0, proof)
    with pytest.raises(WitnessError):
        WitnessConfig("file:///etc/passwd", key)
    with pytest.raises(WitnessError):
        WitnessConfig("http://127.0.0.1:1", log.vkey)


async def test_a_witness_from_the_cli_refuses_a_split_view_and_keeps_serving_what_it_cosigned(
        state: Path, witness: tuple[str, str]) -> None:
    """A second checkpoint of the same size with another root, signed with the log's own key, is refused by
    the witness started from the CLI; it still serves the checkpoint it cosigned."""
    vkey, url = witness
    await _log_with_witness(state, vkey, url, [5])
    signer = load_signer(state / "keys" / "checkpoint")
    forked = MerkleTree(hashlib.sha256(b"fork" + bytes([i])).digest() for i in range(5))

    async def proof(old: int, new: int) -> list[bytes]:
        return forked.consistency_proof(old, new) if old else []

    with pytest.raises(WitnessError, match="refused the checkpoint"):
        await WitnessClient(WitnessConfig(url, vkey)).add_checkpoint(
            signer.sign(5, forked.root(), WHEN).note(), 5, proof)
    origin_hash = hashlib.sha256(signer.origin.encode()).hexdigest()
    served = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"{url}/{origin_hash}/checkpoint").read())  # noqa: S310 - our witness URL
    assert parse_note(served).text.split(b"\n")[2] != base64.b64encode(forked.root())
