"""C2SP signed notes (c2sp.org/signed-note), checkpoints (c2sp.org/tlog-checkpoint) and Ed25519 cosignatures.

Only what the audit log and its witnesses need: the checkpoint note text, key IDs and verifier keys for
Ed25519 (signature type 0x01) and timestamped Ed25519 cosignatures (type 0x04, ``cosignature/v1``), and
parsing and verifying a note against the keys a verifier trusts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import GatewayError

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16
_DASH = "\u2014 "


class NoteError(GatewayError):
    """A note is malformed, or no trusted key's signature on it verifies."""


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_hash(name: str, sig_type: int, key: Ed25519PublicKey) -> bytes:
    """The 4-byte key ID: SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + raw_public(key)).digest()[:4]


def note_key_id(name: str, key: Ed25519PublicKey) -> bytes:
    """The key ID of an Ed25519 (type 0x01) note signer."""
    return key_hash(name, ED25519, key)


def vkey(name: str, key: Ed25519PublicKey, sig_type: int = ED25519) -> str:
    """A verifier key: ``<name>+<hex key ID>+<base64(signature type || public key)>``."""
    return (f"{name}+{key_hash(name, sig_type, key).hex()}+"
            f"{base64.b64encode(bytes([sig_type]) + raw_public(key)).decode()}")


def note_text(origin: str, tree_size: int, root_hash: bytes) -> bytes:
    """A checkpoint's note text: origin, decimal tree size and base64 root hash, each ending in a newline."""
    return f"{origin}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n".encode()


def cosigned_message(text: bytes, timestamp: int) -> bytes:
    """What an Ed25519 cosignature signs: ``cosignature/v1``, ``time <t>``, then the checkpoint note text."""
    return b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + text


@dataclass(frozen=True, slots=True)
class Verifier:
    """A trusted key: its name, signature type (0x01 note signer or 0x04 cosigner) and Ed25519 public key."""

    name: str
    sig_type: int
    key: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        return key_hash(self.name, self.sig_type, self.key)

    @property
    def vkey(self) -> str:
        return vkey(self.name, self.key, self.sig_type)

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """Parse a verifier key; raises NoteError if it is malformed or its key ID does not match."""
        name, sep, rest = text.strip().partition("+")
        hex_id, sep2, b64 = rest.partition("+")
        try:
            blob = base64.b64decode(b64, validate=True)
            key_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError):
            raise NoteError("verifier key is not <name>+<hex id>+<base64 key>") from None
        if not sep or not sep2 or not name or len(key_id) != 4 or len(blob) != 33 \
                or blob[0] not in (ED25519, COSIGNATURE_V1) or any(c.isspace() for c in name):
            raise NoteError("verifier key is not an Ed25519 (type 0x01 or 0x04) key")
        verifier = cls(name, blob[0], Ed25519PublicKey.from_public_bytes(blob[1:]))
        if verifier.key_id != key_id:
            raise NoteError("verifier key's key ID does not match its name and key")
        return verifier


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: key name, 4-byte key ID and the rest of the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    @property
    def line(self) -> str:
        return f"{_DASH}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note: its text (ending in a newline) and signature lines."""

    text: bytes
    signatures: tuple[Signature, ...]


def parse_signature_lines(block: str) -> list[Signature]:
    """Parse ``— <name> <base64>`` lines, each ending in a newline; raises NoteError if any is malformed."""
    if not block.endswith("\n"):
        raise NoteError("signature lines must end in a newline")
    out = []
    for line in block[:-1].split("\n"):
        if not line.startswith(_DASH):
            raise NoteError("a signature line must start with an em dash and a space")
        name, sep, b64 = line[len(_DASH):].partition(" ")
        try:
            blob = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise NoteError("a signature is not base64") from None
        if not sep or not name or "+" in name or " " in b64 or len(blob) < 5:
            raise NoteError("a signature line is malformed")
        out.append(Signature(name, blob[:4], blob[4:]))
    if len(out) > MAX_SIGNATURES:
        raise NoteError("the note has too many signatures")
    return out


def parse_note(data: bytes | str) -> Note:
    """Split a signed note at its last blank line into text and signatures; raises NoteError if malformed."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise NoteError("a note must be UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("a note must not contain control characters other than newline")
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("a note needs a blank line before its signatures")
    return Note(text[:split + 1].encode(), tuple(parse_signature_lines(text[split + 2:])))


def verify_signature(verifier: Verifier, text: bytes, sig: Signature) -> bool:
    """Whether `sig` by `verifier` is valid over a note `text` (the caller matched name and key ID)."""
    if verifier.sig_type == ED25519:
        message, raw = text, sig.signature
    else:
        if len(sig.signature) != 72:
            return False
        message, raw = cosigned_message(text, int.from_bytes(sig.signature[:8], "big")), sig.signature[8:]
    try:
        verifier.key.verify(raw, message)
    except InvalidSignature:
        return False
    return True


def verify_note(note: Note, verifiers: Sequence[Verifier]) -> list[Verifier]:
    """The trusted `verifiers` whose signatures on `note` verify; unknown signatures are ignored.

    Raises NoteError if a known key's signature fails (the note is then malformed) or none verifies.
    """
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[Verifier] = []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verify_signature(verifier, note.text, sig):
            raise NoteError(f"the signature by {sig.name} does not verify")
        if verifier not in verified:
            verified.append(verifier)
    if not verified:
        raise NoteError("no signature by a trusted key")
    return verified


def cosign(name: str, key: Ed25519PrivateKey, text: bytes, timestamp: int) -> Signature:
    """An Ed25519 ``cosignature/v1`` signature line over a checkpoint note `text` at POSIX time `timestamp`."""
    if not 0 < timestamp < 2**63:
        raise ValueError("a cosignature timestamp is a positive 63-bit number of seconds")
    sig = key.sign(cosigned_message(text, timestamp))
    return Signature(name, key_hash(name, COSIGNATURE_V1, key.public_key()), timestamp.to_bytes(8, "big") + sig)


def parse_checkpoint_text(text: bytes) -> tuple[str, int, bytes]:
    """Origin, tree size and root hash of a checkpoint's note text; raises ValueError if it is not one."""
    lines = text.decode().split("\n")
    if len(lines) < 4 or not lines[0] or not is_decimal(lines[1]) or any(not line for line in lines[3:-1]):
        raise ValueError("not a checkpoint (origin, size, root hash lines)")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        raise ValueError("the root hash is not base64") from None
    if len(root) != 32:
        raise ValueError("the root hash is not 32 bytes")
    return lines[0], int(lines[1]), root


def is_decimal(text: str) -> bool:
    """Whether `text` is an ASCII decimal without leading zeroes, as sizes in notes must be."""
    return text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))
