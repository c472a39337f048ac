"""Prometheus metrics for one gateway process: calls per RPC and per agency, audit appends, policy and
checkpoint state, referral deadline breaches, served over HTTP when `metrics_listen` is set.

Labels carry RPC names, agency names and status words only, never identifiers or record content.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from gateway.agreement_health import standings
from gateway.audit.store import PendingEntry
from gateway.domain import AuditEvent, AuditReceipt, Clock
from gateway.errors import AgencyRejected, AgencyTimedOut, AgencyUnavailable
from gateway.service.occupancy import LoopLag, Occupancy
from gateway.service.ports import AgencyTransport, AuditSink, LookupCommand, LookupResult
from gateway.settings import SettingsError

# Hub queries take milliseconds to a few seconds; the default buckets stop at 10 s and start at 5 ms.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """The gateway's metric families in a registry of their own (no process-wide global registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rpc_requests = Counter("mash_gateway_rpc_requests", "RPCs answered, by method and gRPC status code.",
                                    ("method", "code"), registry=self.registry)
        self.rpc_duration = Histogram("mash_gateway_rpc_duration_seconds", "Time to answer an RPC, by method.",
                                      ("method",), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.agency_requests = Counter("mash_gateway_agency_requests", "Lookups sent to agency nodes, by agency "
                                       "and outcome (ok, unavailable, timed_out, rejected).",
                                       ("agency", "status"), registry=self.registry)
        self.agency_duration = Histogram("mash_gateway_agency_duration_seconds", "Time for an agency node to "
                                         "answer a lookup, by agency.", ("agency",), buckets=_LATENCY_BUCKETS,
                                         registry=self.registry)
        self.audit_append_duration = Histogram("mash_gateway_audit_append_duration_seconds",
                                               "Time for a durable audit append (one batch of entries).",
                                               buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.referral_breaches = Counter("mash_gateway_referral_breaches", "Referral deadlines breached, by MASH, "
                                         "rating and step (research, decision), counted as each is audited.",
                                         ("mash", "rating", "step"), registry=self.registry)
        self.audit_appends_waiting = 0
        self.referrals_overdue: Mapping[tuple[str, str], int] | None = None  # None until the first breach sweep

    def count_breach(self, mash: str, rating: str, step: str) -> None:
        self.referral_breaches.labels(mash, rating, step).inc()

    def set_overdue(self, counts: Mapping[tuple[str, str], int]) -> None:
        self.referrals_overdue = dict(counts)

    def watch(self, *, policy_version: Callable[[], str], last_checkpoint: Callable[[], datetime | None],
              clock: Clock) -> None:
        """Report the active policy version, audit appends in flight and checkpoint age at every scrape."""
        self.registry.register(_StateCollector(self, policy_version, last_checkpoint, clock))

    def watch_load(self, occupancy: Occupancy, lag: LoopLag) -> None:
        """Report the requests in progress and how late the event loop runs, at every scrape: the two signals
        the agency transport coalesces lookups by (docs/agency-nodes.md, "When batches form")."""
        self.registry.register(_LoadCollector(occupancy, lag))

    def watch_agreements(self, agreements: Callable[[], Mapping[str, date]], clock: Clock) -> None:
        """Report every agreement's days left and how many end within 30 and 60 days, worked out at every
        scrape from the active policy and today's date (so a reload or a new day shows without a restart)."""
        self.registry.register(_AgreementCollector(agreements, clock))

    def serve(self, listen: str) -> tuple[int, Callable[[], None]]:
        """Serve /metrics on `listen` (host:port, port 0 picks one) from a daemon thread.

        Returns the bound port and a function that stops the server.
        """
        host, _, port = listen.rpartition(":")
        if not port.isdigit():
            raise SettingsError(f"metrics_listen must be host:port, not {listen!r}")
        server, thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        return int(server.server_port), stop

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpc_requests.labels(method, code).inc()
        self.rpc_duration.labels(method).observe(seconds)


class _StateCollector(Collector):
    def __init__(self, metrics: GatewayMetrics, policy_version: Callable[[], str],
                 last_checkpoint: Callable[[], datetime | None], clock: Clock) -> None:
        self._metrics = metrics
        self._policy_version = policy_version
        self._last_checkpoint = last_checkpoint
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        yield InfoMetricFamily("mash_gateway_policy", "The policy snapshot decisions are made under.",
                               value={"version": self._policy_version()})
        yield GaugeMetricFamily("mash_gateway_audit_appends_waiting", "Audit appends started and not yet durable.",
                                value=self._metrics.audit_appends_waiting)
        overdue = self._metrics.referrals_overdue
        if overdue is not None:
            family = GaugeMetricFamily("mash_gateway_referrals_overdue", "Referrals past their running deadline at "
                                       "the last breach sweep, by MASH and rating.", labels=("mash", "rating"))
            for (mash, rating), count in sorted(overdue.items()):
                family.add_metric((mash, rating), count)
            yield family
        checkpoint = self._last_checkpoint()
        if checkpoint is not None:
            age = (self._clock.now() - checkpoint).total_seconds()
            yield GaugeMetricFamily("mash_gateway_checkpoint_age_seconds",
                                    "Seconds since the newest signed checkpoint this process has seen.", value=age)


class _LoadCollector(Collector):
    def __init__(self, occupancy: Occupancy, lag: LoopLag) -> None:
        self._occupancy = occupancy
        self._lag = lag

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("mash_gateway_requests_in_progress", "Hub requests this process is answering now.",
                                value=self._occupancy.active)
        yield GaugeMetricFamily("mash_gateway_event_loop_lag_seconds", "How late the event loop runs a timer, "
                                "smoothed over about the last half second (above 0.005: saturated).",
                                value=self._lag.lag)


class _AgreementCollector(Collector):
    def __init__(self, agreements: Callable[[], Mapping[str, date]], clock: Clock) -> None:
        self._agreements = agreements
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        today = self._clock.now().date()
        found = standings(self._agreements(), today)
        days = GaugeMetricFamily("mash_gateway_agreement_days_left", "Days from today to each information sharing "
                                 "agreement's last day: 0 on the last day, negative once it has ended.",
                                 labels=("agreement",))
        ends = GaugeMetricFamily("mash_gateway_agreement_expiry_timestamp_seconds", "When each agreement stops "
                                 "covering requests (the end of its last day, UTC), as a Unix time.",
                                 labels=("agreement",))
        for standing in found:
            days.add_metric((standing.name,), standing.days_left)
            end = datetime.combine(standing.last_day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
            ends.add_metric((standing.name,), end.timestamp())
        yield days
        yield ends
        expiring = GaugeMetricFamily("mash_gateway_agreements_expiring", "Agreements still in force whose last day "
                                     "is within 30 or 60 days.", labels=("within_days",))
        for window in (30, 60):
            expiring.add_metric((str(window),), sum(s.ends_within(window) for s in found))
        yield expiring
        yield GaugeMetricFamily("mash_gateway_agreements_ended", "Agreements of the active policy that have ended "
                                "(requests citing them are refused).", value=sum(s.ended for s in found))


class MeteredTransport:
    """An AgencyTransport that counts and times every lookup by agency and outcome."""

    def __init__(self, inner: AgencyTransport, metrics: GatewayMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def lookup(self, agency: str, command: LookupCommand, *, timeout: float) -> LookupResult:
        started = time.perf_counter()
        status = "error"  # cancelled (the caller went away) or a fault of ours
        try:
            result = await self._inner.lookup(agency, command, timeout=timeout)
            status = "ok"
            return result
        except AgencyTimedOut:
            status = "timed_out"
            raise
        except AgencyRejected:
            status = "rejected"
            raise
        except AgencyUnavailable:
            status = "unavailable"
            raise
        finally:
            self._metrics.agency_requests.labels(agency, status).inc()
            self._metrics.agency_duration.labels(agency).observe(time.perf_counter() - started)

    async def close(self) -> None:
        await self._inner.close()


class MeteredAuditSink:
    """An AuditSink that times each durable append and counts the appends in flight."""

    def __init__(self, inner: AuditSink, metrics: GatewayMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def prepare(self, event: AuditEvent) -> AuditEvent | PendingEntry:
        return self._inner.prepare(event)

    async def append(self, events: Sequence[AuditEvent | PendingEntry]) -> list[AuditReceipt]:
        started = time.perf_counter()
        self._metrics.audit_appends_waiting += 1
        try:
            return await self._inner.append(events)
        finally:
            self._metrics.audit_appends_waiting -= 1
            self._metrics.audit_append_duration.observe(time.perf_counter() - started)
