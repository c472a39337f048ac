"""Wiring: `open_dependencies(settings)` and `build_server(settings, deps)` assemble one gateway."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import grpc
import grpc.aio
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from gateway.agreement_health import AgreementHealth
from gateway.analysis.service import AnalysisService, open_analysis
from gateway.analysis.servicer import AnalysisServicer
from gateway.api.agency_client import GrpcAgencyTransport, NodeCertificateCheck
from gateway.api.audit_servicer import AuditServicer
from gateway.api.calls import CallHandlers
from gateway.api.hub_servicer import HubServicer
from gateway.api.policy_servicer import PolicyServicer
from gateway.api.referral_servicer import ReferralServicer
from gateway.api.review_servicer import ReviewServicer
from gateway.api.tls import gateway_client_credentials, gateway_server_credentials
from gateway.audit import AuditLog, AuditReview, IdentifierSealer, load_public_keys, open_store
from gateway.audit.checkpoint import load_signer
from gateway.domain import AuditEvent, AuditKind, Clock, SystemClock
from gateway.generated.mash.gateway.v1 import (
    analysis_service_pb2,
    audit_service_pb2,
    hub_service_pb2,
    locator_service_pb2,
    policy_service_pb2,
    referral_service_pb2,
    review_service_pb2,
)
from gateway.keyring import Keyring
from gateway.keys import KeyPaths, load_keys
from gateway.linkage import SubjectTokeniser
from gateway.locator import EvaluationLimiter, EvaluationLimits, Locator, LocatorKeys, open_locator_store
from gateway.locator.servicer import LocatorServicer
from gateway.locator.transport import TimedTransport
from gateway.metrics import GatewayMetrics, MeteredAuditSink, MeteredTransport
from gateway.partnership import missing_endpoints
from gateway.pki.revocation import RevocationList
from gateway.policy import PolicyHolder, PolicyWatcher
from gateway.policy.holder import ReleaseGate
from gateway.policy.release import ReleaseError, Signers, current_release, release_gate, verify_release
from gateway.review.notices import OutboxNotifier, RatedDeadlines
from gateway.review.store import open_review_store
from gateway.review.sweeper import ReviewSweeper
from gateway.service.access import AccessGuard
from gateway.service.audit_reads import AuditReads
from gateway.service.limits import CallLimiter, Limits
from gateway.service.policy_admin import PolicyAdmin
from gateway.service.ports import AgencyTransport
from gateway.service.query import QueryService
from gateway.service.request_ids import RequestLedger
from gateway.settings import Settings, SettingsError
from gateway.tasks import cancel
from gateway.tracing import TracedTransport, Tracing
from gateway.witness import WitnessClient, WitnessConfig
from gateway.workflow.package import PertinentInformation
from gateway.workflow.policy import WorkflowPolicy, keeps_workflow
from gateway.workflow.research import ResearchLink
from gateway.workflow.screening import HubScreening
from gateway.workflow.sealing import ContentSealer
from gateway.workflow.service import ReferralWorkflow
from gateway.workflow.store import ReferralStore, open_referral_store
from gateway.workflow.sweeper import BreachSweeper

log = structlog.get_logger("gateway.app")

SERVICE_NAMES = (
    hub_service_pb2.DESCRIPTOR.services_by_name["HubService"].full_name,
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
    policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
    referral_service_pb2.DESCRIPTOR.services_by_name["ReferralService"].full_name,
    review_service_pb2.DESCRIPTOR.services_by_name["ReviewService"].full_name,
    locator_service_pb2.DESCRIPTOR.services_by_name["LocatorService"].full_name,
    analysis_service_pb2.DESCRIPTOR.services_by_name["AnalysisService"].full_name,
)


@dataclass
class Dependencies:
    """Everything the servicers need, opened once per gateway process."""

    policy: PolicyHolder
    audit: AuditLog
    transport: AgencyTransport
    query: QueryService
    clock: Clock
    review: AuditReview
    tokeniser: SubjectTokeniser
    watcher: PolicyWatcher | None = None
    metrics: GatewayMetrics | None = None
    unserved: tuple[str, ...] = ()  # record-holding agencies with no endpoint at start
    referrals: ReferralWorkflow | None = None  # None when the policy directory has no workflow.yaml
    referral_store: ReferralStore | None = None
    sweeper: BreachSweeper | None = None
    revocations: RevocationList | None = None
    review_sweeper: ReviewSweeper | None = None
    locator: Locator | None = None  # None without keys/locator.json or with `locator = false`: every node is asked
    analysis: AnalysisService | None = None  # None when the transport cannot reach nodes' summaries
    tracing: Tracing | None = None  # None unless `tracing_endpoint` is set
    resources: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    """Closes what `open_dependencies` opened, newest first: sweeper, referral store, watcher, transport,
    audit log, audit store."""

    async def aclose(self) -> None:
        await self.resources.aclose()


async def open_dependencies(
    settings: Settings, *, clock: Clock | None = None, transport: AgencyTransport | None = None
) -> Dependencies:
    """Open the audit log, load keys and policy, and connect to the agency nodes (inside the loop).

    If any step fails, everything opened before it is closed again before the error propagates. A given
    `transport` is closed with the rest, also when opening fails.
    """
    clock = clock or SystemClock()
    # A revocation list that cannot be read stops start-up: serving without it would un-revoke everyone.
    revocations = RevocationList(settings.crl_file, settings.pki.ca_cert) if settings.crl_file else None
    key_paths = KeyPaths(settings.keys_dir)
    keys = load_keys(key_paths)
    async with contextlib.AsyncExitStack() as resources:
        store = await open_store(settings.audit_store_url)
        resources.push_async_callback(store.close)
        witnesses = [WitnessClient(WitnessConfig(w["url"], w["vkey"])) for w in settings.witnesses]
        audit = await AuditLog.open(store, load_signer(key_paths.checkpoint), clock,
                                    checkpoint_interval=settings.checkpoint_interval,
                                    append_timeout=settings.audit_append_timeout, witnesses=witnesses)
        resources.push_async_callback(audit.aclose)
        on_event = _audit_sink(audit)
        policy_dir, gate = settings.policy_dir, None
        release: Mapping[str, str] = {}
        if settings.policy_mode == "production":
            policy_dir, gate, release = await _production_policy(settings, on_event, clock)
        holder = await asyncio.to_thread(
            PolicyHolder.from_directory, policy_dir, on_event=on_event, clock=clock, release_gate=gate
        )
        if release and holder.version != release["release_id"]:
            raise ReleaseError("the release's files changed after they were verified; start again", holder.version)
        # The first activation is audited like every later one.
        await on_event(AuditEvent(
            kind=AuditKind.POLICY_ACTIVATION, occurred_at=clock.now(), policy_version=holder.version,
            reason=f"activated {len(holder.current.lines)} policy lines", details={"trigger": "startup", **release},
        ))
        unserved = missing_endpoints(holder.current.agencies, settings.agency_endpoints)
        if unserved:
            log.warning("agencies without an endpoint will answer UNAVAILABLE", agencies=list(unserved))
        if transport is None:
            transport = GrpcAgencyTransport.connect(
                settings.agency_endpoints, gateway_client_credentials(settings.pki),
                trust_domain=settings.trust_domain, max_answer_bytes=settings.agency_max_answer_bytes,
                node_check=None if revocations is None else NodeCertificateCheck(
                    settings.pki, revocations, settings.trust_domain),
            )
        resources.push_async_callback(transport.close)
        metrics = None
        if settings.metrics_listen:
            metrics = GatewayMetrics()
            metrics.watch(policy_version=lambda: holder.version, last_checkpoint=lambda: _checkpoint_time(audit),
                          clock=clock)
            metrics.watch_agreements(lambda: _agreement_ends(holder), clock)
            if isinstance(transport, GrpcAgencyTransport):
                metrics.watch_load(transport.occupancy, transport.lag)
        tokeniser = SubjectTokeniser(keys.subject_token)
        review_store = await open_review_store(settings.review_store_url)
        resources.push_async_callback(review_store.close)
        locator = await _open_locator(settings, keys.locator, transport, holder, audit, clock, resources)
        lookups = transport if locator is None else TimedTransport(transport, locator.observe)
        tracing = None
        if settings.tracing_endpoint:
            tracing = Tracing.open(settings.tracing_endpoint)
            resources.push_async_callback(asyncio.to_thread, tracing.shutdown)
            lookups = TracedTransport(lookups, tracing)
        query = QueryService(
            policy=holder, transport=MeteredTransport(lookups, metrics) if metrics else lookups, router=locator,
            # The wrappers above hide the gRPC transport's occupancy counter: hand it over explicitly.
            occupancy=transport.occupancy if isinstance(transport, GrpcAgencyTransport) else None,
            audit=MeteredAuditSink(audit, metrics) if metrics else audit,
            tokeniser=tokeniser, sealer=IdentifierSealer(keys.sealing),
            pseudonym_keys=keys.pseudonym, clock=clock, default_timeout=settings.default_timeout,
            max_timeout=settings.max_timeout, audit_margin=settings.audit_margin, review_store=review_store,
            requests=RequestLedger(window=settings.request_id_window),
        )
        summaries: object = transport
        if tracing is not None and callable(getattr(transport, "call", None)):
            summaries = TracedTransport(transport, tracing)  # a span per Summarise and SummariseCohort call
        analysis = open_analysis(
            summaries, locator=locator, policy=holder, audit=audit, tokeniser=tokeniser,
            sealer=IdentifierSealer(keys.sealing), clock=clock, default_timeout=settings.default_timeout,
            max_timeout=settings.max_timeout, audit_margin=settings.audit_margin)
        review_sweeper = None
        if settings.breach_sweep_interval and query.reviews is not None:
            review_sweeper = ReviewSweeper(query.reviews, interval=settings.breach_sweep_interval)
            resources.push_async_callback(review_sweeper.stop)
        review = AuditReview(audit, load_public_keys(key_paths.checkpoint))
        watcher = None
        if settings.policy_watch_interval and settings.policy_mode == "development":
            watcher = PolicyWatcher(holder, settings.policy_dir, interval=settings.policy_watch_interval)
            resources.push_async_callback(watcher.stop)
        deps = Dependencies(policy=holder, audit=audit, transport=transport, query=query, clock=clock,
                            review=review, tokeniser=tokeniser, watcher=watcher, unserved=unserved,
                            metrics=metrics, revocations=revocations, locator=locator,
                            analysis=analysis, tracing=tracing)
        await _open_referrals(settings, deps, keys.sealing, resources)
        deps.resources = resources.pop_all()
        return deps


async def _open_locator(settings: Settings, ring: Keyring | None, transport: AgencyTransport, policy: PolicyHolder,
                        audit: AuditLog, clock: Clock, resources: contextlib.AsyncExitStack) -> Locator | None:
    """The locator, when it is on and its key ring exists; its index is opened here and closed with the rest."""
    if not settings.locator or ring is None:
        return None
    store = await open_locator_store(settings.locator_store_url)
    resources.push_async_callback(store.close)
    limits = EvaluationLimits(rate=settings.locator_evaluation_rate, burst=settings.locator_evaluation_burst,
                              cap=settings.locator_evaluation_cap)
    features = getattr(transport, "features", None)
    return Locator(keys=LocatorKeys(ring), store=store, audit=audit, policy=policy, clock=clock,
                   limiter=EvaluationLimiter(limits), features=features, hold_skipped=settings.locator_hold_skipped)


async def _open_referrals(settings: Settings, deps: Dependencies, sealing: Keyring,
                          resources: contextlib.AsyncExitStack) -> None:
    """The referral workflow, when the active policy has a workflow.yaml.

    The workflow policy is part of the policy: it is checked with it, read from the same files (the activated
    release in production mode), and replaced with it on every reload. While referrals run, a reload must keep
    a workflow.yaml and every MASH (referrals name theirs); otherwise the whole reload is refused.
    """
    holder = deps.policy
    if holder.current.workflow is None:
        return
    holder.require(lambda active, candidate: keeps_workflow(active.workflow, candidate.workflow))
    store = await open_referral_store(settings.referral_store_url, ContentSealer(sealing))
    resources.push_async_callback(store.close)
    deps.referral_store = store
    deps.referrals = ReferralWorkflow(store=store, workflow=lambda: _active_workflow(holder), policy=holder,
                                      audit=deps.audit, tokeniser=deps.tokeniser, clock=deps.clock,
                                      screening=HubScreening(deps.query),
                                      on_breach=deps.metrics.count_breach if deps.metrics else None)
    if deps.query.reviews is not None:
        # Review notices share the referral outbox; research under a rated referral sets review deadlines.
        referrals, holder = deps.referrals, deps.policy
        deps.query.reviews.use_notifier(OutboxNotifier(
            referrals.post, lambda: holder.current, lambda: referrals.workflow.receivers, deps.clock))
        deps.query.reviews.use_referrals(RatedDeadlines(store, lambda: referrals.workflow))
        resources.push_async_callback(deps.query.reviews.drain)  # notices still being written, before the close
    if settings.breach_sweep_interval:
        deps.sweeper = BreachSweeper(deps.referrals, interval=settings.breach_sweep_interval,
                                     on_overdue=deps.metrics.set_overdue if deps.metrics else None)
        resources.push_async_callback(deps.sweeper.stop)


def _agreement_ends(holder: PolicyHolder) -> dict[str, date]:
    """Each agreement of the active policy and its last day."""
    return {a.name: a.valid_until for a in holder.current.vocabulary.agreements.values()}


def _active_workflow(holder: PolicyHolder) -> WorkflowPolicy:
    workflow = holder.current.workflow
    assert workflow is not None  # keeps_workflow refuses a policy without one while referrals run
    return workflow


def _checkpoint_time(audit: AuditLog) -> datetime | None:
    checkpoint = audit.last_checkpoint
    return checkpoint.timestamp if checkpoint is not None else None


async def _production_policy(
    settings: Settings, on_event: Callable[[AuditEvent], Awaitable[None]], clock: Clock
) -> tuple[Path, ReleaseGate, Mapping[str, str]]:
    """The verified current release to start from, and the gate every later reload goes through.

    A release that does not verify is audited as refused and the gateway does not start: in production there
    is no unsigned policy to fall back to.
    """
    if settings.policy_releases is None or settings.policy_signers is None:
        raise SettingsError("policy_mode = \"production\" needs policy_releases and policy_signers")
    store, signers = settings.policy_releases, settings.policy_signers
    try:
        verified = await asyncio.to_thread(
            lambda: verify_release(store, current_release(store), Signers.load(signers), None))
    except ReleaseError as exc:
        await on_event(AuditEvent(kind=AuditKind.POLICY_REJECTED, occurred_at=clock.now(),
                                  policy_version=exc.version, reason=f"refused: {exc}",
                                  details={"trigger": "startup"}))
        raise
    return verified.directory, release_gate(store, signers), verified.audit_details()


def _audit_sink(audit: AuditLog) -> Callable[[AuditEvent], Awaitable[None]]:
    """Policy activations and refusals go to the audit log first, then to the application log."""

    async def on_event(event: AuditEvent) -> None:
        await audit.append([event])
        if event.kind is AuditKind.POLICY_REJECTED:
            log.warning("policy refused; the last good policy keeps serving", attempted_version=event.policy_version,
                        findings=event.reason, trigger=event.details.get("trigger", ""))
        else:
            log.info("policy activated", policy_version=event.policy_version, reason=event.reason,
                     trigger=event.details.get("trigger", ""))

    return on_event


AUDIT_PROBE_INTERVAL = 1.0
"""Seconds between checks of an audit store that failed an append, until it takes writes again."""


class AuditHealth:
    """Reports every service NOT_SERVING on the health service while audit appends fail, and probes the
    store until it takes writes again: calls fail closed meanwhile, and a load balancer can steer away."""

    def __init__(self, audit: AuditLog, health: HealthServicer, interval: float = AUDIT_PROBE_INTERVAL, *,
                 held_down: frozenset[str] = frozenset()) -> None:
        self._audit = audit
        self._health = health
        self._interval = interval
        self._held_down = held_down  # services NOT_SERVING for another reason, whatever the audit store does
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        audit.on_availability(lambda _available: self._wake.set())

    async def start(self) -> None:
        await self._publish()
        self._task = asyncio.create_task(self._run(), name="audit-health")

    async def _publish(self) -> bool:
        available = self._audit.available
        for service in ("", *SERVICE_NAMES):
            serving = available and service not in self._held_down
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING if serving
                                   else health_pb2.HealthCheckResponse.NOT_SERVING)
        return available

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self._publish():
                await asyncio.sleep(self._interval)
                await self._audit.probe()
                self._wake.set()  # publish whatever the probe found, and probe again if still down

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)


class GatewayServer:
    """A running (or ready to run) gateway: a grpc.aio server plus its dependencies."""

    def __init__(self, server: grpc.aio.Server, port: int, deps: Dependencies,
                 health_servicer: HealthServicer, *, require_all_agencies: bool = False,
                 metrics_listen: str = "", audit_probe_interval: float = AUDIT_PROBE_INTERVAL) -> None:
        self.server = server
        self.port = port
        self.deps = deps
        self._health = health_servicer
        self._metrics_listen = metrics_listen
        self.metrics_port: int | None = None
        self._stop_metrics: Callable[[], None] | None = None
        # A hub that must reach every agency but has no endpoint for some stays NOT_SERVING.
        hub = hub_service_pb2.DESCRIPTOR.services_by_name["HubService"].full_name
        held_down = frozenset({hub}) if require_all_agencies and deps.unserved else frozenset()
        self._audit_health = AuditHealth(deps.audit, health_servicer, audit_probe_interval, held_down=held_down)
        # A named health entry of its own: an agreement ending soon is reported, never a reason to stop serving.
        self.agreement_health = AgreementHealth(lambda: _agreement_ends(deps.policy), lambda: deps.policy.version,
                                                deps.clock, health_servicer)

    async def start(self) -> None:
        await self.server.start()
        if self.deps.metrics is not None and self._metrics_listen:
            self.metrics_port, self._stop_metrics = self.deps.metrics.serve(self._metrics_listen)
        self.deps.audit.start()
        if self.deps.watcher is not None:
            self.deps.watcher.start()
        if self.deps.sweeper is not None:
            self.deps.sweeper.start()
        if self.deps.review_sweeper is not None:
            self.deps.review_sweeper.start()
        await self._audit_health.start()
        await self.agreement_health.start()
        log.info("gateway serving", port=self.port, policy_version=self.deps.policy.current.version,
                 event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0])

    async def stop(self, grace: float | None = 1.0) -> None:
        await self._audit_health.stop()
        await self.agreement_health.stop()
        with contextlib.suppress(Exception):
            await self._health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self._stop_metrics is not None:
            await asyncio.to_thread(self._stop_metrics)
            self._stop_metrics = None
        await self.deps.aclose()


def build_server(settings: Settings, deps: Dependencies, *, reuse_port: bool = False) -> GatewayServer:
    """A grpc.aio server with mTLS (client certificates required), health and optional reflection.

    With `reuse_port` the port is bound with SO_REUSEPORT so several worker processes share it (the kernel
    spreads connections over them); otherwise a port already in use is an error.
    """
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1 if reuse_port else 0)])
    guard = AccessGuard(deps.policy, deps.audit, deps.clock)
    limits = Limits(
        identity_rate=settings.identity_rate, identity_burst=settings.identity_burst,
        identity_concurrency=settings.identity_concurrency, user_rate=settings.user_rate,
        user_burst=settings.user_burst, user_concurrency=settings.user_concurrency,
        audit_window=settings.limit_audit_window,
    )
    handlers = CallHandlers(guard.refusals, deps.metrics, limiter=CallLimiter(limits), revocations=deps.revocations,
                            tracing=deps.tracing)
    handlers.add(server, hub_service_pb2.DESCRIPTOR.services_by_name["HubService"],
                 HubServicer(deps.query, ResearchLink(deps.referrals, deps.clock)))
    handlers.add(server, audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"],
                 AuditServicer(AuditReads(deps.review, guard, deps.tokeniser, deps.policy)))
    handlers.add(server, policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"],
                 PolicyServicer(PolicyAdmin(deps.policy, settings.policy_dir, guard, deps.clock,
                                            review=deps.review, releases=settings.policy_releases,
                                            signers=settings.policy_signers)))
    if deps.query.reviews is not None:
        handlers.add(server, review_service_pb2.DESCRIPTOR.services_by_name["ReviewService"],
                     ReviewServicer(deps.query.reviews, guard.refusals))
    if deps.referrals is not None and deps.referral_store is not None:
        handlers.add(server, referral_service_pb2.DESCRIPTOR.services_by_name["ReferralService"],
                     ReferralServicer(deps.referrals, deps.clock,
                                      PertinentInformation(deps.referrals, deps.referral_store, deps.query)))
    if deps.locator is not None:
        handlers.add(server, locator_service_pb2.DESCRIPTOR.services_by_name["LocatorService"],
                     LocatorServicer(deps.locator, guard.refusals, deps.policy, deps.audit, deps.clock,
                                     trust_domain=settings.trust_domain))
    if deps.analysis is not None:
        handlers.add(server, analysis_service_pb2.DESCRIPTOR.services_by_name["AnalysisService"],
                     AnalysisServicer(deps.analysis))
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        names = [
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, server)
    try:
        port = server.add_secure_port(settings.listen, gateway_server_credentials(settings.pki))
    except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
        raise OSError(f"could not listen on {settings.listen} (address in use or not available)") from exc
    if port == 0:
        raise OSError(f"could not listen on {settings.listen}")
    return GatewayServer(server, port, deps, health_servicer, require_all_agencies=settings.require_all_agencies,
                         metrics_listen=settings.metrics_listen)
