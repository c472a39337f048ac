"""`mash-gateway keys init | rotate`: rings are created once, rotated without losing old keys."""

from __future__ import annotations

import stat
from pathlib import Path

from gateway.cli.main import main
from gateway.keyring import load_keyring


def test_init_creates_every_ring_once_with_private_modes(tmp_path: Path) -> None:
    """init makes the four rings (mode 0600) and changes nothing when run again."""
    assert main(["keys", "init", "--state-dir", str(tmp_path)]) == 0
    ring = tmp_path / "keys" / "sealing.json"
    before = ring.read_bytes()
    assert stat.S_IMODE(ring.stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "checkpoint" / "active").read_text().strip() == "cp1"
    assert main(["keys", "init", "--state-dir", str(tmp_path)]) == 0
    assert ring.read_bytes() == before


def test_rotate_adds_an_active_key_and_keeps_the_old_one(tmp_path: Path) -> None:
    """After rotation the new key signs or seals; the old one is still there to verify or open."""
    main(["keys", "init", "--state-dir", str(tmp_path)])
    assert main(["keys", "rotate", "pseudonym", "--key-id", "k2", "--state-dir", str(tmp_path)]) == 0
    ring = load_keyring(tmp_path / "keys" / "pseudonym.json")
    assert ring.active_id == "k2"
    assert set(ring.keys) == {"k1", "k2"}
    assert main(["keys", "rotate", "checkpoint", "--key-id", "cp2", "--state-dir", str(tmp_path)]) == 0
    checkpoint = tmp_path / "keys" / "checkpoint"
    assert (checkpoint / "active").read_text().strip() == "cp2"
    assert (checkpoint / "cp1.pub").exists()


def test_rotating_to_an_existing_or_malformed_key_id_is_refused(tmp_path: Path) -> None:
    """Reusing a key id, or an id that is not a plain name, exits 2 and changes nothing."""
    main(["keys", "init", "--state-dir", str(tmp_path)])
    ring = tmp_path / "keys" / "sealing.json"
    before = ring.read_bytes()
    assert main(["keys", "rotate", "sealing", "--key-id", "k1", "--state-dir", str(tmp_path)]) == 2
    assert main(["keys", "rotate", "sealing", "--key-id", "../x", "--state-dir", str(tmp_path)]) == 2
    assert ring.read_bytes() == before
