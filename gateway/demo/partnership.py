"""A whole partnership in one process: PKI, keys, a node per agency and a gateway, all on loopback with mTLS.

The demo and the end-to-end tests both use it, so the tests exercise exactly what a newcomer runs. The
agencies, node certificates and client systems are those the policy directory declares.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import structlog

from gateway.api.tls import channel_credentials, client_credentials, node_server_credentials
from gateway.app import GatewayServer, build_server, open_dependencies
from gateway.domain import Clock
from gateway.generated.mash.gateway.v1 import common_pb2, hub_service_pb2, hub_service_pb2_grpc
from gateway.keys import KeyPaths, init_keys
from gateway.partnership import load_plan
from gateway.pki import PkiLayout, init_pki
from gateway.pki.authority import gateway_server_name
from gateway.settings import Settings

if TYPE_CHECKING:
    from agency_stubs import RunningNode, World
    from agency_stubs.locator_enrolment import LocatorEnrolment


@dataclass
class HubClient:
    """An agency system's view of the gateway: one mTLS channel, one practitioner (user and role)."""

    channel: grpc.aio.Channel
    user: str
    role: str
    stub: hub_service_pb2_grpc.HubServiceAsyncStub = field(init=False)

    def __post_init__(self) -> None:
        self.stub = hub_service_pb2_grpc.HubServiceStub(self.channel)  # an async stub on an aio channel

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-mash-user", self.user), ("x-mash-role", self.role))

    def as_role(self, role: str, user: str | None = None) -> HubClient:
        return HubClient(self.channel, user or self.user, role)

    async def query(self, *, timeout: float = 10.0, **request: Any) -> hub_service_pb2.QueryResponse:
        return await self.stub.Query(_query(hub_service_pb2.QueryRequest, request), metadata=self.metadata,
                                     timeout=timeout)

    async def stream(self, *, timeout: float = 10.0, **request: Any) -> list[hub_service_pb2.StreamQueryResponse]:
        call = self.stub.StreamQuery(_query(hub_service_pb2.StreamQueryRequest, request),
                                     metadata=self.metadata, timeout=timeout)
        return [message async for message in call]

    async def screen(self, *, timeout: float = 10.0, **request: Any) -> hub_service_pb2.ScreenReferralResponse:
        return await self.stub.ScreenReferral(
            _query(hub_service_pb2.ScreenReferralRequest, request), metadata=self.metadata, timeout=timeout
        )


def _query(cls: Any, request: Mapping[str, Any]) -> Any:
    fields = dict(request)
    subject = fields.pop("subject", None)
    if isinstance(subject, Mapping):
        subject = common_pb2.SubjectIdentifiers(**subject)
    return cls(subject=subject, **fields)


