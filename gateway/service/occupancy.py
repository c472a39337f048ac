"""How busy the gateway is: the signals that tell the agency transport whether waiting a moment to coalesce
lookups will pay (many requests in progress, a loop that runs late) or only add latency (one request)."""

from __future__ import annotations

import asyncio
from types import TracebackType


class Occupancy:
    """A counter of requests in progress; `with occupancy:` counts one for the duration of the block."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = 0

    def __enter__(self) -> Occupancy:
        self.active += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.active -= 1


class LoopLag:
    """How late the event loop runs a timer, smoothed: a loop that runs late has more work than it can do
    at once, which is when every call not made to an agency node is time given back to the callers.

    A timer is set `interval` seconds ahead, over and over, while the probe runs; `lag` is an exponentially
    weighted average of how late it fired (about the last ten probes). `saturated` says whether that
    average exceeds `threshold`.
    """

    def __init__(self, *, interval: float = 0.05, threshold: float = 0.005) -> None:
        self.interval = interval
        self.threshold = threshold
        self.lag = 0.0
        self._handle: asyncio.TimerHandle | None = None

    @property
    def saturated(self) -> bool:
        return self.lag > self.threshold

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start probing on `loop` (the running loop); a second call while running does nothing."""
        if self._handle is None:
            due = loop.time() + self.interval
            self._handle = loop.call_at(due, self._probe, loop, due)

    def _probe(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now = loop.time()
        self.lag += (max(0.0, now - due) - self.lag) * 0.1
        self._handle = loop.call_at(now + self.interval, self._probe, loop, now + self.interval)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
