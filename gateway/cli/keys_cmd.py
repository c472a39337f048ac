"""`mash-gateway keys init`: the key rings a gateway needs (subject tokens, sealing, pseudonyms, signing)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from gateway.keys import KeyPaths, init_keys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="key rings for tokens, sealing, pseudonyms and checkpoint signing")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    init = keys_sub.add_parser("init", help="create any key ring that does not exist yet")
    init.add_argument("--state-dir", type=Path, required=True)
    init.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    created = init_keys(KeyPaths(args.state_dir / "keys"))
    console = Console()
    for name in created:
        console.print(f"created {name}")
    if not created:
        console.print("all key rings already exist; nothing changed")
    return 0
