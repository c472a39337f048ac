"""`mash-gateway keys init | rotate`: the key rings a gateway needs (subject tokens, sealing, pseudonyms, signing)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rich.console import Console

from gateway.keyring import KeyringError, load_keyring, save_keyring
from gateway.keys import KeyPaths, init_keys

RINGS = ("subject-token", "sealing", "pseudonym", "locator", "checkpoint")
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="key rings for tokens, sealing, pseudonyms and checkpoint signing")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    init = keys_sub.add_parser("init", help="create any key ring that does not exist yet")
    init.add_argument("--state-dir", type=Path, required=True)
    init.set_defaults(func=run_init)
    rotate = keys_sub.add_parser(
        "rotate", help="add a new active key to one ring; older keys stay so old values still verify or open")
    rotate.add_argument("ring", choices=RINGS)
    rotate.add_argument("--key-id", required=True, help="id of the new key, e.g. k2 or cp2")
    rotate.add_argument("--state-dir", type=Path, required=True)
    rotate.set_defaults(func=run_rotate)


def run_init(args: argparse.Namespace) -> int:
    created = init_keys(KeyPaths(args.state_dir / "keys"))
    console = Console()
    for name in created:
        console.print(f"created {name}")
    if not created:
        console.print("all key rings already exist; nothing changed")
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    """Rotate one ring. A running gateway picks the new key up when it restarts."""
    console = Console()
    paths = KeyPaths(args.state_dir / "keys")
    if not _KEY_ID.fullmatch(args.key_id):
        console.print("[red]error:[/red] a key id is 1-32 letters, digits, '.', '_' or '-'")
        return 2
    try:
        if args.ring == "checkpoint":
            from gateway.audit import CheckpointKeyError, rotate_signing_key

            try:
                rotate_signing_key(paths.checkpoint, args.key_id)
            except CheckpointKeyError as exc:
                console.print(f"[red]error:[/red] {exc}")
                return 2
        else:
            path = {"subject-token": paths.subject_token, "sealing": paths.sealing,
                    "pseudonym": paths.pseudonym, "locator": paths.locator}[args.ring]
            save_keyring(load_keyring(path).rotated(args.key_id), path)
    except KeyringError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    console.print(f"{args.ring}: {args.key_id} is now the active key; older keys are kept. "
                  "Restart the gateway to use it.")
    return 0
