"""Agreement expiry as an operational signal: an expected event to renew ahead of, never a fault.

The gRPC health service reports a named entry, `mash.gateway.v1.Agreements`: SERVING while no information
sharing agreement of the active policy that is still in force ends within the warning window (60 days),
NOT_SERVING while one does, until it is renewed (a policy with a later last day is activated) or ends. Nothing
else depends on it: the server ("") and every gRPC service stay SERVING, so a load balancer checking them keeps
routing to the gateway, and once an agreement has ended the requests citing it are refused one by one. An ended
agreement is history (policies keep them so that old audit entries can be read); the metrics count it, and
`policy check` warns about it. Which agreement and how many days are left are in the metrics, in
`PolicyService.GetPolicyVersion` and in `policy check`. The state is worked out again whenever the policy version
or the date changes, so a reload or midnight is enough; no restart is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

import structlog
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from gateway.domain import Clock
from gateway.policy.checks import EXPIRY_WARNINGS
from gateway.tasks import cancel

log = structlog.get_logger("gateway.agreements")

AGREEMENTS_HEALTH = "mash.gateway.v1.Agreements"
"""The health-check name whose status says whether an agreement ends within the warning window."""

WARNING_DAYS = max(w.days for w in EXPIRY_WARNINGS)
"""The widest warning window `policy check` uses (60 days); health and metrics warn from the same day."""

AGREEMENT_CHECK_INTERVAL = 5.0
"""Seconds between looks at the policy version and the date (each look is a comparison of two values)."""


@dataclass(frozen=True, slots=True)
class AgreementStanding:
    """One agreement's last day and the days left from today: 0 on its last day, negative once it has ended."""

    name: str
    last_day: date
    days_left: int

    @property
    def ended(self) -> bool:
        return self.days_left < 0

    def ends_within(self, days: int) -> bool:
        """Still in force, and its last day is within `days` days."""
        return 0 <= self.days_left <= days


def standings(agreements: Mapping[str, date], today: date) -> list[AgreementStanding]:
    """Every agreement's standing on `today`, soonest ending first."""
    return sorted((AgreementStanding(name, last_day, (last_day - today).days) for name, last_day in agreements.items()),
                  key=lambda s: (s.last_day, s.name))


def ending_soon(found: list[AgreementStanding], days: int = WARNING_DAYS) -> list[AgreementStanding]:
    """The agreements still in force whose last day is within `days` days."""
    return [s for s in found if s.ends_within(days)]


class AgreementHealth:
    """Publishes AGREEMENTS_HEALTH on the health service, and logs each agreement as it enters the warning
    window and as it ends (agreement names and dates only)."""

    def __init__(self, agreements: Callable[[], Mapping[str, date]], version: Callable[[], str], clock: Clock,
                 health: HealthServicer, interval: float = AGREEMENT_CHECK_INTERVAL) -> None:
        self._agreements = agreements
        self._version = version
        self._clock = clock
        self._health = health
        self._interval = interval
        self._seen: tuple[str, date] | None = None
        self._reported: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="agreement-health")

    async def refresh(self) -> bool:
        """Publish the state if the policy version or the date changed since last time; True if published."""
        today = self._clock.now().date()
        seen = (self._version(), today)
        if seen == self._seen:
            return False
        self._seen = seen
        found = standings(self._agreements(), today)
        ending = ending_soon(found)
        await self._health.set(AGREEMENTS_HEALTH, health_pb2.HealthCheckResponse.NOT_SERVING if ending
                               else health_pb2.HealthCheckResponse.SERVING)
        # Logged once each: entering the window, and ending (if that was recent, not long-past history).
        noted = ending + [s for s in found if s.ended and s.days_left >= -WARNING_DAYS]
        reported = {s.name: "ended" if s.ended else "ending" for s in noted}
        for s in noted:
            if self._reported.get(s.name) != reported[s.name]:
                if s.ended:
                    log.warning("agreement ended; requests citing it are refused", agreement=s.name,
                                last_day=s.last_day.isoformat())
                else:
                    log.warning("agreement ends soon; renew it or requests citing it will be refused",
                                agreement=s.name, last_day=s.last_day.isoformat(), days_left=s.days_left)
        self._reported = reported
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:  # a fault here must not stop later checks
                log.exception("agreement health check failed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
