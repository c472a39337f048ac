"""`mash-gateway dev up|down`: a whole development partnership from a policy directory, as background processes.

`up` issues the certificates and keys it needs, starts one simulated node per record-holding agency the
policy declares, writes a `gateway.toml` for them and starts `mash-gateway serve` with it; `down` stops
every process `up` started. Everything lives in one state directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from gateway.errors import PolicyError
from gateway.keys import KeyPaths, init_keys
from gateway.partnership import load_plan
from gateway.pki import PkiLayout, init_pki, issue_client, issue_node

RUN_FILE = "dev.json"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="start or stop a development partnership (every node and the gateway)")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True, metavar="ACTION")
    up = dev_sub.add_parser("up", help="start a node per agency of the policy and a gateway, in the background")
    _state_arg(up)
    up.add_argument("--policy-dir", type=Path, default=Path("policies"),
                    help="policy directory declaring the agencies (default: policies)")
    up.add_argument("--listen", default="127.0.0.1:8443",
                    help="gateway address (default: 127.0.0.1:8443; port 0 picks a free one)")
    up.add_argument("--people", type=int, default=2000, help="size of the simulated population")
    up.add_argument("--policy-releases", type=Path, metavar="DIR",
                    help="a policy release store (`policy propose|approve|release`) for the gateway, so the "
                         "console's release page and GetPolicyRelease show its proposals; needs "
                         "--policy-signers. The gateway still activates --policy-dir as it changes "
                         "(development policy mode). Default: no release store")
    up.add_argument("--policy-signers", type=Path, metavar="FILE",
                    help="JSON file of the policy administrators' and IG officers' public keys that sign the "
                         "releases of --policy-releases")
    up.set_defaults(func=run_up)
    down = dev_sub.add_parser("down", help="stop the partnership `dev up` started")
    _state_arg(down)
    down.set_defaults(func=run_down)


def _state_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=Path("state/dev"),
                        help="certificates, keys, audit log, logs and gateway.toml (default: state/dev)")


@dataclass(frozen=True, slots=True)
class _Process:
    name: str
    pid: int
    argv: tuple[str, ...]


def _start(name: str, argv: list[str], log_path: Path) -> tuple[_Process, subprocess.Popen[bytes]]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        # A session of its own, so the process outlives `dev up` and a Ctrl-C in this terminal.
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603 - our own interpreter and modules, no shell
                                 start_new_session=True)
    return _Process(name, popen.pid, tuple(argv)), popen


def _wait_for(popen: subprocess.Popen[bytes], log_path: Path, found: str) -> str:
    """The first log line containing `found`; RuntimeError if the process exits or takes too long."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines(keepends=True):
            if found in line and line.endswith("\n"):  # a whole line, not one still being written
                return line.strip()
        if popen.poll() is not None:
            raise RuntimeError(f"exited with status {popen.returncode}; see {log_path}")
        time.sleep(0.1)
    raise RuntimeError(f"did not start within {_START_TIMEOUT:.0f} s; see {log_path}")


def _relative(path: Path, state_dir: Path) -> str:
    """`path` as a TOML string relative to the state directory (where `gateway.toml` is written)."""
    return json.dumps(os.path.relpath(path.resolve(), state_dir.resolve()))


def _gateway_toml(state_dir: Path, policy_dir: Path, listen: str, endpoints: dict[str, str],
                  releases: tuple[Path, Path] | None = None) -> str:
    lines = [
        "# Written by `mash-gateway dev up` for the development partnership; paths are relative to this file.",
        "[gateway]",
        'state_dir = "."',
        f"policy_dir = {_relative(policy_dir, state_dir)}",
        'pki_dir = "pki"',
        f"listen = {json.dumps(listen)}",
        "reflection = true",
        *([f"policy_releases = {_relative(releases[0], state_dir)}",
           f"policy_signers = {_relative(releases[1], state_dir)}"] if releases else []),
        "",
        "[agencies]",
        *(f"{agency} = {json.dumps(address)}" for agency, address in endpoints.items()),
    ]
    return "\n".join(lines) + "\n"


