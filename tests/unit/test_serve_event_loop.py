"""`serve` runs the gateway on the event loop its settings name: uvloop where installed, asyncio on request."""

from __future__ import annotations

import asyncio
import sys

import pytest

from gateway.cli.serve_cmd import _run
from gateway.errors import GatewayError


async def _loop_module(seen: list[str]) -> None:
    seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not installed on Windows")
@pytest.mark.parametrize(("choice", "expected"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_the_gateway_runs_on_the_event_loop_its_settings_name(choice: str, expected: str) -> None:
    seen: list[str] = []
    _run(_loop_module(seen), choice)
    assert seen == [expected]


def test_without_uvloop_auto_falls_back_to_asyncio_and_uvloop_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now raises ImportError
    seen: list[str] = []
    _run(_loop_module(seen), "auto")
    assert seen == ["asyncio"]
    with pytest.raises(GatewayError, match='event_loop = "uvloop", but uvloop is not installed'):
        _run(_loop_module(seen), "uvloop")
    assert seen == ["asyncio"]  # the coroutine was closed, never run
