"""The `--workers` checks and the worker supervisor, with stand-in worker processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.settings import Settings, SettingsError
from gateway.workers import Supervisor, check_workers, worker_metrics_listen

PG = "postgresql://postgres@127.0.0.1:5432/test"


def _settings(tmp_path: Path, policy_dir: Path, **values: object) -> Settings:
    return Settings(state_dir=tmp_path, policy_dir=policy_dir, pki_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_one_worker_is_always_allowed_and_fewer_is_refused(tmp_path: Path, policy_dir: Path) -> None:
    check_workers(_settings(tmp_path, policy_dir), 1)
    with pytest.raises(SettingsError, match="at least 1"):
        check_workers(_settings(tmp_path, policy_dir), 0)


def test_several_workers_need_every_store_on_postgresql(tmp_path: Path, policy_dir: Path) -> None:
    """A SQLite store (the default) has one writer process; each local store is named."""
    with pytest.raises(SettingsError, match="audit_store, review_store, referral_store are not PostgreSQL"):
        check_workers(_settings(tmp_path, policy_dir, listen="127.0.0.1:8443"), 2)
    with pytest.raises(SettingsError, match="referral_store is not PostgreSQL"):
        check_workers(_settings(tmp_path, policy_dir, listen="127.0.0.1:8443", audit_store=PG, review_store=PG), 2)
    check_workers(_settings(tmp_path, policy_dir, listen="127.0.0.1:8443", audit_store=PG, review_store=PG,
                            referral_store=PG), 3)


def test_several_workers_need_a_fixed_port(tmp_path: Path, policy_dir: Path) -> None:
    """Port 0 would give every worker a port of its own instead of one shared port."""
    with pytest.raises(SettingsError, match="fixed port"):
        check_workers(_settings(tmp_path, policy_dir, audit_store=PG, review_store=PG, referral_store=PG), 2)


def test_each_worker_serves_metrics_on_the_configured_port_plus_its_index() -> None:
    assert worker_metrics_listen("127.0.0.1:9100", 2) == "127.0.0.1:9102"
    assert worker_metrics_listen("127.0.0.1:0", 2) == "127.0.0.1:0"
    assert worker_metrics_listen("", 1) == ""


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_a_worker_that_cannot_start_stops_the_others_and_the_supervisor_exits_2() -> None:
    """Exit code 2 means a start-up error: restarting would fail the same way, so all stop at once."""
    commands = {0: _python("import time; time.sleep(60)"), 1: _python("import sys; sys.exit(2)")}
    supervisor = Supervisor(lambda index: commands[index], 2, restart_delay=0, stop_timeout=10)
    assert await supervisor.run() == 2
    assert all(proc.returncode is not None for proc in supervisor._procs.values())


async def test_a_crashing_worker_is_restarted_until_it_crashes_too_often(tmp_path: Path) -> None:
    """Each crash restarts the worker; more than `max_restarts` crashes in the window stops everything (exit 1)."""
    starts = tmp_path / "starts"
    crash = _python(f"open({str(starts)!r}, 'a').write('x'); import os; os._exit(3)")
    supervisor = Supervisor(lambda index: crash, 1, restart_delay=0, max_restarts=2, restart_window=60)
    assert await supervisor.run() == 1
    assert starts.read_text() == "xxx"  # the first start and two restarts
