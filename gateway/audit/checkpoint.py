"""Ed25519-signed checkpoints in the C2SP tlog-checkpoint / signed-note format, and the signing-key directory.

Key directory layout: ``<kid>.key`` (PKCS#8 PEM private key, mode 0600), ``<kid>.pub`` (SubjectPublicKeyInfo
PEM), a file ``active`` naming the key id that signs new checkpoints and a file ``origin`` holding the log's
origin line (its name towards witnesses and verifiers). Rotation adds a new pair and switches ``active``; old
``.pub`` files stay so old checkpoints still verify. Checkpoints signed before the signed-note format (key ids
without ``+``) still verify in their original format.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit.encoding import EncodingError, format_timestamp, parse_timestamp
from gateway.audit.note import NoteError, note_key_id, note_text, parse_checkpoint_text, parse_note, vkey
from gateway.errors import GatewayError

CHECKPOINT_ORIGIN = "mash-gateway audit checkpoint v1"  # first line of the pre-signed-note format
ORIGIN_FILE = "origin"
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ACTIVE_FILE = "active"


class CheckpointKeyError(GatewayError):
    """The checkpoint key directory is missing, unreadable, or lacks the key asked for."""


class CheckpointSignatureError(GatewayError):
    """A checkpoint's signature does not verify, or is by a key we do not know."""


def validate_key_id(key_id: str) -> str:
    """Return `key_id` if it is a safe file-name-like id (letters, digits, '.', '_', '-'); else raise."""
    if not _KEY_ID.match(key_id):
        raise CheckpointKeyError(f"invalid checkpoint key id {key_id!r}: use letters, digits, '.', '_', '-'")
    return key_id


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A signed statement that the log had `tree_size` entries with head `root_hash` at `timestamp`."""

    tree_size: int
    root_hash: bytes
    timestamp: datetime
    key_id: str
    signature: bytes

    @property
    def is_note(self) -> bool:
        """Whether this is a signed-note checkpoint (key id ``<origin>+<hex key ID>``), not the old format."""
        return "+" in self.key_id

    @property
    def origin(self) -> str | None:
        """The log's origin line (signed-note checkpoints only)."""
        return self.key_id.rpartition("+")[0] if self.is_note else None

    def body(self) -> bytes:
        """The exact bytes that were signed: the note text, or the old format's body."""
        if self.origin is not None:
            return note_text(self.origin, self.tree_size, self.root_hash)
        return checkpoint_body(self.tree_size, self.root_hash, self.timestamp, self.key_id)

    def note(self, cosignatures: tuple[str, ...] = ()) -> str:
        """The checkpoint as a signed note, with the log's signature line and any cosignature lines after it."""
        if self.origin is None:
            raise CheckpointSignatureError("checkpoints in the old format have no signed-note form")
        line = f"\u2014 {self.origin} {base64.b64encode(self.signature).decode()}\n"
        return self.body().decode() + "\n" + line + "".join(cosignatures)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": format_timestamp(self.timestamp),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }
        if self.is_note:
            doc["note"] = self.note()
        return doc

    @classmethod
    def from_note(cls, text: str) -> SignedCheckpoint:
        """The log's own signature on a signed-note checkpoint (e.g. as a witness serves it); not yet verified.

        The note carries no time, so `timestamp` is the epoch.
        """
        try:
            note = parse_note(text)
            origin, size, root = parse_checkpoint_text(note.text)
        except (NoteError, ValueError) as exc:
            raise CheckpointSignatureError(f"malformed checkpoint note: {exc}") from exc
        for sig in note.signatures:
            if sig.name == origin:
                return cls(size, root, datetime.fromtimestamp(0, UTC), f"{origin}+{sig.key_id.hex()}",
                           sig.key_id + sig.signature)
        raise CheckpointSignatureError("the checkpoint note has no signature by its log")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SignedCheckpoint:
        try:
            return cls(
                tree_size=int(doc["tree_size"]),
                root_hash=bytes.fromhex(str(doc["root_hash"])),
                timestamp=parse_timestamp(str(doc["timestamp"])),
                key_id=str(doc["key_id"]),
                signature=base64.b64decode(str(doc["signature"]), validate=True),
            )
        except (KeyError, ValueError, TypeError, EncodingError) as exc:
            raise CheckpointSignatureError(f"malformed checkpoint: {exc}") from exc


