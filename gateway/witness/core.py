"""The witness's add-checkpoint rules (c2sp.org/tlog-witness) over its SQLite state and its own Ed25519 key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.merkle import EMPTY_ROOT, ProofError, verify_consistency
from gateway.audit.note import (
    COSIGNATURE_V1,
    NoteError,
    Verifier,
    cosign,
    is_decimal,
    parse_checkpoint_text,
    parse_note,
    verify_note,
)

MAX_PROOF_LINES = 63
MAX_BODY = 64 * 1024
_SCHEMA = ("CREATE TABLE IF NOT EXISTS witnessed (origin TEXT PRIMARY KEY, tree_size INTEGER NOT NULL, "
           "root_hash BLOB NOT NULL, note TEXT NOT NULL)")


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: status, content type and body."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


def _text(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode())


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The witness key in `path` (PKCS#8 PEM, mode 0600), created on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        return key
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"witness key {path.name} must be readable by its owner only (0600)")
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError("the witness key is not an Ed25519 key")
    return loaded


class Witness:
    """Checks and cosigns checkpoints of the logs it knows; keeps the latest cosigned one per origin.

    The check of the old size and the update of the stored checkpoint happen in one SQLite write
    transaction, so two concurrent requests can never roll the witnessed size back.
    """

    def __init__(self, name: str, key: Ed25519PrivateKey, logs: Sequence[Verifier], database: Path, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._key = key
        self._logs: dict[str, list[Verifier]] = {}
        for verifier in logs:
            self._logs.setdefault(verifier.name, []).append(verifier)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    @property
    def verifier(self) -> Verifier:
        """This witness's cosigning key (type 0x04), for the logs and auditors that rely on it."""
        return Verifier(self.name, COSIGNATURE_V1, self._key.public_key())

    def close(self) -> None:
        self._db.close()

    def latest(self, origin_hash: str) -> Response:
        """GET <origin hash>/checkpoint: the newest checkpoint cosigned for the log whose origin hashes so."""
        with self._lock:
            rows = self._db.execute("SELECT origin, note FROM witnessed").fetchall()
        for origin, note in rows:
            if hashlib.sha256(origin.encode()).hexdigest() == origin_hash:
                return Response(200, note.encode())
        return _text(404, "no checkpoint cosigned for that log")

    def add_checkpoint(self, body: bytes) -> Response:
        """POST add-checkpoint: check the request as tlog-witness requires and cosign, or say why not."""
        try:
            old, proof, note_bytes = _parse_request(body)
            note = parse_note(note_bytes)
            origin, size, root = parse_checkpoint_text(note.text)
        except (NoteError, ValueError) as exc:
            return _text(400, f"malformed request: {exc}")
        trusted = self._logs.get(origin)
        if trusted is None:
            return _text(404, "unknown log origin")
        try:
            verify_note(note, trusted)
        except NoteError:
            return _text(403, "the checkpoint is not signed by the log's key")
        if old > size:
            return _text(400, "old size is larger than the checkpoint")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                response = self._check_and_store(origin, old, proof, size, root, note.text, note_bytes)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT" if response.status == 200 else "ROLLBACK")
        return response

    def _check_and_store(self, origin: str, old: int, proof: list[bytes], size: int, root: bytes,
                         text: bytes, note_bytes: bytes) -> Response:
        row = self._db.execute("SELECT tree_size, root_hash FROM witnessed WHERE origin = ?", (origin,)).fetchone()
        stored_size, stored_root = (0, EMPTY_ROOT) if row is None else (int(row[0]), bytes(row[1]))
        if old != stored_size:
            return Response(409, f"{stored_size}\n".encode(), "text/x.tlog.size")
        if size == 0 and root != EMPTY_ROOT:
            return _text(422, "a checkpoint of size zero must have the empty tree's root")
        if old == 0 and proof:
            return _text(422, "no proof is needed from the empty tree")
        if old > 0:
            try:
                verify_consistency(old, size, stored_root, root, proof)
            except ProofError:
                return _text(422, "the checkpoint is not consistent with the one cosigned before")
        line = cosign(self.name, self._key, text, int(self._clock())).line
        note = note_bytes.decode() + line
        self._db.execute("INSERT INTO witnessed (origin, tree_size, root_hash, note) VALUES (?,?,?,?) "
                         "ON CONFLICT (origin) DO UPDATE SET tree_size = excluded.tree_size, "
                         "root_hash = excluded.root_hash, note = excluded.note", (origin, size, root, note))
        return Response(200, line.encode())


def _parse_request(body: bytes) -> tuple[int, list[bytes], bytes]:
    head, sep, note = body.partition(b"\n\n")
    if not sep:
        raise ValueError("no blank line after the proof")
    lines = head.decode("ascii", errors="replace").split("\n")
    first = lines[0]
    if not first.startswith("old ") or not is_decimal(first[4:]):
        raise ValueError("the first line must be 'old <size>'")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise ValueError("too many proof lines")
    try:
        proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
    except binascii.Error:
        raise ValueError("a proof line is not base64") from None
    if any(len(p) != 32 for p in proof):
        raise ValueError("a proof line is not a 32-byte hash")
    return int(first[4:]), proof, note
