"""`mash-gateway pki init DIR`: a development CA and every certificate the demo partnership needs;
`mash-gateway pki revoke DIR CERT...`: its certificate revocation list."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout, init_pki
from gateway.pki.revocation import RevocationListError, revoke


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pki = sub.add_parser("pki", help="development certificate authority")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True, metavar="ACTION")
    init = pki_sub.add_parser("init", help="create a CA and certificates for the gateway, nodes and clients")
    init.add_argument("directory", type=Path)
    init.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(func=run_init)
    rev = pki_sub.add_parser("revoke", help="add certificates to the development CA's revocation list (crl.pem)")
    rev.add_argument("directory", type=Path, help="the PKI directory made by `pki init`")
    rev.add_argument("certificates", type=Path, nargs="+", help="PEM certificates to revoke")
    rev.add_argument("--days", type=int, default=7, help="days until the list must be published again")
    rev.set_defaults(func=run_revoke)


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


def run_revoke(args: argparse.Namespace) -> int:
    console = Console()
    try:
        path = revoke(PkiLayout(args.directory), args.certificates, days=args.days)
    except (OSError, ValueError, RevocationListError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    console.print(f"Revoked {len(args.certificates)} certificate(s); the revocation list is [bold]{path}[/bold]")
    console.print("Set crl_file in gateway.toml to it; a running gateway rereads it when it changes.")
    return 0