def checkpoint_body(tree_size: int, root_hash: bytes, timestamp: datetime, key_id: str) -> bytes:
    """The signed text: origin line, size, base64 root, RFC 3339 timestamp and key id, one per line."""
    return (
        f"{CHECKPOINT_ORIGIN}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n"
        f"{format_timestamp(timestamp)}\n{key_id}\n"
    ).encode()


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex; what auditors compare out of band."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def validate_origin(origin: str) -> str:
    """Return `origin` if it can be a checkpoint origin and note key name (no spaces, '+' or controls)."""
    if not origin or len(origin) > 255 or any(c.isspace() or c == "+" or ord(c) < 0x20 for c in origin):
        raise CheckpointKeyError("a log origin is 1-255 characters without spaces or '+', e.g. "
                                 "'gateway.example.org/audit'")
    return origin


def new_origin() -> str:
    """A fresh origin for a new log: unique, so witnesses never confuse two gateways' logs."""
    return f"mash-gateway.invalid/audit/{secrets.token_hex(8)}"


class CheckpointSigner:
    """Signs checkpoints with one Ed25519 key as signed notes for the log `origin`.

    It also carries the public keys of its key directory (`verification_keys`, retired keys included), so
    the log can check the checkpoints already stored before it signs anything after them.
    """

    def __init__(self, key_id: str, private_key: Ed25519PrivateKey, *,
                 verification_keys: Mapping[str, Ed25519PublicKey] | None = None,
                 origin: str = "mash-gateway.invalid/audit/test") -> None:
        self.key_id = validate_key_id(key_id)
        self.origin = validate_origin(origin)
        self._key = private_key
        self._verification_keys = dict(verification_keys or {})

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    @property
    def public_keys(self) -> PublicKeys:
        """Every key that may have signed this log's checkpoints: the directory's keys and this signer's own."""
        return PublicKeys({**self._verification_keys, self.key_id: self.public_key}, origin=self.origin)

    @property
    def vkey(self) -> str:
        """This key as a signed-note verifier key, ``<origin>+<hex key ID>+<base64(0x01 || key)>``."""
        return vkey(self.origin, self.public_key)

    def sign(self, tree_size: int, root_hash: bytes, timestamp: datetime) -> SignedCheckpoint:
        """A signed-note checkpoint; `timestamp` is kept beside it (the note text has no time line)."""
        key_id = note_key_id(self.origin, self.public_key)
        text = note_text(self.origin, tree_size, root_hash)
        return SignedCheckpoint(tree_size, root_hash, timestamp, f"{self.origin}+{key_id.hex()}",
                                key_id + self._key.sign(text))

    def sign_legacy(self, tree_size: int, root_hash: bytes, timestamp: datetime) -> SignedCheckpoint:
        """A checkpoint in the format used before signed notes (to test that old logs still verify)."""
        body = checkpoint_body(tree_size, root_hash, timestamp, self.key_id)
        return SignedCheckpoint(tree_size, root_hash, timestamp, self.key_id, self._key.sign(body))

    @classmethod
    def generate(cls, key_id: str = "cp1", origin: str = "mash-gateway.invalid/audit/test") -> CheckpointSigner:
        """A signer with a fresh in-memory key (tests and benchmarks)."""
        return cls(key_id, Ed25519PrivateKey.generate(), origin=origin)


