"""`gateway.tasks.together`: gather, but a lone awaitable runs in the caller's own task."""

from __future__ import annotations

import asyncio

import pytest

from gateway.tasks import together


async def test_a_lone_awaitable_runs_in_the_calling_task_before_the_next_turn_of_the_loop() -> None:
    """Its first step happens before anything already scheduled runs: a lookup it makes leaves in this turn."""
    order: list[str] = []
    outer = asyncio.current_task()

    async def step() -> asyncio.Task[object] | None:
        order.append("together's awaitable")
        return asyncio.current_task()

    asyncio.get_running_loop().call_soon(order.append, "next turn")
    assert await together([step()]) == [outer]
    assert order[0] == "together's awaitable"


async def test_several_awaitables_are_gathered_in_order_and_a_failure_is_raised() -> None:
    """More than one run as gather runs them; results keep the given order; an exception propagates."""
    async def value(n: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return n

    assert await together([value(1, 0.02), value(2, 0.0), value(3, 0.01)]) == [1, 2, 3]
    assert await together([]) == []

    async def fail() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await together([value(1, 0.0), fail()])
    with pytest.raises(ValueError, match="boom"):
        await together([fail()])
