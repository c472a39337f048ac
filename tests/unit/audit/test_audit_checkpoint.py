"""Signed checkpoints and the checkpoint key directory: signing, verification, rotation, file modes."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.audit.checkpoint import (
    CheckpointKeyError,
    CheckpointSignatureError,
    CheckpointSigner,
    PublicKeys,
    SignedCheckpoint,
    generate_signing_key,
    load_public_keys,
    load_signer,
    rotate_signing_key,
)

WHEN = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
ROOT = bytes(range(32))


def test_signed_checkpoint_verifies_with_the_signers_public_key() -> None:
    """A checkpoint signed by a key verifies under that key's id."""
    signer = CheckpointSigner.generate("cp1")
    cp = signer.sign(10, ROOT, WHEN)
    PublicKeys({"cp1": signer.public_key}).verify(cp)


@pytest.mark.parametrize("change", [
    {"tree_size": 11}, {"root_hash": bytes(32)}, {"key_id": "mash-gateway.invalid/audit/other+00000000"},
])
def test_any_altered_checkpoint_field_breaks_the_signature(change: dict[str, object]) -> None:
    """Changing the size, root or origin of a signed checkpoint makes it fail verification."""
    signer = CheckpointSigner.generate("cp1")
    cp = dataclasses.replace(signer.sign(10, ROOT, WHEN), **change)  # type: ignore[arg-type]
    with pytest.raises(CheckpointSignatureError):
        signer.public_keys.verify(cp)


@pytest.mark.parametrize("change", [
    {"tree_size": 11}, {"root_hash": bytes(32)}, {"timestamp": datetime(2026, 11, 26, 9, 0, 1, tzinfo=UTC)},
])
def test_any_altered_field_of_an_old_format_checkpoint_breaks_its_signature(change: dict[str, object]) -> None:
    """Checkpoints in the format used before signed notes still verify, and still bind their size, root and time."""
    signer = CheckpointSigner.generate("cp1")
    legacy = signer.sign_legacy(10, ROOT, WHEN)
    PublicKeys({"cp1": signer.public_key}).verify(legacy)
    with pytest.raises(CheckpointSignatureError):
        PublicKeys({"cp1": signer.public_key}).verify(dataclasses.replace(legacy, **change))  # type: ignore[arg-type]


def test_checkpoint_from_an_unknown_key_is_rejected() -> None:
    """A checkpoint whose key id is not among the known keys does not verify."""
    cp = CheckpointSigner.generate("stranger").sign(1, ROOT, WHEN)
    with pytest.raises(CheckpointSignatureError, match="unknown key id"):
        PublicKeys({"cp1": CheckpointSigner.generate("cp1").public_key}).verify(cp)


def test_checkpoint_relabelled_with_another_key_id_is_rejected() -> None:
    """The key id is signed, so a checkpoint cannot be passed off as another key's."""
    a, b = CheckpointSigner.generate("a"), CheckpointSigner.generate("b")
    cp = dataclasses.replace(a.sign(1, ROOT, WHEN), key_id="b")
    with pytest.raises(CheckpointSignatureError):
        PublicKeys({"a": a.public_key, "b": b.public_key}).verify(cp)


def test_checkpoint_survives_a_dict_round_trip() -> None:
    """to_dict/from_dict keep every field, and the result still verifies."""
    signer = CheckpointSigner.generate("cp1")
    cp = signer.sign(3, ROOT, WHEN)
    again = SignedCheckpoint.from_dict(cp.to_dict())
    assert again == cp
    PublicKeys({"cp1": signer.public_key}).verify(again)


def test_generated_key_files_have_owner_only_private_key(tmp_path: Path) -> None:
    """The private key file is mode 0600; the public key and active marker are written beside it."""
    generate_signing_key(tmp_path, "cp1")
    assert (tmp_path / "cp1.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "cp1.pub").exists()
    assert (tmp_path / "active").read_text().strip() == "cp1"


def test_rotation_keeps_old_checkpoints_verifiable(tmp_path: Path) -> None:
    """After rotation the new key signs, and checkpoints from the old key still verify."""
    old = generate_signing_key(tmp_path, "cp1")
    old_cp = old.sign(5, ROOT, WHEN)
    rotate_signing_key(tmp_path, "cp2")
    signer = load_signer(tmp_path)
    assert signer.key_id == "cp2"
    keys = load_public_keys(tmp_path)
    assert set(keys) == {"cp1", "cp2"}
    keys.verify(old_cp)
    keys.verify(signer.sign(6, ROOT, WHEN))


def test_existing_key_id_is_not_overwritten(tmp_path: Path) -> None:
    """Generating a key id that exists is refused rather than destroying the old key."""
    generate_signing_key(tmp_path, "cp1")
    with pytest.raises(CheckpointKeyError, match="already exists"):
        generate_signing_key(tmp_path, "cp1")


def test_world_readable_private_key_is_refused(tmp_path: Path) -> None:
    """A signing key readable by others is not loaded."""
    generate_signing_key(tmp_path, "cp1")
    os.chmod(tmp_path / "cp1.key", 0o644)
    with pytest.raises(CheckpointKeyError, match="0600"):
        load_signer(tmp_path)


@pytest.mark.parametrize("kid", ["", "../x", "a/b", "with space", "x" * 65])
def test_unsafe_key_ids_are_refused(tmp_path: Path, kid: str) -> None:
    """Key ids become file names, so anything but a plain name is refused."""
    with pytest.raises(CheckpointKeyError, match="invalid checkpoint key id"):
        generate_signing_key(tmp_path, kid)


def test_missing_key_directory_is_a_clear_error(tmp_path: Path) -> None:
    """Loading keys from a directory that does not exist names the problem."""
    with pytest.raises(CheckpointKeyError):
        load_signer(tmp_path / "nope")
    with pytest.raises(CheckpointKeyError, match="does not exist"):
        load_public_keys(tmp_path / "nope")


def test_loaded_signer_knows_every_public_key_of_its_directory(tmp_path: Path) -> None:
    """After rotation the active signer can still verify checkpoints signed with the retired key."""
    old = generate_signing_key(tmp_path, "cp1")
    cp = old.sign(3, b"\x01" * 32, WHEN)
    rotate_signing_key(tmp_path, "cp2")
    signer = load_signer(tmp_path)
    assert signer.key_id == "cp2"
    assert sorted(signer.public_keys) == ["cp1", "cp2"]
    signer.public_keys.verify(cp)


def test_switching_the_active_key_replaces_the_file_rather_than_rewriting_it(tmp_path: Path) -> None:
    """Rotation writes a new `active` file and renames it into place, so no reader sees it half-written."""
    generate_signing_key(tmp_path, "cp1")
    os.link(tmp_path / "active", tmp_path / "active-before")
    rotate_signing_key(tmp_path, "cp2")
    assert (tmp_path / "active-before").read_text() == "cp1\n"
    assert (tmp_path / "active").read_text() == "cp2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["active", "active-before", "cp1.key", "cp1.pub",
                                                          "cp2.key", "cp2.pub", "origin"]
