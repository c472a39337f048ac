"""Background tasks: stopping one cleanly, and the periodic sweeps the workflow and reviews run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import structlog

from gateway.errors import GatewayError

log = structlog.get_logger("gateway.tasks")
T = TypeVar("T")


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel `task`, if there is one, and wait until it has stopped."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def together(aws: Sequence[Awaitable[T]]) -> list[T]:
    """`asyncio.gather(*aws)`, except that a lone awaitable is awaited in the calling task. It then starts in
    this turn of the event loop, not the next, and its result comes back turns sooner: a request's owner-review
    existence check reaches its node's batch beside the request's own lookup, and the review step is done
    about when the answers are."""
    if len(aws) == 1:
        return [await aws[0]]
    return list(await asyncio.gather(*aws))


def read_outcome(future: asyncio.Future[Any]) -> None:
    """A done callback for a future nobody may await any more (left behind when its caller stopped early):
    reads its exception, so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


class Sweeper:
    """Runs `sweep()` every `interval` seconds until stopped.

    A GatewayError (the audit log or a store is down) means nothing was recorded by that sweep: it is logged,
    by type only, and the next sweep tries again.
    """

    name = "sweeper"

    def __init__(self, *, interval: float) -> None:
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)

    async def sweep(self) -> int:
        """One sweep; how many things it acted on."""
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except GatewayError as exc:
                log.warning("sweep failed", sweeper=self.name, error_type=type(exc).__name__)
            await asyncio.sleep(self._interval)
