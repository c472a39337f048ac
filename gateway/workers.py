"""Several gateway worker processes on one port: the checks that make it safe, and the supervisor.

`mash-gateway serve --workers N` starts N copies of the gateway (`serve --worker-index i`) that all bind the
same address with SO_REUSEPORT, so the kernel spreads incoming connections over them. They share one
PostgreSQL audit log (one gap-free order, see `gateway.audit.postgres_store`), one review store and one
referral store; a SQLite store has a single writer process, so more than one worker on it is refused.

The supervisor forwards SIGTERM/SIGINT (graceful stop) and SIGHUP (policy reload) to every worker. A worker
that exits with code 2 could not start (bad settings, unreadable credentials, unreachable store): the
supervisor stops the others and exits 2. A worker that dies otherwise is restarted after a short pause,
unless workers died more than `max_restarts` times within `restart_window` seconds: then it stops all of
them and exits 1, rather than hide a crash loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from gateway.settings import Settings, SettingsError

log = structlog.get_logger("gateway.workers")

STARTUP_FAILED = 2
"""Exit code of a `serve` process that could not start; never restarted."""


def check_workers(settings: Settings, workers: int) -> None:
    """Raise SettingsError unless `workers` gateway processes can safely serve `settings` together."""
    if workers < 1:
        raise SettingsError("--workers must be at least 1")
    if workers == 1:
        return
    stores = {"audit_store": settings.audit_store_url, "review_store": settings.review_store_url}
    if (settings.policy_dir / "workflow.yaml").exists():
        stores["referral_store"] = settings.referral_store_url
    local = [name for name, url in stores.items() if not url.startswith(("postgresql://", "postgres://"))]
    if local:
        raise SettingsError(
            f"--workers {workers} needs stores every worker shares; {', '.join(local)} "
            f"{'is' if len(local) == 1 else 'are'} not PostgreSQL (a SQLite file has one writer process and "
            "the audit log one order). Set them to postgresql://… URLs, or run one worker")
    host, _, port = settings.listen.rpartition(":")
    if not host or port in ("", "0"):
        raise SettingsError(f"--workers {workers} needs a fixed port to share; listen is {settings.listen!r}")


def worker_metrics_listen(metrics_listen: str, index: int) -> str:
    """Worker `index`'s Prometheus address: the configured port plus the index (each process has its own
    registry, so each is scraped on its own); port 0 stays 0 and an empty address stays off."""
    if not metrics_listen:
        return ""
    host, _, port = metrics_listen.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return metrics_listen
    return f"{host}:{int(port) + index}"


@dataclass
class Supervisor:
    """Runs `workers` processes made by `command(index)` until told to stop; see the module docstring."""

    command: Callable[[int], Sequence[str]]
    workers: int
    restart_delay: float = 1.0
    max_restarts: int = 5
    restart_window: float = 60.0
    stop_timeout: float = 30.0
    _procs: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    _deaths: deque[float] = field(default_factory=deque)
    _stopping: bool = False

    async def run(self) -> int:
        """Start every worker and supervise them; returns the exit code for the supervisor process."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._forward_hup)
        for index in range(self.workers):
            await self._start(index)
        log.info("workers started", workers=self.workers, pids=[p.pid for p in self._procs.values()])
        waits = {index: asyncio.create_task(proc.wait()) for index, proc in self._procs.items()}
        stopper = asyncio.create_task(stop.wait())
        code: int | None = None
        try:
            while code is None:
                done, _ = await asyncio.wait([stopper, *waits.values()], return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    log.info("workers stopping")
                    break
                for index, task in list(waits.items()):
                    if task not in done:
                        continue
                    del waits[index]
                    code = self._after_exit(index, task.result())
                    if code is not None:
                        break
                    await asyncio.sleep(self.restart_delay)
                    await self._start(index)
                    waits[index] = asyncio.create_task(self._procs[index].wait())
        finally:
            stopper.cancel()
            stopped = await self._stop_all()
            for task in waits.values():
                task.cancel()
        if code is not None:
            return code
        return 0 if stopped else 1

    def _after_exit(self, index: int, returncode: int) -> int | None:
        """What a worker's exit means: an exit code for the supervisor, or None to restart it."""
        if returncode == STARTUP_FAILED:
            log.error("worker failed to start; stopping the others", worker=index)
            return STARTUP_FAILED
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and self._deaths[0] < now - self.restart_window:
            self._deaths.popleft()
        if len(self._deaths) > self.max_restarts:
            log.error("workers keep failing; stopping", worker=index, exit_code=returncode,
                      failures=len(self._deaths), window_s=self.restart_window)
            return 1
        log.error("worker exited unexpectedly; restarting it", worker=index, exit_code=returncode)
        return None

    async def _start(self, index: int) -> None:
        argv = list(self.command(index))
        self._procs[index] = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)

    def _forward_hup(self) -> None:
        for proc in self._procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGHUP)

    async def _stop_all(self) -> bool:
        """SIGTERM every running worker, then SIGKILL any still running after `stop_timeout`; True if all
        stopped by themselves with exit code 0."""
        running = [p for p in self._procs.values() if p.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        clean = True
        for proc in running:
            try:
                clean = await asyncio.wait_for(proc.wait(), self.stop_timeout) == 0 and clean
            except TimeoutError:
                log.error("worker did not stop in time; killing it", pid=proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                clean = False
        return clean


async def watch_parent(stop: asyncio.Event, interval: float = 1.0) -> None:
    """Set `stop` once this process's parent (the supervisor) has gone: a worker never outlives it."""
    parent = os.getppid()
    while not stop.is_set():
        await asyncio.sleep(interval)
        if os.getppid() != parent:
            log.error("supervisor gone; worker stopping")
            stop.set()