class PublicKeys(Mapping[str, Ed25519PublicKey]):
    """Every checkpoint verification key by key id, current and retired, and the log's origin."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey], *, origin: str | None = None) -> None:
        self._keys = dict(keys)
        self.origin = origin

    def vkeys(self) -> list[str]:
        """Every key as a signed-note verifier key for this log's origin (none without an origin)."""
        return [] if self.origin is None else [vkey(self.origin, key) for key in self._keys.values()]

    def __getitem__(self, key_id: str) -> Ed25519PublicKey:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def verify(self, checkpoint: SignedCheckpoint) -> None:
        """Raise CheckpointSignatureError unless `checkpoint` is signed by the key its key id names."""
        if checkpoint.is_note:
            self._verify_note(checkpoint)
            return
        key = self._keys.get(checkpoint.key_id)
        if key is None:
            raise CheckpointSignatureError(f"checkpoint signed by unknown key id {checkpoint.key_id!r}")
        try:
            key.verify(checkpoint.signature, checkpoint.body())
        except InvalidSignature:
            raise CheckpointSignatureError(
                f"checkpoint at tree size {checkpoint.tree_size} has a bad signature") from None

    def local_id(self, checkpoint: SignedCheckpoint) -> str:
        """The key directory's id (e.g. ``cp2``) of the key that signed `checkpoint`, else its own key id."""
        if checkpoint.is_note:
            origin = checkpoint.key_id.rpartition("+")[0]
            for kid, key in self._keys.items():
                if note_key_id(origin, key) == checkpoint.signature[:4]:
                    return kid
        return checkpoint.key_id

    def _verify_note(self, checkpoint: SignedCheckpoint) -> None:
        origin, _, hex_id = checkpoint.key_id.rpartition("+")
        if self.origin is not None and origin != self.origin:
            raise CheckpointSignatureError("checkpoint is for another log (its origin is not this log's)")
        sig = checkpoint.signature
        if len(sig) != 68 or sig[:4].hex() != hex_id:
            raise CheckpointSignatureError(f"checkpoint at tree size {checkpoint.tree_size} has a malformed "
                                           "signature")
        for key in self._keys.values():
            if note_key_id(origin, key) == sig[:4]:
                try:
                    key.verify(sig[4:], checkpoint.body())
                except InvalidSignature:
                    break
                return
        else:
            raise CheckpointSignatureError(f"checkpoint signed by unknown key id {hex_id}")
        raise CheckpointSignatureError(f"checkpoint at tree size {checkpoint.tree_size} has a bad signature")

    def pem(self, key_id: str) -> bytes:
        return _public_pem(self._keys[key_id])

    @classmethod
    def from_pem(cls, pems: Mapping[str, bytes], *, origin: str | None = None) -> PublicKeys:
        keys: dict[str, Ed25519PublicKey] = {}
        for kid, pem in pems.items():
            try:
                key = serialization.load_pem_public_key(pem)
            except ValueError as exc:
                raise CheckpointKeyError(f"public key {kid!r} is not PEM: {exc}") from exc
            if not isinstance(key, Ed25519PublicKey):
                raise CheckpointKeyError(f"public key {kid!r} is not an Ed25519 key")
            keys[validate_key_id(kid)] = key
        return cls(keys, origin=origin)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def generate_signing_key(directory: Path, key_id: str, *, activate: bool = True) -> CheckpointSigner:
    """Create `<key_id>.key` (0600) and `<key_id>.pub` in `directory`; make it the active key if asked."""
    validate_key_id(key_id)
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / f"{key_id}.key"
    if key_path.exists() or (directory / f"{key_id}.pub").exists():
        raise CheckpointKeyError(f"checkpoint key {key_id!r} already exists")
    origin = ensure_origin(directory)
    key = Ed25519PrivateKey.generate()
    _write_private(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / f"{key_id}.pub").write_bytes(_public_pem(key.public_key()))
    if activate:
        _replace_file(directory / ACTIVE_FILE, (key_id + "\n").encode())
    return CheckpointSigner(key_id, key, origin=origin)


def _replace_file(path: Path, data: bytes) -> None:
    """Write `path` atomically: a gateway starting meanwhile reads the old or the new content, never a part."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def rotate_signing_key(directory: Path, new_key_id: str) -> CheckpointSigner:
    """Add a new key and make it active; retired keys' public halves stay for verification."""
    return generate_signing_key(directory, new_key_id, activate=True)


def load_signer(directory: Path) -> CheckpointSigner:
    """The active signing key named by `<directory>/active`, knowing every `<kid>.pub` in `directory`."""
    try:
        key_id = validate_key_id((directory / ACTIVE_FILE).read_text().strip())
        path = directory / f"{key_id}.key"
        if path.stat().st_mode & 0o077:
            raise CheckpointKeyError(f"checkpoint key {path.name} must be readable by its owner only (0600)")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise CheckpointKeyError(f"cannot read the active checkpoint key: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise CheckpointKeyError(f"checkpoint key is malformed: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointKeyError("checkpoint key is not an Ed25519 key")
    # A directory made before origins existed gets one now, so the origin stays the same from here on.
    origin = ensure_origin(directory)
    return CheckpointSigner(key_id, key, verification_keys=load_public_keys(directory), origin=origin)


def read_origin(directory: Path) -> str | None:
    """The log origin kept in `<directory>/origin`, or None for a key directory made before origins existed."""
    try:
        return validate_origin((directory / ORIGIN_FILE).read_text().strip())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointKeyError(f"cannot read the log origin: {exc.strerror}") from exc


def ensure_origin(directory: Path, origin: str | None = None) -> str:
    """The directory's origin, writing `origin` (or a fresh one) first if it has none yet."""
    current = read_origin(directory)
    if current is None:
        current = validate_origin(origin or new_origin())
        _replace_file(directory / ORIGIN_FILE, (current + "\n").encode())
    return current


def load_public_keys(directory: Path) -> PublicKeys:
    """Every `<kid>.pub` in `directory`, with the log origin if the directory has one."""
    try:
        pems = {p.name[:-4]: p.read_bytes() for p in sorted(directory.glob("*.pub"))}
    except OSError as exc:
        raise CheckpointKeyError(f"cannot read checkpoint public keys: {exc.strerror}") from exc
    if not directory.is_dir():
        raise CheckpointKeyError(f"checkpoint key directory {directory.name!r} does not exist")
    return PublicKeys.from_pem(pems, origin=read_origin(directory))
