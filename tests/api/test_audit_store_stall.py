"""A stalled, unreachable or full audit store: every call fails closed, health says so, and the gateway recovers.

PostgreSQL runs for real at 127.0.0.1:5432 (database `test`, a fresh schema per test); "unreachable" is a
real TCP proxy in front of it that drops every connection, and SQLite is filled up with `max_page_count`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hub_helpers import SCREENING, error_reason, subject

from agency_stubs import World
from gateway.api.tls import client_credentials
from gateway.audit.encoding import decode_entry
from gateway.cli.main import main as cli
from gateway.demo.partnership import Partnership
from gateway.domain import AuditKind

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one gateway's audit log, dropped afterwards."""
    name = f"stall_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
        try:
            yield name
        finally:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                         (name,))
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _url(schema: str, port: int = 5432) -> str:
    return (f"postgresql://postgres@127.0.0.1:{port}/test?options=-csearch_path%3D{schema}"
            f"&application_name={schema}&connect_timeout=2")


class TcpProxy:
    """A loopback TCP proxy to the real PostgreSQL server that can cut every connection and refuse new ones."""

    def __init__(self) -> None:
        self.port = 0
        self.cut = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.disconnect()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def disconnect(self) -> None:
        """Drop every open connection and refuse new ones (until `cut` is cleared)."""
        self.cut = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)
        self._writers.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@contextlib.asynccontextmanager
async def _gateway(tmp_path: Path, policy_dir: Path, world: World, store: str) -> AsyncIterator[Partnership]:
    async with Partnership(tmp_path / "state", policy_dir, world=world, audit_store=store,
                           audit_append_timeout=2.0, agencies=("police", "health", "csc")) as running:
        yield running


async def _screen(partnership: Partnership) -> object:
    manager = partnership.client("hub", "mash-console", user="manager.1", role="mash_manager")
    return await manager.screen(subject=subject(), **SCREENING)


async def _health(partnership: Partnership) -> list[int]:
    stub = health_pb2_grpc.HealthStub(partnership.channel(client_credentials(partnership.pki, "hub", "mash-console")))
    return [(await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)).status
            for name in ("", "mash.gateway.v1.HubService")]


