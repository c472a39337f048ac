"""The gateway against a bare fan-out broker, side by side, every process on its own.

Agency nodes (`bench.node_host`), the gateway (`mash-gateway serve`), the bare broker (`bench.bare_broker`)
and the closed-loop clients (`bench.load_client`) each run in separate processes over mutual TLS with the
same certificates. For every node latency, rounds alternate which of the two is measured first, so load
from elsewhere on the machine falls on both; the figure that matters is the ratio gateway / broker.

`python -m bench.bench_baseline` runs the default matrix (one node per record holder, 7; latency 0 and
3 ± 1 ms; concurrency 1, 16, 64; two rounds of 4 s); `--full` runs three rounds of 8 s; `--soak 300` runs
one steady load instead. `--pin` gives the server under test half the CPUs and the nodes and clients the
other half, as a deployment would (agency nodes run on their agencies' own machines).
Prints a table and one JSON line; `--out FILE` also writes the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from bench.boroughs import borough_names, generate, home_agency
from gateway.keys import KeyPaths, init_keys
from gateway.logs import configure_logging
from gateway.partnership import load_plan
from gateway.pki import init_pki

ROOT = Path(__file__).resolve().parents[1]
PLAN = load_plan(ROOT / "policies")
AGENCIES = PLAN.record_holders  # the agencies the shipped policy declares as holding records
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    """A child process we started, with the CPU and memory the kernel has counted for it."""

    name: str
    popen: subprocess.Popen[str]

    def pids(self) -> list[int]:
        """This process and its children (the workers of `serve --workers N`), and theirs."""
        found, todo = [], [self.popen.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime, every thread
        return total / TICKS

    def _memory_mib(self, key: str) -> float:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(key):
                        total += int(line.split()[1])
        return round(total / 1024, 1)

    def peak_rss_mib(self) -> float:
        """Summed over the process tree (each process's own peak)."""
        return self._memory_mib("VmHWM:")

    def rss_mib(self) -> float:
        return self._memory_mib("VmRSS:")

    def stop(self) -> None:
        if self.popen.poll() is None:
            assert self.popen.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.popen.stdin.close()
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


# With `--pin`: the CPUs of the servers under test (gateway, broker) and of everything else (nodes, clients).
PINNED: dict[str, set[int]] = {}


def _pin(role: str) -> Callable[[], None] | None:
    """A pre-exec hook that keeps a child (and every thread it starts) on its role's CPUs, if pinning is on."""
    cpus = PINNED.get(role)
    return None if cpus is None else lambda: os.sched_setaffinity(0, cpus)


def _spawn(name: str, *argv: str, stderr: IO[str] | None = None, role: str = "rest") -> Proc:
    popen = subprocess.Popen([sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=stderr, text=True, cwd=ROOT, preexec_fn=_pin(role))
    return Proc(name, popen)


def _first_line(proc: Proc) -> str:
    assert proc.popen.stdout is not None
    line = proc.popen.stdout.readline()
    if not line:
        raise RuntimeError(f"{proc.name} exited before it was ready (code {proc.popen.wait()})")
    return line.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening_sockets(port: int) -> int:
    """How many sockets listen on loopback `port` (one per worker process sharing it with SO_REUSEPORT);
    gRPC may listen on an IPv6 socket with the IPv4-mapped address."""
    locals_ = {f"0100007F:{port:04X}", f"0000000000000000FFFF00000100007F:{port:04X}"}
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            count += fields[1] in locals_ and fields[3] == "0A"  # state 0A: LISTEN
    return count


def _wait_listening(proc: Proc, port: int, timeout: float = 120.0, sockets: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with code {proc.popen.returncode}")
        if _listening_sockets(port) >= sockets:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not listen on {port} within {timeout} s")


def node_names(count: int) -> list[str]:
    """One node per record holder of the shipped policy per borough; one borough is just the holders' names
    (the shipped policy), more are the borough agencies of `bench.boroughs` (``police_b07``)."""
    if count % len(AGENCIES):
        raise ValueError(f"node count must be a multiple of {len(AGENCIES)}")
    boroughs = count // len(AGENCIES)
    if boroughs == 1:
        return list(AGENCIES)
    return borough_names(AGENCIES, boroughs)


def policy_dir(tmp: Path, nodes: int) -> Path:
    """The shipped policy for one node per record holder; for more, a generated many-borough partnership (made once)."""
    if nodes == len(AGENCIES):
        return ROOT / "policies"
    target = tmp / f"policies-{nodes}"
    if not target.exists():
        generate(ROOT / "policies", target, nodes // len(AGENCIES))
    return target


@dataclass
class Running:
    """The servers under test (gateway, bare) with their addresses; the gateway's settings file."""

    servers: dict[str, Proc]
    addresses: dict[str, str]
    config: Path | None = None


@contextlib.contextmanager
def partnership(tmp: Path, *, nodes: int, latency: float, jitter: float, gateway: bool,
                audit_store: str = "", log: IO[str] | None = None, workers: int = 1,
                postgres: str = "", node_calls: str = "stream", broker_loop: str = "asyncio") -> Iterator[Running]:
    """Start the nodes (one process per agency), the gateway and the broker; stop them all on exit.

    With `postgres` (a server URL) the gateway's audit, review and referral stores live in a fresh schema
    there, dropped afterwards; `workers` > 1 runs `serve --workers` (which needs that). `node_calls` "batch"
    starts nodes that do not offer LookupStream.
    """
    pki = tmp / "pki"
    started: list[Proc] = []
    started_schemas: list[str] = []
    try:
        names = node_names(nodes)
        endpoints: dict[str, str] = {}
        for agency in AGENCIES:  # one process per agency; 32 boroughs put 32 nodes in each
            hosted = [n for n in names if home_agency(n) == agency]
            proc = _spawn(f"nodes:{agency}", "-m", "bench.node_host", "--pki", str(pki), "--agencies",
                          ",".join(hosted), "--latency", str(latency), "--jitter", str(jitter),
                          "--calls", node_calls, stderr=log)
            started.append(proc)
        for proc in started:
            endpoints.update(json.loads(_first_line(proc)))
        running = Running({}, {})
        broker_port = _free_port()
        broker = _spawn("bare broker", "-m", "bench.bare_broker", "--pki", str(pki), "--listen",
                        f"127.0.0.1:{broker_port}", "--endpoints", json.dumps(endpoints),
                        "--event-loop", broker_loop, stderr=log, role="server")
        started.append(broker)
        _first_line(broker)
        running.servers["bare"], running.addresses["bare"] = broker, f"127.0.0.1:{broker_port}"
        if gateway:
            port = _free_port()
            stores: list[str] = []
            if postgres:
                schema = fresh_schema(postgres)
                started_schemas.append(schema)
                url = f"{postgres}?options=-csearch_path%3D{schema}"
                stores = [f'{store} = "{url}"' for store in ("audit_store", "review_store", "referral_store")]
            elif audit_store:
                stores = [f'audit_store = "{audit_store}"']
            config = tmp / f"gateway-{port}.toml"
            config.write_text("\n".join([
                "[gateway]",
                f'state_dir = "{tmp / "state"}"', f'policy_dir = "{policy_dir(tmp, nodes)}"', f'pki_dir = "{pki}"',
                f'listen = "127.0.0.1:{port}"', *stores, 'log_level = "warning"',
                "checkpoint_interval = 60.0", "policy_watch_interval = 3600.0", "",
                "[agencies]", *(f'"{name}" = "{address}"' for name, address in endpoints.items()), "",
            ]))
            gw = _spawn("gateway", "-m", "gateway.cli.main", "serve", "--config", str(config),
                        *(["--workers", str(workers)] if workers > 1 else []), stderr=log, role="server")
            started.append(gw)
            _wait_listening(gw, port, sockets=workers)
            running.servers["gateway"], running.addresses["gateway"] = gw, f"127.0.0.1:{port}"
            running.config = config
        yield running
    finally:
        for proc in reversed(started):
            proc.stop()
        for schema in started_schemas:
            drop_schema(postgres, schema)


def fresh_schema(postgres: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return name


def drop_schema(postgres: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def load(pki: Path, target: str, concurrency: int, seconds: float, channels: int = 1) -> dict[str, Any]:
    """Run one closed-loop client process against `target` and return its figures."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.load_client", "--pki", str(pki), "--target", target,
         "--concurrency", str(concurrency), "--seconds", str(seconds), "--channels", str(channels)],
        capture_output=True, text=True, cwd=ROOT, check=False, preexec_fn=_pin("rest"),
    )
    if out.returncode != 0:
        raise RuntimeError(f"load client failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(server: Proc, pki: Path, target: str, concurrency: int, seconds: float,
            channels: int = 1) -> dict[str, Any]:
    before = server.cpu_seconds()
    result = load(pki, target, concurrency, seconds, channels)
    # The client's warm-up queries fall outside its timed window but inside this CPU window; count them.
    cpu = server.cpu_seconds() - before
    result["cpu_ms_per_query"] = round(cpu * 1000 / max(1, result["queries"] + result.get("warmup", 20)), 3)
    return result


def run_matrix(args: argparse.Namespace, tmp: Path, log: IO[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for workers, latency, calls in [(w, lat, c) for w in args.workers for lat in args.latency
                                    for c in args.node_calls]:
        jitter = args.jitter if latency > 0 else 0.0
        gateway = True
        with partnership(tmp, nodes=args.nodes, latency=latency, jitter=jitter, gateway=gateway,
                         audit_store=args.audit_store, log=log, workers=workers,
                         postgres=args.postgres, node_calls=calls, broker_loop=args.broker_loop) as running:
            targets = ["gateway", "bare"] if gateway else ["bare"]
            runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
            for round_no in range(args.rounds):
                for n, concurrency in enumerate(args.concurrency):
                    order = targets if (round_no + n) % 2 == 0 else list(reversed(targets))
                    for target in order:
                        result = measure(running.servers[target], tmp / "pki", running.addresses[target],
                                         concurrency, args.seconds, args.channels)
                        runs.setdefault((concurrency, target), []).append(result)
                        print(f"  workers {workers}, latency {latency * 1000:g} ms, {calls}, round {round_no + 1}, "
                              f"concurrency {concurrency}, {target}: {result['queries_per_s']} q/s, "
                              f"p50 {result['p50_ms']} ms",
                              file=sys.stderr, flush=True)
            peak = {t: running.servers[t].peak_rss_mib() for t in targets}
            for concurrency in args.concurrency:
                row: dict[str, Any] = {"nodes": args.nodes, "workers": workers, "channels": args.channels,
                                       "audit_store": "postgresql" if args.postgres else
                                       (args.audit_store.split(":", 1)[0] or "sqlite"),
                                       "latency_ms": latency * 1000, "jitter_ms": jitter * 1000,
                                       "node_calls": calls, "broker_loop": args.broker_loop, "pinned": args.pin,
                                       "concurrency": concurrency}
                for target in targets:
                    rs = runs[(concurrency, target)]
                    row[target] = {
                        "queries_per_s": [r["queries_per_s"] for r in rs],
                        **{key: round(statistics.median(r[key] for r in rs), 2)
                           for key in ("p50_ms", "p95_ms", "p99_ms", "cpu_ms_per_query")},
                        "errors": sum(sum(r["errors"].values()) for r in rs),
                        "peak_rss_mib": peak[target],
                    }
                if gateway:
                    pairs = list(zip(runs[(concurrency, "gateway")], runs[(concurrency, "bare")], strict=True))
                    ratios = [g["queries_per_s"] / b["queries_per_s"] for g, b in pairs]
                    row["ratio"] = round(statistics.median(ratios), 2)
                    row["p50_gap_ms"] = round(row["gateway"]["p50_ms"] - row["bare"]["p50_ms"], 2)
                    # Round by round too: a difference of medians can be luckier than most of the rounds it sums up.
                    row["p50_gaps_ms"] = [round(g["p50_ms"] - b["p50_ms"], 2) for g, b in pairs]
                    row["p50_gap_median_ms"] = round(statistics.median(row["p50_gaps_ms"]), 2)
                rows.append(row)
    return rows


def run_soak(args: argparse.Namespace, tmp: Path, log: IO[str]) -> dict[str, Any]:
    """Steady load for `--soak` seconds in one-minute slices, RSS sampled after each; then verify the log."""
    samples: list[dict[str, Any]] = []
    with partnership(tmp, nodes=len(AGENCIES), latency=args.latency[-1], jitter=args.jitter, gateway=True,
                     audit_store=args.audit_store, log=log) as running:
        gw = running.servers["gateway"]
        slices = max(2, round(args.soak / 60))
        for _ in range(slices):
            result = load(tmp / "pki", running.addresses["gateway"], args.concurrency[-1], args.soak / slices)
            result["rss_mib"] = gw.rss_mib()
            samples.append(result)
            print(f"  soak: {result['queries_per_s']} q/s, errors {result['errors']}, RSS {result['rss_mib']} MiB",
                  file=sys.stderr, flush=True)
    # A checkpoint over everything first, as an auditor would take one, so verify covers every entry.
    audit = [sys.executable, "-m", "gateway.cli.main", "audit"]
    where = ["--state-dir", str(tmp / "state"), *(["--store", args.audit_store] if args.audit_store else [])]
    subprocess.run([*audit, "checkpoint", *where], capture_output=True, text=True, cwd=ROOT, check=True)
    verify = subprocess.run([*audit, "verify", *where], capture_output=True, text=True, cwd=ROOT, check=False)
    warm = samples[0]["rss_mib"]
    return {
        "soak_seconds": args.soak, "concurrency": args.concurrency[-1], "slices": samples,
        "queries": sum(s["queries"] for s in samples),
        "errors": sum(sum(s["errors"].values()) for s in samples),
        "answers_without_receipt": sum(s["answers_without_receipt"] for s in samples),
        "rss_growth_after_warmup": round((samples[-1]["rss_mib"] - warm) / warm, 3),
        "audit_verify_exit_code": verify.returncode, "audit_verify": verify.stdout.strip()[-500:],
    }


def machine() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                            check=False).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
            "cpus": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=len(AGENCIES),
                        help=f"{len(AGENCIES)} (the shipped partnership), or a multiple: {32 * len(AGENCIES)} is 32 "
                             f"boroughs × {len(AGENCIES)} agencies")
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.003], help="node latency, seconds")
    parser.add_argument("--jitter", type=float, default=0.001, help="± seconds around a non-zero latency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per measurement")
    parser.add_argument("--full", action="store_true", help="three rounds of 8 s each")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of steady load instead of the matrix")
    parser.add_argument("--audit-store", default="", help="audit store URL for the gateway (default SQLite)")
    parser.add_argument("--postgres", default="",
                        help="PostgreSQL server URL: the gateway's stores go in a fresh schema there, dropped after")
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="gateway processes on one port (serve --workers); more than 1 needs --postgres")
    parser.add_argument("--node-calls", nargs="+", choices=["stream", "batch"], default=["stream"],
                        help="how the gateway reaches the nodes: one LookupStream call each (stream), or a call "
                             "per batch as to nodes without LookupStream (batch); several run one after another")
    parser.add_argument("--broker-loop", choices=["asyncio", "uvloop"], default="asyncio",
                        help="the bare broker's event loop (the gateway runs on uvloop where installed)")
    parser.add_argument("--pin", action="store_true",
                        help="the gateway and the broker on the first half of the CPUs, nodes and clients on the "
                             "rest, as if the server had a machine of its own (Linux)")
    parser.add_argument("--channels", type=int, default=1,
                        help="connections each load client spreads its callers over (use several with --workers)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.nodes <= 0 or args.nodes % len(AGENCIES):
        parser.error(f"--nodes must be a positive multiple of {len(AGENCIES)} (the shipped policy's record holders), "
                     f"not {args.nodes}")
    if args.full:
        args.rounds, args.seconds = 3, 8.0
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            parser.error("--pin needs at least two CPUs")
        half = len(cpus) // 2
        PINNED.update(server=set(cpus[:half]), rest=set(cpus[half:]))
    configure_logging("warning", io.StringIO())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        init_pki(tmp / "pki", nodes=node_names(args.nodes), clients=PLAN.clients)
        init_keys(KeyPaths(tmp / "state" / "keys"))
        with (tmp / "processes.log").open("w") as log:
            report: dict[str, Any] = {"benchmark": "gateway_vs_bare_broker", "machine": machine()}
            if args.soak:
                report["soak"] = run_soak(args, tmp, log)
            else:
                report["rows"] = run_matrix(args, tmp, log)
        report["machine"]["load_average_after"] = os.getloadavg()
    if "rows" in report:
        _print_table(report["rows"])
    print(json.dumps(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title="Gateway and bare broker, same nodes, same run (median of rounds)")
    for column in ("nodes", "workers", "latency ms", "node calls", "conc.", "gateway q/s", "bare q/s", "ratio",
                   "p50 gw / bare ms", "p50 gap ms, rounds' median", "p99 gw / bare ms", "CPU ms/q gw / bare",
                   "peak RSS MiB gw / bare"):
        table.add_column(column, justify="right")
    for r in rows:
        g, b = r.get("gateway"), r["bare"]
        if g is None:
            table.add_row(str(r["nodes"]), str(r["workers"]), f"{r['latency_ms']:g}", r["node_calls"],
                          str(r["concurrency"]), "-",
                          f"{statistics.median(b['queries_per_s']):.1f}", "-", f"- / {b['p50_ms']}", "-",
                          f"- / {b['p99_ms']}", f"- / {b['cpu_ms_per_query']}", f"- / {b['peak_rss_mib']}")
            continue
        table.add_row(str(r["nodes"]), str(r["workers"]), f"{r['latency_ms']:g}", r["node_calls"],
                      str(r["concurrency"]), f"{statistics.median(g['queries_per_s']):.1f}",
                      f"{statistics.median(b['queries_per_s']):.1f}",
                      str(r["ratio"]), f"{g['p50_ms']} / {b['p50_ms']}", str(r["p50_gap_median_ms"]),
                      f"{g['p99_ms']} / {b['p99_ms']}",
                      f"{g['cpu_ms_per_query']} / {b['cpu_ms_per_query']}",
                      f"{g['peak_rss_mib']} / {b['peak_rss_mib']}")
    Console(width=160).print(table)


if __name__ == "__main__":
    sys.exit(main())
