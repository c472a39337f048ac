"""`mash-gateway witness serve | key`: run a tlog-witness that cosigns the checkpoints of the logs it trusts."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from gateway.audit.note import NoteError, Verifier
from gateway.witness.core import Witness, load_or_create_key
from gateway.witness.http import make_server

KEY_FILE = "witness.key"
STATE_FILE = "witness.sqlite"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    witness = sub.add_parser("witness", help="run a witness that cosigns audit-log checkpoints (C2SP tlog-witness)")
    actions = witness.add_subparsers(dest="witness_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", type=Path, required=True,
                        help=f"witness directory: {KEY_FILE} (created on first use) and {STATE_FILE}")
    common.add_argument("--name", required=True, help="the witness's key name, e.g. witness.health.example/w1")

    p = actions.add_parser("key", parents=[common], help="print this witness's verifier key (creates the key)")
    p.set_defaults(func=run_key)

    p = actions.add_parser("serve", parents=[common], help="serve POST /add-checkpoint over HTTP")
    p.add_argument("--log", action="append", required=True, metavar="VKEY",
                   help="verifier key of a log to witness, as `audit keys` prints it (repeatable)")
    p.add_argument("--listen", default="127.0.0.1:8421", help="host:port (port 0 picks a free port)")
    p.set_defaults(func=run_serve)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _witness_key(args: argparse.Namespace) -> Verifier:
    key = load_or_create_key(args.state_dir / KEY_FILE)
    return Verifier(args.name, 0x04, key.public_key())


def run_key(args: argparse.Namespace) -> int:
    try:
        print(_witness_key(args).vkey)
    except (OSError, ValueError) as exc:
        return _error(f"cannot read or create the witness key: {exc}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    host, _, port = str(args.listen).rpartition(":")
    if not host or not port.isdigit():
        return _error("--listen must be host:port")
    try:
        logs = [Verifier.parse(v) for v in args.log]
        if any(v.sig_type != 0x01 for v in logs):
            return _error("--log takes a log's Ed25519 verifier key (signature type 0x01)")
        key = load_or_create_key(args.state_dir / KEY_FILE)
        witness = Witness(args.name, key, logs, args.state_dir / STATE_FILE)
    except NoteError as exc:
        return _error(f"--log: {exc}")
    except (OSError, ValueError) as exc:
        return _error(f"cannot open the witness state: {exc}")
    server = make_server(witness, host, int(port))

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound_host, bound_port = server.server_address[:2]
    # One line a supervisor (or a test) can read: where to submit, and the key to trust.
    print(f"witness {witness.verifier.vkey} listening on http://{bound_host!s}:{bound_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        witness.close()
    return 0