def run_up(args: argparse.Namespace) -> int:
    console = Console()
    state_dir: Path = args.state_dir
    if (args.policy_releases is None) != (args.policy_signers is None):
        console.print("[red]error:[/red] --policy-releases and --policy-signers go together: the gateway checks "
                      "the releases' signatures against the signers file")
        return 2
    releases = (args.policy_releases, args.policy_signers) if args.policy_releases else None
    if _running(state_dir):
        console.print(f"[red]error:[/red] a partnership from {state_dir} is already running; "
                      f"run `mash-gateway dev down --state-dir {state_dir}` first")
        return 2
    try:
        plan = load_plan(args.policy_dir)
    except PolicyError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    pki = PkiLayout(state_dir / "pki")
    if not pki.ca_cert.exists():
        init_pki(pki.root, nodes=plan.record_holders, clients=plan.clients)
    # An agency or client system added to the policy since the last run gets its certificate now.
    for agency in plan.record_holders:
        if not pki.node(agency)[0].exists():
            issue_node(pki, agency)
    for client in plan.clients:
        if not pki.client_for(client)[0].exists():
            issue_client(pki, client)
    init_keys(KeyPaths(state_dir / "keys"))
    started: list[_Process] = []
    try:
        nodes = {}
        for agency in plan.record_holders:  # all at once: each node takes a moment to build its data
            log_path = state_dir / "logs" / f"{agency}.log"
            process, popen = _start(agency, [
                sys.executable, "-m", "agency_stubs", "--agency", agency, "--policy-dir", str(args.policy_dir),
                "--tls-dir", str(pki.root), "--people", str(args.people),
            ], log_path)
            started.append(process)
            nodes[agency] = (popen, log_path)
        endpoints = {}
        for agency, (popen, log_path) in nodes.items():
            try:
                endpoints[agency] = _wait_for(popen, log_path, "node listening on").rsplit(" ", 1)[-1]
            except RuntimeError as exc:
                raise RuntimeError(f"the {agency} node {exc}") from exc
        config = state_dir / "gateway.toml"
        config.write_text(_gateway_toml(state_dir, args.policy_dir, args.listen, endpoints, releases))
        log_path = state_dir / "logs" / "gateway.log"
        process, popen = _start("gateway", [sys.executable, "-m", "gateway.cli.main", "serve", "--config",
                                            str(config)], log_path)
        started.append(process)
        try:
            port = json.loads(_wait_for(popen, log_path, '"gateway serving"'))["port"]
        except RuntimeError as exc:
            raise RuntimeError(f"the gateway {exc}") from exc
    except (RuntimeError, OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        _stop(started)
        return 1
    host = args.listen.rsplit(":", 1)[0]
    (state_dir / RUN_FILE).write_text(json.dumps({
        "gateway": f"{host}:{port}",
        "processes": [{"name": p.name, "pid": p.pid, "argv": list(p.argv)} for p in started],
    }, indent=2) + "\n")
    console.print(f"Gateway on [bold]{host}:{port}[/bold] (settings: {config}), "
                  f"{len(endpoints)} agency nodes: {', '.join(endpoints)}.")
    console.print(f"Certificates in {pki.root}, logs in {state_dir / 'logs'}. "
                  f"Stop with `mash-gateway dev down --state-dir {state_dir}`.")
    return 0


def _read_run_file(state_dir: Path) -> list[_Process]:
    try:
        doc = json.loads((state_dir / RUN_FILE).read_text())
        return [_Process(p["name"], int(p["pid"]), tuple(p["argv"])) for p in doc["processes"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _alive(process: _Process) -> bool:
    """True while the process `dev up` started still runs (a recycled pid running something else is not it)."""
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    try:
        os.kill(process.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if cmdline.exists():
        try:
            return cmdline.read_bytes().split(b"\0")[:-1] == [a.encode() for a in process.argv]
        except OSError:
            return False
    return True


def _running(state_dir: Path) -> bool:
    return any(_alive(p) for p in _read_run_file(state_dir))


def _stop(processes: list[_Process]) -> list[str]:
    """SIGTERM each process, gateway first; SIGKILL what has not stopped in time. Returns the names stopped."""
    stopped = []
    for process in reversed(processes):
        if not _alive(process):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while _alive(process) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(process.pid, os.WNOHANG)  # reap it when `dev up` in this process started it
            time.sleep(0.05)
        if _alive(process):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
        stopped.append(process.name)
    return stopped


def run_down(args: argparse.Namespace) -> int:
    console = Console()
    run_file = args.state_dir / RUN_FILE
    processes = _read_run_file(args.state_dir)
    stopped = _stop(processes)
    run_file.unlink(missing_ok=True)
    if stopped:
        console.print(f"Stopped {', '.join(reversed(stopped))}.")
    else:
        console.print(f"Nothing from {args.state_dir} was running.")
    return 0
