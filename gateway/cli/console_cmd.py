"""`mash-gateway console serve|add-user`: the web console for auditors, IG officers, the MASH team and reviewers."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import json
import logging
import socket
import sys
from pathlib import Path

from gateway.console.accounts import AccountError, add_user


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = sub.add_parser("console", help="the web console (serve it, or add a local account)")
    actions = console.add_subparsers(dest="console_command", required=True, metavar="ACTION")

    serve = actions.add_parser("serve", help="serve the console; it reaches the gateway over mTLS only")
    serve.add_argument("--gateway", default="127.0.0.1:8443", help="gateway address (default: 127.0.0.1:8443)")
    serve.add_argument("--pki-dir", type=Path, default=Path("state/dev/pki"),
                       help="directory holding ca.pem and clients/<client>.pem|.key (default: state/dev/pki)")
    serve.add_argument("--client", default="hub-console",
                       help="the console's client certificate in <pki-dir>/clients (default: hub-console)")
    serve.add_argument("--accounts", type=Path, default=Path("state/console/accounts.json"),
                       help="the accounts file `console add-user` writes")
    serve.add_argument("--bound-role", action="append", default=[], required=True, metavar="ROLE",
                       help="a role the console's certificate is bound to in bindings.yaml (repeat for each)")
    serve.add_argument("--listen", default="127.0.0.1:8600", help="address to serve on (default: 127.0.0.1:8600)")
    serve.add_argument("--insecure-http", action="store_true",
                       help="cookies without the Secure flag, for plain http on a loopback address only")
    serve.add_argument("--tls-cert", type=Path,
                       help="serve https with this certificate (else put a TLS proxy in front)")
    serve.add_argument("--tls-key", type=Path, help="its private key")
    serve.add_argument("--idle-minutes", type=float, default=30.0, help="a session ends after this long idle")
    serve.add_argument("--page-size", type=int, default=25, help="audit log entries per page (default: 25)")
    serve.add_argument("--oidc-issuer", help="also sign people in through this OpenID Connect provider "
                       "(its issuer URL exactly; docs/console.md)")
    serve.add_argument("--oidc-client-id", help="the console's client id at the provider")
    serve.add_argument("--oidc-client-secret-file", type=Path, help="a file holding the console's client secret")
    serve.add_argument("--oidc-redirect-uri", help="https://<console host>/oidc/callback, as registered")
    serve.add_argument("--oidc-user-claim", default="preferred_username",
                       help="the ID token claim that is the user id (default: preferred_username)")
    serve.add_argument("--oidc-roles-claim", default="roles",
                       help="the ID token claim listing the person's roles (default: roles)")
    serve.set_defaults(func=run_serve)

    demo = actions.add_parser("demo", help="a development partnership with demo data and accounts, and the "
                                           "console on it (plain http on loopback)")
    demo.add_argument("--state-dir", type=Path, default=Path("state/console"),
                      help="the partnership, accounts and logs (default: state/console)")
    demo.add_argument("--policy-dir", type=Path, default=Path("policies"))
    demo.add_argument("--gateway-listen", default="127.0.0.1:8443", help="gateway address (default: 127.0.0.1:8443)")
    demo.add_argument("--listen", default="127.0.0.1:8600", help="console address (default: 127.0.0.1:8600)")
    demo.add_argument("--people", type=int, default=2000, help="size of the simulated population")
    demo.set_defaults(func=run_demo)

    add = actions.add_parser("add-user", help="create or replace a local account (password read from stdin)")
    add.add_argument("--accounts", type=Path, default=Path("state/console/accounts.json"))
    add.add_argument("--user", required=True, help="the person's user id, as it goes in the audit log")
    add.add_argument("--role", action="append", default=[], required=True, metavar="ROLE",
                     help="a role the person holds (repeat for each)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input instead of prompting")
    add.set_defaults(func=run_add_user)


def run_add_user(args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
    try:
        add_user(args.accounts, args.user, password, args.role)
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Account {args.user} with role(s) {', '.join(sorted(set(args.role)))} saved in {args.accounts}.")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Start (or reuse) a development partnership, seed it, add the demo accounts and serve the console."""
    import grpc.aio

    from gateway.cli import dev_cmd
    from gateway.console.demo import CONSOLE_ROLES, DEMO_ACCOUNTS, DEMO_PASSWORD, add_demo_accounts, seed

    dev_dir: Path = args.state_dir / "dev"
    if not (dev_dir / dev_cmd.RUN_FILE).exists():
        code = dev_cmd.run_up(argparse.Namespace(state_dir=dev_dir, policy_dir=args.policy_dir,
                                                 listen=args.gateway_listen, people=args.people))
        if code:
            return code
    gateway = json.loads((dev_dir / dev_cmd.RUN_FILE).read_text())["gateway"]
    accounts = args.state_dir / "accounts.json"
    add_demo_accounts(accounts)
    try:
        asyncio.run(seed(gateway, dev_dir / "pki"))
    except grpc.aio.AioRpcError as exc:
        print(f"error: the partnership in {dev_dir} did not answer ({exc.code().name}); run "
              f"`mash-gateway dev down --state-dir {dev_dir}` and try again", file=sys.stderr)
        return 1
    print(f"Demo accounts (password {DEMO_PASSWORD!r}, for this loopback demo only): "
          + ", ".join(f"{user} ({', '.join(roles)})" for user, roles in DEMO_ACCOUNTS.items()))
    print(f"Stop the console with Ctrl-C, then the partnership with "
          f"`mash-gateway dev down --state-dir {dev_dir}`.")
    return run_serve(argparse.Namespace(
        gateway=gateway, pki_dir=dev_dir / "pki", client="hub-console", accounts=accounts,
        bound_role=list(CONSOLE_ROLES), listen=args.listen, insecure_http=True, tls_cert=None, tls_key=None,
        idle_minutes=30.0, page_size=25))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn  # imported here so the rest of the CLI starts fast

    from gateway.console.accounts import AccountError as ReadError
    from gateway.console.app import create_app
    from gateway.console.client import GatewayTarget
    from gateway.console.oidc import OidcSettings
    from gateway.console.web import ConsoleSettings

    host, _, port = args.listen.rpartition(":")
    if args.insecure_http and not _loopback(host):
        print("error: --insecure-http is for a loopback address only", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s", stream=sys.stderr)
    pki: Path = args.pki_dir
    target = GatewayTarget(args.gateway, pki / "ca.pem", pki / "clients" / f"{args.client}.pem",
                           pki / "clients" / f"{args.client}.key")
    oidc = None
    if args.oidc_issuer:
        if not (args.oidc_client_id and args.oidc_client_secret_file and args.oidc_redirect_uri):
            print("error: --oidc-issuer needs --oidc-client-id, --oidc-client-secret-file and --oidc-redirect-uri",
                  file=sys.stderr)
            return 2
        try:
            secret = args.oidc_client_secret_file.read_text().strip()
        except OSError as exc:
            print(f"error: cannot read the OIDC client secret: {exc.strerror}", file=sys.stderr)
            return 2
        oidc = OidcSettings(issuer=args.oidc_issuer, client_id=args.oidc_client_id, client_secret=secret,
                            redirect_uri=args.oidc_redirect_uri, user_claim=args.oidc_user_claim,
                            roles_claim=args.oidc_roles_claim)
    settings = ConsoleSettings(accounts_file=args.accounts, bound_roles=frozenset(args.bound_role),
                               secure_cookies=not args.insecure_http, idle_seconds=args.idle_minutes * 60,
                               page_size=max(1, args.page_size), oidc=oidc)
    try:
        app = create_app(settings, target)
    except (OSError, ReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        print(f"error: cannot listen on {args.listen}: {exc.strerror}", file=sys.stderr)
        return 2
    # uvicorn's own access log would print the request line with its query string; ours prints the path only.
    config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False, date_header=False,
                            proxy_headers=False, log_level="warning",
                            ssl_certfile=str(args.tls_cert) if args.tls_cert else None,
                            ssl_keyfile=str(args.tls_key) if args.tls_key else None)
    server = uvicorn.Server(config)
    scheme = "https" if args.tls_cert else "http"
    print(f"console listening on {scheme}://{host}:{sock.getsockname()[1]}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))
    return 0
