"""A transport wrapper that times each node's lookups, so skipped answers can be held as long as real ones."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.service.ports import AgencyTransport, LookupCommand, LookupResult


class TimedTransport:
    """Passes lookups through and reports each answered lookup's time per agency (failures are not timed)."""

    def __init__(self, inner: AgencyTransport, observe: Callable[[str, float], None]) -> None:
        self._inner = inner
        self._observe = observe

    async def lookup(self, agency: str, command: LookupCommand, *, timeout: float) -> LookupResult:
        started = time.perf_counter()
        result = await self._inner.lookup(agency, command, timeout=timeout)
        self._observe(agency, time.perf_counter() - started)
        return result

    async def close(self) -> None:
        await self._inner.close()
