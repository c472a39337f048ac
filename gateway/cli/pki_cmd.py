"""`mash-gateway pki init DIR`: a development CA and every certificate the demo partnership needs."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from gateway.pki import DEFAULT_TRUST_DOMAIN, init_pki


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pki = sub.add_parser("pki", help="development certificate authority")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True, metavar="ACTION")
    init = pki_sub.add_parser("init", help="create a CA and certificates for the gateway, nodes and clients")
    init.add_argument("directory", type=Path)
    init.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    console = Console()
    try:
        layout = init_pki(args.directory, trust_domain=args.trust_domain, overwrite=args.force)
    except FileExistsError as exc:
        console.print(f"[red]error:[/red] {exc} (use --force to replace it)")
        return 2
    console.print(f"Created a development CA and certificates in [bold]{layout.root}[/bold]")
    console.print("Private keys are readable only by their owner (mode 0600).")
    return 0
