"""`mash-gateway pki init|issue-node|issue-client|revoke`: a development CA, the certificates the policy
calls for, and its certificate revocation list."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from gateway.errors import PolicyError
from gateway.partnership import PartnershipPlan, load_plan
from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout, init_pki
from gateway.pki.authority import client_parts, issue_client, issue_node
from gateway.pki.revocation import RevocationListError, revoke

_LAYOUT = """\
  ca.pem, ca.key                        the development CA (keep ca.key private)
  gateway.pem, gateway.key              the gateway (server and client to the nodes)
  nodes/<agency>.pem, .key              one per record-holding agency in the policy
  clients/<agency>-<system>.pem, .key   one per client identity in bindings.yaml"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pki = sub.add_parser("pki", help="development certificate authority")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True, metavar="ACTION")
    init = pki_sub.add_parser(
        "init", help="create a CA and the gateway, node and client certificates the policy calls for",
        description="Create a development CA and certificates in DIRECTORY:\n" + _LAYOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("directory", type=Path)
    _policy_arg(init)
    init.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(func=run_init)
    rev = pki_sub.add_parser("revoke", help="add certificates to the development CA's revocation list (crl.pem)")
    rev.add_argument("directory", type=Path, help="the PKI directory made by `pki init`")
    rev.add_argument("certificates", type=Path, nargs="+", help="PEM certificates to revoke")
    rev.add_argument("--days", type=int, default=7, help="days until the list must be published again")
    rev.set_defaults(func=run_revoke)

    node = pki_sub.add_parser("issue-node", help="issue a node certificate for an agency the policy declares")
    node.add_argument("agency")
    _pki_dir_arg(node)
    _policy_arg(node)
    node.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    node.set_defaults(func=run_issue_node)

    client = pki_sub.add_parser("issue-client",
                                help="issue a client certificate for an identity bound in bindings.yaml")
    client.add_argument("spiffe_id", metavar="SPIFFE_ID",
                        help="e.g. spiffe://mash.local/agency/police/system/case-system")
    _pki_dir_arg(client)
    _policy_arg(client)
    client.set_defaults(func=run_issue_client)


def _policy_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy-dir", type=Path, default=Path("policies"),
                        help="policy directory whose agencies and bindings say what to issue (default: policies)")


def _pki_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pki-dir", type=Path, default=Path("state/pki"),
                        help="directory made by `pki init` (default: state/pki)")


def _plan(args: argparse.Namespace, console: Console) -> PartnershipPlan | None:
    try:
        return load_plan(args.policy_dir)
    except PolicyError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return None


def run_init(args: argparse.Namespace) -> int:
    console = Console()
    plan = _plan(args, console)
    if plan is None:
        return 2
    try:
        layout = init_pki(args.directory, trust_domain=args.trust_domain, nodes=plan.record_holders,
                          clients=plan.clients, overwrite=args.force)
    except FileExistsError as exc:
        console.print(f"[red]error:[/red] {exc} (use --force to replace it)")
        return 2
    except ValueError as exc:
        console.print(f"[red]error:[/red] bindings.yaml: {exc}")
        return 2
    console.print(f"Created a development CA and certificates in [bold]{layout.root}[/bold]: "
                  f"{len(plan.record_holders)} node and {len(plan.clients)} client certificate(s).")
    console.print(_LAYOUT, markup=False, highlight=False)
    console.print("Private keys are readable only by their owner (mode 0600).")
    return 0


def _have_ca(layout: PkiLayout, console: Console) -> bool:
    if layout.ca_cert.is_file() and layout.ca_key.is_file():
        return True
    console.print(f"[red]error:[/red] no CA in {layout.root}; run `mash-gateway pki init {layout.root}` first")
    return False


def run_issue_node(args: argparse.Namespace) -> int:
    console = Console()
    plan = _plan(args, console)
    if plan is None:
        return 2
    if args.agency not in plan.agencies:
        console.print(f"[red]error:[/red] the policy in {args.policy_dir} declares no agency {args.agency!r}")
        return 2
    if args.agency not in plan.record_holders:
        console.print(f"[red]error:[/red] {args.agency!r} holds no records (holds_records: false), so it has no node")
        return 2
    layout = PkiLayout(args.pki_dir)
    if not _have_ca(layout, console):
        return 2
    cert, _ = issue_node(layout, args.agency, trust_domain=args.trust_domain)
    console.print(f"Issued the {args.agency} node certificate: {cert}")
    return 0


def run_issue_client(args: argparse.Namespace) -> int:
    console = Console()
    plan = _plan(args, console)
    if plan is None:
        return 2
    try:
        agency, _ = client_parts(args.spiffe_id)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {args.spiffe_id!r} is not a client identity: {exc}")
        return 2
    if agency not in plan.agencies:
        console.print(f"[red]error:[/red] the policy in {args.policy_dir} declares no agency {agency!r}")
        return 2
    if args.spiffe_id not in plan.clients:
        console.print(f"[red]error:[/red] {args.spiffe_id} is not bound in bindings.yaml, so it could assert "
                      "no role; bind it first")
        return 2
    layout = PkiLayout(args.pki_dir)
    if not _have_ca(layout, console):
        return 2
    cert, _ = issue_client(layout, args.spiffe_id)
    console.print(f"Issued the client certificate for {args.spiffe_id}: {cert}")
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
