"""Evaluation limits per node: a token bucket of OPRF evaluations and a cap per fixed window.

An evaluation is one blinded element. The bucket lets a node enrol its population in a burst and then
keep up with changes; the cap bounds how many identifiers a node can turn into tokens in a day, which is
what a dictionary attack needs (docs/locator.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.errors import LimitExceeded


@dataclass(frozen=True, slots=True)
class EvaluationLimits:
    rate: float = 5_000.0  # evaluations per second, sustained
    burst: int = 250_000  # evaluations at once (two per person: 100,000 people fit)
    cap: int = 1_000_000  # evaluations per window
    window: float = 86_400.0  # seconds


@dataclass(slots=True)
class _Node:
    tokens: float
    updated: float
    window_start: float
    used: int = 0
    refused: int = 0
    audited_at: float = -math.inf


@dataclass(slots=True)
class EvaluationLimiter:
    limits: EvaluationLimits = field(default_factory=EvaluationLimits)
    clock: Callable[[], float] = time.monotonic
    _nodes: dict[str, _Node] = field(default_factory=dict)

    def remaining(self, node: str) -> int:
        state = self._state(node)
        return max(0, self.limits.cap - state.used)

    def _state(self, node: str) -> _Node:
        now = self.clock()
        state = self._nodes.get(node)
        if state is None:
            state = self._nodes[node] = _Node(float(self.limits.burst), now, now)
        if now - state.window_start >= self.limits.window:
            state.window_start, state.used = now, 0
        state.tokens = min(float(self.limits.burst), state.tokens + (now - state.updated) * self.limits.rate)
        state.updated = now
        return state

    def take(self, node: str, count: int) -> None:
        """Spend `count` evaluations of `node`, or raise LimitExceeded (nothing spent) with a retry delay."""
        state = self._state(node)
        if state.used + count > self.limits.cap:
            state.refused += 1
            retry = state.window_start + self.limits.window - self.clock()
            raise LimitExceeded(f"the node's evaluation cap of {self.limits.cap} per window is reached",
                                code="LOCATOR_EVALUATION_CAP", retry_after=max(retry, 1.0))
        if count > state.tokens:
            state.refused += 1
            wait = (count - state.tokens) / self.limits.rate if self.limits.rate > 0 else self.limits.window
            raise LimitExceeded("the node is evaluating faster than its rate allows",
                                code="LOCATOR_EVALUATION_RATE", retry_after=max(wait, 0.001))
        state.tokens -= count
        state.used += count

    def should_audit(self, node: str, every: float = 60.0) -> int | None:
        """Refusals to report if no refusal entry was written for `node` in the last `every` seconds."""
        state = self._state(node)
        now = self.clock()
        if now - state.audited_at < every:
            return None
        state.audited_at, refused, state.refused = now, state.refused, 0
        return refused