class _CountingNodeLog:
    """A node's logger that also counts, per agency, the lookups the node answered or rejected."""

    def __init__(self, counts: Counter[str]) -> None:
        self._counts = counts
        self._log = structlog.get_logger("agency_stubs.node")

    def info(self, event: str, **fields: Any) -> None:
        if event in ("lookup", "lookup_rejected"):
            self._counts[str(fields.get("agency", ""))] += 1
        self._log.info(event, **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


class Partnership:
    """Starts everything on entry and stops everything on exit; ports are chosen by the OS (port 0)."""

    def __init__(
        self,
        state_dir: Path,
        policy_dir: Path,
        *,
        world: World | None = None,
        people: int = 2000,
        agencies: Sequence[str] | None = None,  # default: every record-holding agency of the policy
        clock: Clock | None = None,
        audit_store: str = "",
        checkpoint_interval: float = 30.0,
        default_timeout: float = 5.0,
        node_latency: Mapping[str, float] | None = None,
        metrics_listen: str = "",
        audit_append_timeout: float = 5.0,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.policy_dir = policy_dir
        self.pki = PkiLayout(state_dir / "pki")
        self._world = world
        self._people = people
        self._agencies = tuple(agencies) if agencies is not None else None
        self._clock = clock
        self._audit_store = audit_store
        self._checkpoint_interval = checkpoint_interval
        self._default_timeout = default_timeout
        self._node_latency = dict(node_latency or {})
        self._metrics_listen = metrics_listen
        self._audit_append_timeout = audit_append_timeout
        self._extra_settings = dict(settings or {})  # further Settings fields, e.g. limits
        self.nodes: dict[str, RunningNode] = {}
        self.lookups: Counter[str] = Counter()  # lookups each node answered (or rejected), counted at the node
        self.gateway: GatewayServer | None = None
        self.settings: Settings | None = None
        self._channels: list[grpc.aio.Channel] = []

    @property
    def world(self) -> World:
        assert self._world is not None, "the partnership has not started"
        return self._world

    async def __aenter__(self) -> Partnership:
        from agency_stubs import build_world, serve_node
        from agency_stubs.holding import policy_dataset, seeded_records
        from gateway.policy.snapshot import load_snapshot

        self.state_dir.mkdir(parents=True, exist_ok=True)
        plan = load_plan(self.policy_dir)
        if not self.pki.ca_cert.exists():
            init_pki(self.pki.root, nodes=plan.record_holders, clients=plan.clients)
        init_keys(KeyPaths(self.state_dir / "keys"))
        if self._world is None:
            self._world = build_world(people=self._people)
        agencies = self._agencies if self._agencies is not None else plan.record_holders
        snapshot = None
        gateway_identity = f"spiffe://{_trust_domain()}/gateway"
        try:
            for agency in agencies:
                dataset = self._world.datasets.get(agency)
                if dataset is None:  # not simulated: its seeded records file, or nobody
                    snapshot = snapshot or load_snapshot(self.policy_dir)
                    dataset = policy_dataset(snapshot, agency, seeded_records(agency))
                self.nodes[agency] = await serve_node(
                    dataset,
                    credentials=node_server_credentials(self.pki, agency),
                    allowed_callers=frozenset({gateway_identity}),
                    latency=self._node_latency.get(agency, 0.0),
                    logger=_CountingNodeLog(self.lookups),
                )
            self.settings = Settings(
                state_dir=self.state_dir, policy_dir=self.policy_dir, pki_dir=self.pki.root,
                audit_store=self._audit_store,
                agency_endpoints={a: n.address for a, n in self.nodes.items()},
                reflection=True, checkpoint_interval=self._checkpoint_interval,
                policy_watch_interval=None, default_timeout=self._default_timeout,
                metrics_listen=self._metrics_listen,
                audit_append_timeout=self._audit_append_timeout,
            )
            self.settings = replace(self.settings, **self._extra_settings)
            deps = await open_dependencies(self.settings, clock=self._clock)
            self.gateway = build_server(self.settings, deps)
            await self.gateway.start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        if self.gateway is not None:
            await self.gateway.stop(0.5)
            self.gateway = None
        for node in self.nodes.values():
            await node.stop(0.2)
        self.nodes.clear()

    @property
    def address(self) -> str:
        assert self.gateway is not None, "the partnership has not started"
        return f"127.0.0.1:{self.gateway.port}"

    def channel(self, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
        """A channel to the gateway with the given client credentials (None: plain TLS, no client cert)."""
        if credentials is None:
            credentials = grpc.ssl_channel_credentials(root_certificates=self.pki.ca_cert.read_bytes())
        channel = grpc.aio.secure_channel(
            self.address, credentials,
            options=[("grpc.ssl_target_name_override", gateway_server_name(_trust_domain()))],
        )
        self._channels.append(channel)
        return channel

    def client(self, agency: str, system: str, *, user: str, role: str) -> HubClient:
        """A HubClient for the agency system's certificate from `pki init`."""
        return HubClient(self.channel(client_credentials(self.pki, agency, system)), user, role)

    async def enrol_in_locator(self, agencies: Sequence[str] | None = None, *,
                               concurrency: int = 4) -> dict[str, LocatorEnrolment]:
        """Enrol the nodes of `agencies` (default: all) in the gateway's locator, each with its own certificate,
        `concurrency` at a time (so the gateway still answers each node's Describe promptly), and keep each
        enrolment current as its dataset changes."""
        from agency_stubs.locator_enrolment import enrol_running_node

        slots = asyncio.Semaphore(concurrency)

        async def enrol(agency: str) -> tuple[str, LocatorEnrolment]:
            async with slots:
                channel = self.channel(channel_credentials(self.pki.ca_cert, *self.pki.node(agency)))
                enrolment, _ = await enrol_running_node(self.nodes[agency], channel)
                return agency, enrolment

        return dict(await asyncio.gather(*(enrol(a) for a in (self.nodes if agencies is None else agencies))))

    async def stop_node(self, agency: str) -> None:
        """Stop one agency node (to show the others still answer)."""
        node = self.nodes.pop(agency)
        await node.stop(0)


def _trust_domain() -> str:
    from gateway.pki import DEFAULT_TRUST_DOMAIN

    return DEFAULT_TRUST_DOMAIN
