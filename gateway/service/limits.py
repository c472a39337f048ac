"""Rate and concurrency limits per certificate identity and per user, with one audit entry per caller per window.

Each caller is counted twice: under its certificate identity (a whole case system) and under the user it
acts for (one practitioner). A call over either limit is refused before any work is done.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from gateway.errors import LimitExceeded
from gateway.service.validation import Caller


@dataclass(frozen=True, slots=True)
class Limits:
    """Calls per second (sustained), burst size and calls in flight, per identity and per user; 0 = no limit."""

    identity_rate: float = 0.0
    identity_burst: int = 0
    identity_concurrency: int = 0
    user_rate: float = 0.0
    user_burst: int = 0
    user_concurrency: int = 0
    audit_window: float = 60.0  # seconds; at most one audit entry per caller and limit in each


@dataclass(slots=True)
class _Counter:
    tokens: float
    updated: float
    in_flight: int = 0
    refused: int = 0  # refusals not yet reported in an audit entry
    audited_at: float = -math.inf


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call over a limit: the error to return and, at most once per window, the count to audit."""

    error: LimitExceeded
    audit: bool
    refused_since_last_entry: int


@dataclass(slots=True)
class CallLimiter:
    """Token buckets and in-flight counts per caller key; idle, full buckets are forgotten to bound memory."""

    limits: Limits
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    _counters: dict[tuple[str, ...], _Counter] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        lim = self.limits
        return any((lim.identity_rate, lim.identity_concurrency, lim.user_rate, lim.user_concurrency))

    def _keys(self, caller: Caller) -> list[tuple[tuple[str, ...], float, int, int]]:
        lim = self.limits
        keys: list[tuple[tuple[str, ...], float, int, int]] = [
            (("identity", caller.identity), lim.identity_rate, lim.identity_burst, lim.identity_concurrency)]
        if caller.user:
            keys.append((("user", caller.identity, caller.user), lim.user_rate, lim.user_burst, lim.user_concurrency))
        return keys

    def _counter(self, key: tuple[str, ...], burst: float, now: float) -> _Counter:
        counter = self._counters.get(key)
        if counter is None:
            if len(self._counters) >= self.max_keys:
                self._forget_idle(now)
            counter = self._counters[key] = _Counter(tokens=burst, updated=now)
        return counter

    def _forget_idle(self, now: float) -> None:
        for key, counter in list(self._counters.items()):
            if counter.in_flight == 0 and not counter.refused and now - counter.updated > self.limits.audit_window:
                del self._counters[key]

    @contextlib.contextmanager
    def hold(self, caller: Caller) -> Iterator[Refusal | None]:
        """Inside: the call counts against the caller's limits. Yields None if it may go on, else the refusal
        (the call is then not counted as in flight)."""
        now = self.clock()
        held: list[tuple[_Counter, float]] = []
        refusal: Refusal | None = None
        for key, rate, burst, concurrency in self._keys(caller):
            if not rate and not concurrency:
                continue
            size = max(burst, 1) if rate else 0
            counter = self._counter(key, size, now)
            if rate:
                counter.tokens = min(size, counter.tokens + (now - counter.updated) * rate)
            counter.updated = now
            if concurrency and counter.in_flight >= concurrency:
                refusal = self._refuse(counter, key[0], "CONCURRENCY_LIMITED",
                                       f"more than {concurrency} calls in flight", 1.0, now)
                break
            if rate and counter.tokens < 1:
                refusal = self._refuse(counter, key[0], "RATE_LIMITED", f"more than {rate:g} calls per second",
                                       (1 - counter.tokens) / rate, now)
                break
            held.append((counter, rate))
        if refusal is None:
            for counter, rate in held:
                counter.tokens -= 1 if rate else 0
                counter.in_flight += 1
        else:
            held.clear()
        try:
            yield refusal
        finally:
            for counter, _ in held:
                counter.in_flight -= 1

    def _refuse(self, counter: _Counter, scope: str, code: str, what: str, retry_after: float,
                now: float) -> Refusal:
        counter.refused += 1
        audit = now - counter.audited_at >= self.limits.audit_window
        count = counter.refused
        if audit:
            counter.audited_at, counter.refused = now, 0
        error = LimitExceeded(f"{what} for this {'user' if scope == 'user' else 'certificate'}; retry later",
                              code=code, retry_after=max(retry_after, 0.001))
        return Refusal(error, audit, count)
