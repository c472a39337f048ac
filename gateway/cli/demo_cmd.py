"""`mash-gateway demo`: a node per record-holding agency and a gateway on loopback (mTLS, SQLite) play a MASH story."""

from __future__ import annotations

import argparse
import asyncio
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gateway.demo.london import play_pan_london
from gateway.demo.partnership import Partnership
from gateway.demo.referral_day import play_referral_day
from gateway.demo.story import close_the_books, play
from gateway.errors import GatewayError
from gateway.logs import configure_logging

_MARKER = ".mash-gateway-demo"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="run the MASH scenario end to end on loopback and verify the audit log")
    demo.add_argument("--state-dir", type=Path, default=Path("state/demo"),
                      help="fresh state directory for the demo (wiped first if an earlier demo made it)")
    demo.add_argument("--policy-dir", type=Path, default=None,
                      help="policy directory (default: ./policies)")
    demo.add_argument("--audit-store", default="",
                      help="audit store URL (default: sqlite:///<state dir>/audit.sqlite); postgresql://… works too")
    demo.add_argument("--log-file", type=Path, default=None,
                      help="where the JSON application logs go (default: <state dir>/gateway.log)")
    demo.set_defaults(func=run)


def _fresh(state_dir: Path) -> None:
    """Wipe a state directory an earlier demo made; refuse to touch anything else."""
    if state_dir.exists():
        if not (state_dir / _MARKER).exists() and any(state_dir.iterdir()):
            raise SystemExit(f"{state_dir} exists and was not made by the demo; choose another --state-dir")
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    (state_dir / _MARKER).write_text("made by `mash-gateway demo`; safe to delete\n")


def run(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal and console.width < 110:
        console = Console(width=110)  # piped output (CI logs): keep the tables readable
    policy_dir = args.policy_dir or Path("policies")
    if not (policy_dir / "model.conf").exists():
        console.print(f"[red]error:[/red] no policy found at {policy_dir}; run from the repository or pass "
                      "--policy-dir")
        return 2
    _fresh(args.state_dir)
    log_path = args.log_file or args.state_dir / "gateway.log"
    with log_path.open("w") as log_stream:
        configure_logging("info", log_stream)
        try:
            return asyncio.run(_run(args.state_dir, policy_dir, args.audit_store, console))
        except GatewayError as exc:
            console.print(f"[red]error:[/red] the demo could not start: {exc}")
            return 2


async def _run(state_dir: Path, policy_dir: Path, audit_store: str, console: Console) -> int:
    console.rule("[bold blue]MASH Gateway demo")
    console.print("Starting a node per agency of the policy and the gateway on loopback, every hop over "
                  "mutual TLS, audit log in "
                  f"{'PostgreSQL' if audit_store.startswith('postgresql') else 'SQLite'}…")
    async with Partnership(state_dir, policy_dir, audit_store=audit_store) as partnership:
        console.print(f"Gateway listening on {partnership.address}; nodes on "
                      + ", ".join(f"{a} :{n.port}" for a, n in partnership.nodes.items()))
        report = await play(partnership, console)
        await close_the_books(partnership, console, report)
    await play_referral_day(state_dir / "referral-day", policy_dir, console, report)
    await play_pan_london(state_dir / "pan-london", console, report)
    console.rule("[bold]Result")
    table = Table(show_header=True)
    table.add_column("step")
    table.add_column("expectation")
    table.add_column("", justify="center")
    for check in report.checks:
        table.add_row(check.step, check.description, "[green]✔[/green]" if check.ok else "[red]✘[/red]")
    console.print(table)
    if report.ok:
        console.print(f"[bold green]All {len(report.checks)} checks passed.[/bold green] "
                      f"State (certificates, keys, audit log, logs) is in {state_dir}.")
        return 0
    failed = sum(not c.ok for c in report.checks)
    console.print(f"[bold red]{failed} of {len(report.checks)} checks failed.[/bold red]")
    return 1


