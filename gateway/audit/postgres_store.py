"""The PostgreSQL `DisclosureStore` (psycopg 3, async): one totally ordered log shared by several gateways.

Appends from one process are group-committed by a single writer task. Across processes, every append
transaction takes a transaction-scoped advisory lock and assigns indices from ``max(idx) + 1`` inside it,
so indices are gapless and never forked, and commits become visible in index order. The lock is taken,
and the next index read, in the same round trip as BEGIN (see `PostgresStore._insert`): while one process
holds the lock every other writer waits, so round trips under it bound what several processes sharing the
log can append together.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from gateway.audit.checkpoint import SignedCheckpoint
from gateway.audit.encoding import EncodingError, entry_bytes, format_timestamp
from gateway.audit.merkle import leaf_hash
from gateway.audit.migrations import MIGRATIONS_TABLE, load_migrations
from gateway.audit.sql import (
    META_COLUMNS,
    META_SQL,
    META_TOKENS_SQL,
    MISMATCH_NAMES,
    filter_clauses,
    leaf_hashes_from_rows,
    mismatches_from_rows,
    row_to_checkpoint,
)
from gateway.audit.store import (
    PROBE_BYTES,
    TOKENS,
    CheckpointConflict,
    EntryFilter,
    PendingEntry,
    StoredEntry,
    StoreError,
    StoreUnavailable,
)
from gateway.domain import AuditReceipt

T = TypeVar("T")
_MAX_BATCH = 4096
_ENTRY_COLUMNS = ("idx, leaf_hash, data, occurred_at, kind, agency, purpose, role, user_id, case_reference, "
                  "status")


def _mismatch_sql() -> str:
    """The query behind `metadata_mismatches`: entries of an index range whose copies disagree with their JSON.

    It mirrors `store.meta_mismatches` exactly: each column is compared as JSON (so a JSON number never equals
    a text column), and the token rows, as a JSON array, must contain and be contained in the event's token
    array (set equality; containment is by type, so non-string elements never match). The lateral subquery
    is kept apart (OFFSET 0) so each entry's JSON is parsed once, not once per column.
    """
    columns = [f"d.ev -> '{name}' IS DISTINCT FROM to_jsonb(e.{column})" for name, column in META_COLUMNS]
    tokens = (f"CASE WHEN NOT d.ev ? '{TOKENS}' THEN d.st <> '[]'::jsonb "
              f"WHEN jsonb_typeof(d.ev -> '{TOKENS}') <> 'array' THEN true "
              f"ELSE NOT ((d.ev -> '{TOKENS}') @> d.st AND d.st @> (d.ev -> '{TOKENS}')) END")
    return (f"SELECT e.idx, {', '.join(columns)}, {tokens} FROM audit_entries e "  # noqa: S608 (fixed text)
            "CROSS JOIN LATERAL (SELECT convert_from(e.data, 'UTF8')::jsonb -> 'event' AS ev, "
            "(SELECT coalesce(jsonb_agg(t.token), '[]'::jsonb) FROM audit_subject_tokens t WHERE t.idx = e.idx) "
            "AS st OFFSET 0) d "
            f"WHERE e.idx >= %s AND e.idx < %s AND jsonb_typeof(d.ev) = 'object' AND ({' OR '.join(columns)} "
            f"OR {tokens}) ORDER BY e.idx")


_MISMATCH_SQL = _mismatch_sql()

_Request = tuple[Sequence[PendingEntry], "asyncio.Future[list[AuditReceipt]]"]


def _lock_key(schema: str, purpose: str) -> int:
    digest = hashlib.sha256(f"mash-audit:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _refused_content(exc: BaseException) -> bool:
    """Whether a failed append was refused for what it held (not lost connectivity, whose outcome is unknown)."""
    cause = exc.__cause__ if isinstance(exc, StoreUnavailable) else exc
    return isinstance(cause, psycopg.DataError | psycopg.IntegrityError | psycopg.ProgrammingError)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    # Explicit although it is the server default: a commit returns only once the WAL is flushed.
    await conn.execute("SET synchronous_commit = on")


class PostgresStore:
    """Audit entries and checkpoints in PostgreSQL tables in the connection's current schema."""

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]], schema: str) -> None:
        self._pool = pool
        self._append_lock = _lock_key(schema, "append")
        # One simple query (no parameters, so several statements may go at once); the key is our own integer.
        self._lock_and_next = (f"BEGIN; SELECT pg_advisory_xact_lock({int(self._append_lock)}); "  # noqa: S608
                               "SELECT coalesce(max(idx) + 1, 0) FROM audit_entries").encode()
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, conninfo: str, *, pool_size: int = 4, wait_timeout: float = 10.0) -> PostgresStore:
        """Connect, apply pending migrations (serialised across processes) and start the writer.

        Every call waits at most `wait_timeout` seconds for a pooled connection before the store counts as
        unavailable.
        """
        # A direct first connection, not the pool: an unreachable server fails here at once with its own error
        # instead of after the pool's reconnection attempts.
        try:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to the PostgreSQL audit store: {exc}") from exc
        try:
            cur = await conn.execute("SELECT current_schema()")
            row = await cur.fetchone()
            if row is None or row[0] is None:
                raise StoreUnavailable("the PostgreSQL search_path names no existing schema")
            schema = str(row[0])
            await cls._migrate(conn, schema)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot prepare the PostgreSQL audit store: {exc}") from exc
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            conninfo, kwargs={"autocommit": True}, min_size=1, max_size=pool_size, open=False,
            configure=_configure, timeout=wait_timeout, name="mash-audit")
        try:
            await pool.open(wait=True, timeout=wait_timeout)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, psycopg.Error):
                raise StoreUnavailable(f"cannot connect to the PostgreSQL audit store: {exc}") from exc
            raise
        store = cls(pool, schema)
        store._writer_task = asyncio.create_task(store._writer_loop(), name="audit-postgres-writer")
        return store

    @staticmethod
    async def _migrate(conn: psycopg.AsyncConnection[Any], schema: str) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(schema, "migrate"),))
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, "
                               "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            cur = await conn.execute("SELECT version FROM audit_schema_migrations")
            applied = {r[0] for r in await cur.fetchall()}
            for migration in load_migrations("postgresql"):
                if migration.version in applied:
                    continue
                await conn.execute(migration.sql.encode())
                await conn.execute("INSERT INTO audit_schema_migrations (version, name) VALUES (%s, %s)",
                                   (migration.version, migration.name))

    async def _run(self, work: Callable[[psycopg.AsyncConnection[Any], list[bool]], Awaitable[T]]) -> T:
        """Run `work` on a pooled connection; if that connection proves dead before `work` has done anything,
        have the pool replace every dead idle connection and run `work` once more.

        `work` sets ``started[0] = True`` once its first statement has succeeded; after that a lost connection
        leaves the outcome unknown, so it is not retried.
        """
        if self._closed:
            raise StoreUnavailable("the PostgreSQL audit store is closed")
        for attempt in range(2):
            started = [False]
            try:
                async with self._pool.connection() as conn:
                    return await work(conn, started)
            except psycopg.OperationalError as exc:
                if started[0] or attempt or self._closed or isinstance(exc, PoolTimeout | PoolClosed):
                    raise StoreUnavailable(f"the PostgreSQL audit store failed: {exc}") from exc
                # One lost connection usually means all were lost (a server restart).
                await self._pool.check()
            except psycopg.Error as exc:
                raise StoreUnavailable(f"the PostgreSQL audit store failed: {exc}") from exc
            except EncodingError as exc:
                raise StoreError(f"the PostgreSQL audit store holds a malformed value: {exc}") from exc
        raise StoreUnavailable("the PostgreSQL audit store failed")

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query; a pooled connection the server has dropped is replaced once, transparently."""
        async def work(conn: psycopg.AsyncConnection[Any], started: list[bool]) -> list[tuple[Any, ...]]:
            cur = await conn.execute(sql.encode(), params)
            return await cur.fetchall()
        return await self._run(work)

    # -- group-committing writer ----------------------------------------------------------------------

    async def _writer_loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            count = len(first[0])
            stop = False
            while count < _MAX_BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
                count += len(item[0])
            await self._commit_group(batch)
            if stop:
                return

    async def _commit_group(self, batch: list[_Request]) -> None:
        """Commit `batch` in one transaction; if the database refused its content, commit each request alone."""
        try:
            results = await self._commit(batch)
        except Exception as exc:  # every failure must reach the waiting callers as unavailability
            if len(batch) > 1 and _refused_content(exc):
                # The transaction was rolled back before commit because of some entry's content: retrying
                # each request on its own cannot duplicate anything and confines the failure to its caller.
                for request in batch:
                    await self._commit_group([request])
                return
            error = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(
                f"the PostgreSQL audit store did not commit: {exc}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        else:
            for (_, future), receipts in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(receipts)

    async def _commit(self, batch: list[_Request]) -> list[list[AuditReceipt]]:
        async def work(conn: psycopg.AsyncConnection[Any], started: list[bool]) -> list[list[AuditReceipt]]:
            return await self._insert(conn, batch, started)
        return await self._run(work)

    async def _insert(self, conn: psycopg.AsyncConnection[Any], batch: list[_Request],
                      started: list[bool]) -> list[list[AuditReceipt]]:
        """BEGIN, the lock and the next index in one round trip, then the two COPYs and the COMMIT.

        Each statement of the first query reads with its own snapshot, so the index is read after the lock
        is granted; the lock is held until the commit, so commits land in index order.
        """
        cur = await conn.execute(self._lock_and_next)
        started[0] = True
        try:
            while cur.nextset():
                pass  # BEGIN and the lock return nothing of interest; the last result is the next index
            row = await cur.fetchone()
            next_index = int(row[0]) if row else 0
            results: list[list[AuditReceipt]] = []
            async with conn.cursor() as cur2:
                async with cur2.copy(f"COPY audit_entries ({_ENTRY_COLUMNS}) FROM STDIN") as copy:
                    tokens: list[tuple[str, int]] = []
                    for entries, _ in batch:
                        receipts = []
                        for pending in entries:
                            data = entry_bytes(next_index, pending.event_json)
                            digest = leaf_hash(data)
                            m = pending.meta
                            await copy.write_row((next_index, digest, data, m.occurred_at, m.kind, m.agency,
                                                  m.purpose, m.role, m.user, m.case_reference, m.status))
                            tokens.extend((t, next_index) for t in m.subject_tokens)
                            receipts.append(AuditReceipt(next_index, digest))
                            next_index += 1
                        results.append(receipts)
                if tokens:
                    async with cur2.copy("COPY audit_subject_tokens (token, idx) FROM STDIN") as copy:
                        for token_row in tokens:
                            await copy.write_row(token_row)
            await conn.execute(b"COMMIT")
        except BaseException:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute(b"ROLLBACK")
            raise
        return results

    # -- the port ------------------------------------------------------------------------------------

    async def append(self, entries: Sequence[PendingEntry]) -> list[AuditReceipt]:
        if self._closed or self._writer_task is None or self._writer_task.done():
            raise StoreUnavailable("the PostgreSQL audit store is closed")
        if not entries:
            return []
        future: asyncio.Future[list[AuditReceipt]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((list(entries), future))
        return await future

    async def size(self) -> int:
        rows = await self._fetch("SELECT coalesce(max(idx) + 1, 0) FROM audit_entries")
        return int(rows[0][0])

    async def leaf_hashes(self, start: int, limit: int | None = None) -> list[bytes]:
        rows = await self._fetch("SELECT idx, leaf_hash FROM audit_entries WHERE idx >= %s ORDER BY idx LIMIT %s",
                                 (start, limit))
        return leaf_hashes_from_rows(rows, start)

    async def get_entry(self, index: int) -> StoredEntry | None:
        rows = await self._fetch("SELECT idx, leaf_hash, data FROM audit_entries WHERE idx = %s", (index,))
        return StoredEntry(int(rows[0][0]), bytes(rows[0][1]), bytes(rows[0][2])) if rows else None

    async def scan(self, start: int, limit: int) -> list[StoredEntry]:
        rows = await self._fetch("SELECT idx, leaf_hash, data FROM audit_entries WHERE idx >= %s "
                                 "ORDER BY idx LIMIT %s", (start, limit))
        return [StoredEntry(int(i), bytes(h), bytes(d)) for i, h, d in rows]

    @staticmethod
    def _filter_sql(where: EntryFilter, start: int, before: int | None) -> tuple[str, list[Any]]:
        clauses, params = filter_clauses(where, start, "%s", before)
        if where.subject_tokens:
            clauses.append("idx IN (SELECT idx FROM audit_subject_tokens WHERE token = ANY(%s))")
            params.append(sorted(where.subject_tokens))
        return " AND ".join(clauses), params

    async def find(self, where: EntryFilter, *, start: int, limit: int, before: int | None = None,
                   newest_first: bool = False) -> list[StoredEntry]:
        condition, params = self._filter_sql(where, start, before)
        sql = (f"SELECT idx, leaf_hash, data FROM audit_entries WHERE {condition} "  # noqa: S608
               f"ORDER BY idx {'DESC' if newest_first else 'ASC'} LIMIT %s")
        params.append(limit)
        rows = await self._fetch(sql, params)
        return [StoredEntry(int(i), bytes(h), bytes(d)) for i, h, d in rows]

    async def count(self, where: EntryFilter, *, before: int | None = None) -> int:
        condition, params = self._filter_sql(where, 0, before)
        rows = await self._fetch(f"SELECT count(*) FROM audit_entries WHERE {condition}", params)  # noqa: S608
        return int(rows[0][0])

    async def metadata_mismatches(self, start: int, end: int) -> dict[int, tuple[str, ...]]:
        async def work(conn: psycopg.AsyncConnection[Any], started: list[bool]) -> dict[int, tuple[str, ...]]:
            try:
                async with conn.transaction():
                    # The planner's cost guess for this query triggers JIT compilation, which takes longer
                    # than running it.
                    await conn.execute("SET LOCAL jit = off")
                    started[0] = True
                    cur = await conn.execute(_MISMATCH_SQL.encode(), (start, end))
                    rows = await cur.fetchall()
            except psycopg.DataError:
                # Some entry in the range is not UTF-8 JSON that jsonb accepts (jsonb refuses \u0000 anywhere,
                # e.g. in details): compare this range in Python instead, entry by entry.
                cur = await conn.execute(META_SQL.format(p="%s").encode(), (start, end))
                entries = await cur.fetchall()
                cur = await conn.execute(META_TOKENS_SQL.format(p="%s").encode(), (start, end))
                return mismatches_from_rows(entries, [(t[0], t[1]) for t in await cur.fetchall()])
            return {int(row[0]): tuple(name for name, differs in zip(MISMATCH_NAMES, row[1:], strict=True)
                                       if differs) for row in rows}
        return await self._run(work)

    async def add_checkpoint(self, checkpoint: SignedCheckpoint) -> None:
        ts = format_timestamp(checkpoint.timestamp)

        async def work(conn: psycopg.AsyncConnection[Any], started: list[bool]) -> str:
            async with conn.transaction():
                # The append lock also orders checkpoints, so their timestamps and sizes never go back.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._append_lock,))
                started[0] = True
                cur = await conn.execute("SELECT tree_size, ts FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
                latest = await cur.fetchone()
                if latest is not None and (ts <= latest[1] or checkpoint.tree_size < latest[0]):
                    return "checkpoint is not later than the latest stored one"
                cur = await conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM audit_entries")
                row = await cur.fetchone()
                if row is None or checkpoint.tree_size > int(row[0]):
                    return "checkpoint covers entries the store does not hold"
                await conn.execute(
                    "INSERT INTO audit_checkpoints (tree_size, root_hash, ts, key_id, signature) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (checkpoint.tree_size, checkpoint.root_hash, ts, checkpoint.key_id, checkpoint.signature))
                return ""

        conflict = await self._run(work)
        if conflict:
            raise CheckpointConflict(conflict)

    async def latest_checkpoint(self) -> SignedCheckpoint | None:
        rows = await self._fetch("SELECT tree_size, root_hash, ts, key_id, signature FROM audit_checkpoints "
                                 "ORDER BY seq DESC LIMIT 1")
        return row_to_checkpoint(rows[0]) if rows else None

    async def checkpoints(self) -> list[SignedCheckpoint]:
        rows = await self._fetch("SELECT tree_size, root_hash, ts, key_id, signature FROM audit_checkpoints "
                                 "ORDER BY seq")
        return [row_to_checkpoint(r) for r in rows]

    async def check_writable(self) -> None:
        async def work(conn: psycopg.AsyncConnection[Any], started: list[bool]) -> None:
            # Rolled back, so nothing is stored; a locked table, a full disk or a lost server fail it.
            async with conn.transaction(force_rollback=True):
                await conn.execute(f"INSERT INTO audit_entries ({_ENTRY_COLUMNS}) "  # noqa: S608 (fixed text)
                                   "VALUES (-1, '', %s, '', '', '', '', '', '', '', '')", (bytes(PROBE_BYTES),))
        await self._run(work)

    async def add_cosignature(self, tree_size: int, root_hash: bytes, line: str) -> None:
        async def work(conn: psycopg.AsyncConnection[Any], started: list[bool]) -> None:
            started[0] = True
            await conn.execute("INSERT INTO audit_cosignatures (tree_size, root_hash, line) VALUES (%s, %s, %s) "
                               "ON CONFLICT DO NOTHING", (tree_size, root_hash, line))
        await self._run(work)

    async def cosignatures(self) -> list[tuple[int, bytes, str]]:
        rows = await self._fetch("SELECT tree_size, root_hash, line FROM audit_cosignatures ORDER BY tree_size, line")
        return [(int(r[0]), bytes(r[1]), str(r[2])) for r in rows]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer_task is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await self._writer_task
        await self._pool.close()
