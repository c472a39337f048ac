"""The event-loop lag probe that tells the agency transport the gateway is busy."""

from __future__ import annotations

import asyncio
import time

from gateway.service.occupancy import LoopLag


async def test_a_loop_kept_busy_counts_as_saturated_and_an_idle_one_recovers() -> None:
    """Blocking the loop for 30 ms at a time makes its timers fire late: the smoothed lag passes the
    threshold. Left idle, the lag decays below it again."""
    lag = LoopLag(interval=0.01, threshold=0.005)
    lag.start(asyncio.get_running_loop())
    try:
        await asyncio.sleep(0.1)
        assert not lag.saturated, f"an idle loop measured {lag.lag * 1000:.1f} ms late"
        for _ in range(15):
            time.sleep(0.03)  # noqa: ASYNC251 - the point is to block the loop
            await asyncio.sleep(0)
        assert lag.saturated, f"a blocked loop measured only {lag.lag * 1000:.1f} ms late"
        await asyncio.sleep(0.6)
        assert not lag.saturated, f"the lag did not recover: {lag.lag * 1000:.1f} ms"
    finally:
        lag.stop()


async def test_stopping_the_probe_cancels_its_timer_and_a_second_start_adds_none() -> None:
    loop = asyncio.get_running_loop()
    lag = LoopLag(interval=0.01)
    lag.start(loop)
    handle = lag._handle
    lag.start(loop)
    assert lag._handle is handle
    lag.stop()
    assert handle is not None
    assert handle.cancelled()
    assert lag._handle is None
