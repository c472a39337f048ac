"""Entry point of the `mash-gateway` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.cli import (
    backup_cmd,
    console_cmd,
    demo_cmd,
    dev_cmd,
    keys_cmd,
    pki_cmd,
    referrals_cmd,
    reviews_cmd,
    serve_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mash-gateway",
        description="Privacy-preserving information-sharing gateway for Multi-Agency Safeguarding Hubs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_cmd.register(sub)
    demo_cmd.register(sub)
    dev_cmd.register(sub)
    pki_cmd.register(sub)
    keys_cmd.register(sub)
    referrals_cmd.register(sub)
    reviews_cmd.register(sub)
    from gateway.cli.policy_cmd import register as register_policy
    register_policy(sub)
    from gateway.cli.audit_cmd import register as register_audit
    register_audit(sub)
    backup_cmd.register(sub)
    from gateway.cli.witness_cmd import register as register_witness
    register_witness(sub)
    console_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