async def _fails_closed(partnership: Partnership) -> None:
    """A disclosing call fails UNAVAILABLE with reason AUDIT_UNAVAILABLE and returns nothing at all."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _screen(partnership)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
    assert error_reason(caught.value) == "AUDIT_UNAVAILABLE"


async def _wait_health(partnership: Partnership, want: int, seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.1)):
        if await _health(partnership) == [want, want]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health never became {health_pb2.HealthCheckResponse.ServingStatus.Name(want)}")


async def _recovered_and_whole(partnership: Partnership, url: str, keys: Path) -> None:
    """The gateway serves again, discloses again, and the log verifies from index 0 with no gap."""
    await _wait_health(partnership, SERVING)
    answer = await _screen(partnership)
    assert answer.ByteSize() > 0  # type: ignore[attr-defined]
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 100_000)
    assert [r.index for r in rows] == list(range(len(rows)))
    assert AuditKind.DISCLOSURE in {decode_entry(r.data).event.kind for r in rows}
    checkpoint = await partnership.gateway.deps.audit.checkpoint()  # the recovered log can be vouched for
    assert checkpoint.tree_size == len(rows)
    assert await asyncio.to_thread(cli, ["audit", "verify", "--store", url, "--keys", str(keys)]) == 0


async def test_a_full_sqlite_audit_store_fails_every_call_closed_and_recovers_without_a_gap(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """SQLite at its page limit: calls fail AUDIT_UNAVAILABLE, health is NOT_SERVING, and room brings it back."""
    url = f"sqlite:///{tmp_path / 'state' / 'audit.sqlite'}"
    async with _gateway(tmp_path, policy_dir, shared_world, url) as partnership:
        assert partnership.gateway is not None
        assert await _health(partnership) == [SERVING, SERVING]
        store = partnership.gateway.deps.audit.store

        def limit(conn: sqlite3.Connection, pages: int | None) -> None:
            # A per-connection limit on the writer connection: the portable stand-in for a full disk.
            (count,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {count if pages is None else pages}")

        await store._write(lambda conn: limit(conn, None))  # type: ignore[attr-defined]
        for _ in range(200):  # the last page may still hold a few entries
            try:
                await _screen(partnership)
            except grpc.aio.AioRpcError:
                break
        else:
            raise AssertionError("the store never filled up")
        for _ in range(3):
            await _fails_closed(partnership)
        await _wait_health(partnership, NOT_SERVING)
        await asyncio.sleep(1.5)  # probes run meanwhile and must not report a full store as healthy
        assert await _health(partnership) == [NOT_SERVING, NOT_SERVING]

        await store._write(lambda conn: limit(conn, 1_000_000))  # type: ignore[attr-defined]
        await _recovered_and_whole(partnership, url, tmp_path / "state" / "keys" / "checkpoint")


@pytest.mark.postgres
async def test_a_locked_postgres_audit_table_fails_calls_closed_and_the_gateway_recovers(
    tmp_path: Path, policy_dir: Path, shared_world: World, schema: str
) -> None:
    """LOCK TABLE from another session: calls fail AUDIT_UNAVAILABLE within the append timeout, then recover."""
    url = _url(schema)
    async with _gateway(tmp_path, policy_dir, shared_world, url) as partnership:
        await _screen(partnership)
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as locker:
            await locker.execute(f'LOCK TABLE "{schema}".audit_entries IN ACCESS EXCLUSIVE MODE')
            await _fails_closed(partnership)
            await _wait_health(partnership, NOT_SERVING)
            await locker.rollback()
        await _recovered_and_whole(partnership, url, tmp_path / "state" / "keys" / "checkpoint")


@pytest.mark.postgres
async def test_a_postgres_connection_killed_mid_commit_fails_the_call_closed_and_loses_nothing(
    tmp_path: Path, policy_dir: Path, shared_world: World, schema: str
) -> None:
    """The gateway's session is terminated while its append transaction waits: the call fails, the log stays whole."""
    url = _url(schema)
    async with _gateway(tmp_path, policy_dir, shared_world, url) as partnership:
        await _screen(partnership)
        async with (await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin,
                    await psycopg.AsyncConnection.connect(POSTGRES_URL) as locker):
            await locker.execute(f'LOCK TABLE "{schema}".audit_entries IN ACCESS EXCLUSIVE MODE')
            call = asyncio.create_task(_fails_closed(partnership))
            killed = 0
            for _ in range(100):  # until the append transaction is inside, waiting for the table
                cur = await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                    "AND wait_event_type = 'Lock' AND query ILIKE '%%audit_entries%%'", (schema,))
                killed = len(await cur.fetchall())
                if killed:
                    break
                await asyncio.sleep(0.01)
            assert killed == 1
            await call
            await locker.rollback()
        await _recovered_and_whole(partnership, url, tmp_path / "state" / "keys" / "checkpoint")


@pytest.mark.postgres
async def test_an_unreachable_postgres_audit_store_fails_calls_closed_and_the_gateway_reconnects(
    tmp_path: Path, policy_dir: Path, shared_world: World, schema: str
) -> None:
    """Every connection to PostgreSQL dropped and refused: calls fail AUDIT_UNAVAILABLE until it is back."""
    async with TcpProxy() as proxy, _gateway(tmp_path, policy_dir, shared_world, _url(schema, proxy.port)) as p:
        await _screen(p)
        proxy.disconnect()
        await _fails_closed(p)
        await _fails_closed(p)
        await _wait_health(p, NOT_SERVING)
        proxy.cut = False
        await _recovered_and_whole(p, _url(schema), tmp_path / "state" / "keys" / "checkpoint")
