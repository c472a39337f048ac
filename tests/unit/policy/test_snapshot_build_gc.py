"""Building a snapshot pauses the cyclic garbage collector (half the build time at 20,000 lines) and always
restores it, also when the policy is refused."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import PolicyError
from gateway.policy import load_snapshot
from gateway.policy import snapshot as snapshot_module


def test_the_collector_is_paused_during_the_build_and_running_again_after(
    policy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    assemble = snapshot_module._assemble

    def spy(*args: Any) -> Any:
        seen.append(gc.isenabled())
        return assemble(*args)

    monkeypatch.setattr(snapshot_module, "_assemble", spy)
    assert gc.isenabled()
    load_snapshot(policy_dir)
    assert seen == [False]
    assert gc.isenabled()


def test_a_refused_policy_leaves_the_collector_running(tmp_path: Path, policy_dir: Path) -> None:
    broken = tmp_path / "policies"
    shutil.copytree(policy_dir, broken)
    police = broken / "agencies" / "police.csv"
    police.write_text(police.read_text() + "p, role:nobody, agency:police\n")
    with pytest.raises(PolicyError):
        load_snapshot(broken)
    assert gc.isenabled()


def test_a_caller_that_paused_the_collector_finds_it_still_paused(policy_dir: Path) -> None:
    gc.disable()
    try:
        load_snapshot(policy_dir)
        assert not gc.isenabled()
    finally:
        gc.enable()
