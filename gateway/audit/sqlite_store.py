"""The embedded SQLite `DisclosureStore`: WAL, synchronous=FULL, one writer thread doing group commit.

Concurrent appends queue up for the writer thread, which takes everything waiting and commits it in one
transaction (one fsync), so throughput grows with concurrency while each caller still returns only after
its own entries are durable. Reads run on a small thread pool with their own connections (WAL lets them
proceed while the writer commits), so the event loop never blocks on SQLite.

An append commits only the entries themselves (`audit_entries`: index, leaf hash, bytes). Their copies for
searching (`audit_entry_meta`'s filter columns and the `audit_subject_tokens` rows) are filed afterwards by the
same writer, in a transaction of their own, when it has nothing else to do and some have gathered, after a
quiet moment, or before any search or verification reads them; each of those first files whatever is missing.
So an append writes the log's few pages, not a leaf of every index, before its fsync. A mark
(`audit_copies_filed`) says how far filing has gone; copies lost with the process are rebuilt from the
entries' bytes (`EntryMeta.from_entry`) by the next filing, and bytes that cannot give them give empty ones,
which verification reports. A copy row missing below the mark is reported too.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import structlog

from gateway.audit.checkpoint import SignedCheckpoint
from gateway.audit.encoding import EncodingError, entry_bytes, format_timestamp
from gateway.audit.merkle import leaf_hash
from gateway.audit.migrations import MIGRATIONS_TABLE, load_migrations
from gateway.audit.sql import (
    META_COLUMNS,
    MISMATCH_NAMES,
    as_bytes,
    filter_clauses,
    leaf_hashes_from_rows,
    row_to_checkpoint,
)
from gateway.audit.store import (
    PROBE_BYTES,
    TOKENS,
    CheckpointConflict,
    EntryFilter,
    EntryMeta,
    PendingEntry,
    StoredEntry,
    StoreError,
    StoreUnavailable,
    StoreUrlError,
)
from gateway.domain import AuditReceipt

T = TypeVar("T")
_log = structlog.get_logger("gateway.audit")
_MAX_BATCH = 4096  # entries per group commit; bounds transaction size under a burst
_WAL_ATTEMPTS = 500  # about five seconds of retries
_FILE_AFTER = 64  # entries whose copies wait before the writer, if nothing else is queued, files them
_FILE_AT_MOST = 4096  # entries whose copies may wait while appends keep the writer busy
_FILE_WHEN_QUIET = 0.25  # seconds without work after which the writer files whatever copies wait
_FILE_CHUNK = 4096  # entries read back from their bytes at a time when lost copies are rebuilt
_FILE_BACKOFF_MAX = 30.0  # seconds, the longest the writer waits before filing again after a failure
# OR REPLACE: a filing writes the rows of the entries from its mark on, which have none unless one was left
# by a deleted entry or put there by hand (at an index the log had not reached): the entry's own replaces it.
_META_INSERT = "INSERT OR REPLACE INTO audit_entry_meta VALUES (?,?,?,?,?,?,?,?,?)"
_LOG_END = "(SELECT coalesce(max(idx) + 1, 0) FROM audit_entries)"
_EMPTY_META = EntryMeta("", "", "", "", "", "", "", "", ())
# An entry's bytes as bytes whatever a tamperer stored there: text that is not UTF-8, or a number (which
# `as_bytes` would take for a length), would otherwise fail the read before verification could report it.
_DATA = "CAST(data AS BLOB)"


def _mismatch_sql() -> str:
    """The query behind `metadata_mismatches`: entries of an index range whose copies disagree with their JSON.

    It mirrors `store.meta_mismatches` exactly. Columns are compared without affinity (unary +), so a JSON
    number never equals a text column. The token rows are set-compared by joining the event's token array with
    them: every array element must be a string with a row, and the entry must have no more rows than distinct
    matched tokens. The CASEs keep the JSON functions away from bytes that are not JSON (they would raise);
    such entries, and those without an event object, are left out.
    """
    doc = "CAST(e.data AS TEXT)"
    path = f"'$.event.{TOKENS}'"
    # An entry without a copy row differs in every field, whatever its event holds.
    columns = [f"(m.idx IS NULL OR +m.{column} IS NOT json_extract({doc}, '$.event.{name}'))"
               for name, column in META_COLUMNS]
    tokens = (f"CASE WHEN coalesce(json_type({doc}, {path}), 'array') <> 'array' THEN 1 "  # noqa: S608
              "ELSE (SELECT count(t.idx) <> count(j.key) OR count(DISTINCT t.token) <> "
              "(SELECT count(*) FROM audit_subject_tokens s WHERE s.idx = e.idx) "
              f"FROM json_each(CASE WHEN json_type({doc}, {path}) = 'array' THEN {doc} -> {path} END) j "
              "LEFT JOIN audit_subject_tokens t ON t.token = j.value AND t.idx = e.idx AND j.type = 'text') END")
    return (f"SELECT e.idx, {', '.join(columns)}, {tokens} FROM audit_entries e "  # noqa: S608 (fixed text)
            "LEFT JOIN audit_entry_meta m ON m.idx = e.idx "
            f"WHERE e.idx >= ? AND e.idx < ? AND CASE WHEN json_valid({doc}) THEN "
            f"CASE WHEN json_type({doc}, '$.event') = 'object' THEN {' OR '.join(columns)} OR {tokens} END END "
            "ORDER BY e.idx")


_MISMATCH_SQL = _mismatch_sql()


def path_from_url(url: str) -> Path:
    """`sqlite:///relative/path` or `sqlite:////absolute/path` → a Path."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise StoreUrlError("SQLite audit store URL must look like sqlite:///path/to/audit.sqlite")
    return Path(unquote(parts.path[1:]))


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    for attempt in range(_WAL_ATTEMPTS):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            # Switching a new file to WAL needs an exclusive lock and SQLite does not wait for it (no busy
            # handler), so connections opening a new file at the same moment retry briefly.
            if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS - 1:
                conn.close()
                raise
            time.sleep(0.01)
    # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and an append must
    # only return once its entry would survive that. Group commit keeps the fsync cost per batch.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _statements(script: str) -> list[str]:
    """Split a migration script into complete SQL statements (executescript would commit our transaction)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if any(line.strip() and not line.strip().startswith("--") for line in current.splitlines()):
        raise sqlite3.ProgrammingError("a migration script ends with an incomplete statement")
    return statements


def _migrate(conn: sqlite3.Connection) -> None:
    # Everything, including reading which migrations are applied, happens under one write lock, so
    # processes opening a new file at the same moment apply each migration exactly once.
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
                     "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        applied = {row[0] for row in conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")}  # noqa: S608
        for migration in load_migrations("sqlite"):
            if migration.version in applied:
                continue
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (?, ?, ?)",  # noqa: S608
                         (migration.version, migration.name, format_timestamp(datetime.now(UTC))))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _meta_row(index: int, meta: EntryMeta) -> tuple[object, ...]:
    return (index, meta.occurred_at, meta.kind, meta.agency, meta.purpose, meta.role, meta.user,
            meta.case_reference, meta.status)


def _filing_state(conn: sqlite3.Connection) -> tuple[int, int]:
    """(the mark: the copies of every entry below it are filed; the end of the log). Copies are filed in index
    order and the mark, not the copy rows, says how far: a row put in by hand past the end would skip
    entries."""
    (end,) = conn.execute(f"SELECT {_LOG_END}").fetchone()
    mark = conn.execute("SELECT upto FROM audit_copies_filed WHERE id = 0").fetchone()
    return int(mark[0]) if mark else 0, int(end)


def _read_back(data: object) -> EntryMeta:
    """An entry's copies from its stored bytes (read as `_DATA`); anything else (a NULL) gives empty ones."""
    return EntryMeta.from_entry(data) if isinstance(data, bytes) else _EMPTY_META


def file_copies(conn: sqlite3.Connection, known: Sequence[tuple[int, EntryMeta]] = ()) -> int:
    """File the search copies of every committed entry after the last one filed, in one transaction; return
    how many. `known` are copies kept from the appends; any others are read back from the entries' bytes (an
    entry committed by another process, or before a restart). Safe from several processes at once."""
    mark, end = _filing_state(conn)
    if mark == end:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        mark, end = _filing_state(conn)  # again under the write lock
        first = min(mark, end)  # a log shorter than its mark (its newest entries deleted) is filed from its end
        kept = {index: meta for index, meta in known if first <= index < end}
        filed = 0
        for start in range(first, end, _FILE_CHUNK):
            stop = min(end, start + _FILE_CHUNK)
            metas = {index: kept[index] for index in range(start, stop) if index in kept}
            if len(metas) < stop - start:
                for index, data in conn.execute(f"SELECT idx, {_DATA} FROM audit_entries "  # noqa: S608
                                                "WHERE idx >= ? AND idx < ?", (start, stop)).fetchall():
                    metas.setdefault(index, _read_back(data))
            ordered = sorted(metas.items())
            conn.executemany(_META_INSERT, [_meta_row(index, meta) for index, meta in ordered])
            # Rows from before (a deleted entry's, or put in by hand) must not speak for these entries.
            conn.execute("DELETE FROM audit_subject_tokens WHERE idx >= ? AND idx < ?", (start, stop))
            conn.executemany("INSERT OR IGNORE INTO audit_subject_tokens VALUES (?,?)",
                             [(token, index) for index, meta in ordered for token in meta.subject_tokens])
            filed += len(ordered)
        conn.execute("INSERT OR REPLACE INTO audit_copies_filed VALUES (0, ?)", (end,))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        raise
    return filed


class _Append:
    __slots__ = ("entries", "future", "loop")

    def __init__(self, entries: Sequence[PendingEntry], future: asyncio.Future[list[AuditReceipt]],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.entries = entries
        self.future = future
        self.loop = loop


class _Call:
    __slots__ = ("fn", "future", "loop")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], future: asyncio.Future[Any],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop


def _resolve(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any,
             error: BaseException | None) -> None:
    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop closed while we committed; nobody is waiting
        loop.call_soon_threadsafe(settle)


class SqliteStore:
    """Audit entries and checkpoints in one SQLite file."""

    def __init__(self, path: Path, writer: sqlite3.Connection, readers: int = 2) -> None:
        self.path = path
        self._writer_conn = writer
        self._queue: queue.SimpleQueue[_Append | _Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._writer_loop, name="audit-sqlite-writer", daemon=True)
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="audit-sqlite-reader")
        self._closed = False
        self._unfiled: list[tuple[int, EntryMeta]] = []  # copies of committed entries not yet filed (writer thread)
        self._file_retry_at = 0.0  # monotonic time before which the writer does not try filing again
        self._file_backoff = 0.0
        self._stopped = False  # the writer thread has ended
        self._queue_lock = threading.Lock()  # makes "still open?" and "queued" one step (see `_enqueue`)
        self._thread.start()

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open or create the database at `path`, applying any pending migrations."""
        def setup() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(path)
            try:
                _migrate(conn)
            except BaseException:
                conn.close()
                raise
            try:
                file_copies(conn)  # copies a stopped process had not filed yet
            except Exception as exc:  # the entries are intact: searches try again, and say so if they cannot
                _log.warning("audit_copies_not_filed", error_type=type(exc).__name__)
            return conn

        try:
            conn = await asyncio.to_thread(setup)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open the SQLite audit store: {exc}") from exc
        return cls(path, conn)

    # -- writer thread -------------------------------------------------------------------------------

    def _writer_loop(self) -> None:
        conn = self._writer_conn
        try:
            self._write_until_closed(conn)
        except Exception as exc:  # a fault of ours: say so (by type only) and refuse what follows
            _log.error("audit_writer_stopped", error_type=type(exc).__name__, unexpected=True)
        finally:
            # Normally the queue is empty here; after an unexpected error, nobody may wait for ever. Under the
            # lock, so that nothing is queued after this drain (`_enqueue` sees the flag).
            with self._queue_lock:
                self._stopped = True
            error = StoreUnavailable("the SQLite audit store's writer has stopped")
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    _resolve(item.loop, item.future, None, error)
            conn.close()

    def _write_until_closed(self, conn: sqlite3.Connection) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_FILE_WHEN_QUIET) if self._unfiled else self._queue.get()
            except queue.Empty:
                self._file_waiting(conn)
                continue
            if item is None:
                break
            batch: list[_Append] = []
            calls: list[_Call] = []
            count = 0
            stop = False
            while True:
                if isinstance(item, _Append):
                    batch.append(item)
                    count += len(item.entries)
                else:
                    calls.append(item)
                if count >= _MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
            if batch:
                self._commit_appends(conn, batch)
            for call in calls:
                try:
                    result = call.fn(conn)
                except BaseException as exc:  # hand every failure to the waiting caller
                    with contextlib.suppress(sqlite3.Error):
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                    _resolve(call.loop, call.future, None, exc)
                else:
                    _resolve(call.loop, call.future, result, None)
            if stop:
                break
            waiting = len(self._unfiled)
            if waiting >= _FILE_AT_MOST or (waiting >= _FILE_AFTER and self._queue.empty()):
                self._file_waiting(conn)
        self._file_waiting(conn, closing=True)

    def _file(self, conn: sqlite3.Connection) -> None:
        """File every missing copy, using those kept from appends (writer thread)."""
        file_copies(conn, self._unfiled)
        self._unfiled.clear()
        self._file_backoff, self._file_retry_at = 0.0, 0.0

    def _file_waiting(self, conn: sqlite3.Connection, *, closing: bool = False) -> None:
        """`_file`, but a failure only leaves the copies for a later try (or, past `_FILE_AT_MOST` of them, for
        rebuilding from the entries' bytes): the entries themselves are committed already. After a failure
        the writer waits before trying again (doubling, up to `_FILE_BACKOFF_MAX`); searches still try."""
        if not closing and time.monotonic() < self._file_retry_at:
            if len(self._unfiled) >= _FILE_AT_MOST:
                self._unfiled.clear()  # read back from the entries' bytes when filing works again
            return
        try:
            self._file(conn)
        except Exception as exc:
            self._file_backoff = min(_FILE_BACKOFF_MAX, max(_FILE_WHEN_QUIET, 2 * self._file_backoff))
            self._file_retry_at = time.monotonic() + self._file_backoff
            _log.warning("audit_copies_not_filed", error_type=type(exc).__name__, waiting=len(self._unfiled),
                         retry_in=self._file_backoff)
            if len(self._unfiled) >= _FILE_AT_MOST:
                self._unfiled.clear()

    def _commit_appends(self, conn: sqlite3.Connection, batch: list[_Append]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            (next_index,) = conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM audit_entries").fetchone()
            rows = []
            copies: list[tuple[int, EntryMeta]] = []
            results: list[list[AuditReceipt]] = []
            for request in batch:
                receipts = []
                for pending in request.entries:
                    data = entry_bytes(next_index, pending.event_json)
                    digest = leaf_hash(data)
                    rows.append((next_index, digest, data))
                    copies.append((next_index, pending.meta))
                    receipts.append(AuditReceipt(next_index, digest))
                    next_index += 1
                results.append(receipts)
            conn.executemany("INSERT INTO audit_entries VALUES (?,?,?)", rows)
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            error = StoreUnavailable(f"the SQLite audit store did not commit: {exc}")
            for request in batch:
                _resolve(request.loop, request.future, None, error)
            return
        self._unfiled.extend(copies)
        for request, receipts in zip(batch, results, strict=True):
            _resolve(request.loop, request.future, receipts, None)

    def _enqueue(self, item: _Append | _Call) -> None:
        """Queue `item` for the writer, or refuse it if the store is closed or its writer has stopped: checked
        and queued under one lock, so nothing is queued behind the writer's last item and left waiting."""
        with self._queue_lock:
            if self._closed or self._stopped:
                raise StoreUnavailable("the SQLite audit store is closed")
            self._queue.put(item)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Call(fn, future, loop))
        return await future

    # -- readers -------------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable("the SQLite audit store is closed")

        def run() -> T:
            return fn(self._reader())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, run)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read the SQLite audit store: {exc}") from exc
        except EncodingError as exc:
            raise StoreError(f"the SQLite audit store holds a malformed value: {exc}") from exc

    # -- the port ------------------------------------------------------------------------------------

    async def append(self, entries: Sequence[PendingEntry]) -> list[AuditReceipt]:
        if self._closed or self._stopped:
            raise StoreUnavailable("the SQLite audit store is closed")
        if not entries:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[AuditReceipt]] = loop.create_future()
        self._enqueue(_Append(list(entries), future, loop))
        return await future

    async def size(self) -> int:
        def q(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM audit_entries").fetchone()[0])
        return await self._read(q)

    async def leaf_hashes(self, start: int, limit: int | None = None) -> list[bytes]:
        def q(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute("SELECT idx, leaf_hash FROM audit_entries WHERE idx >= ? ORDER BY idx LIMIT ?",
                                (start, -1 if limit is None else limit)).fetchall()
            return leaf_hashes_from_rows(rows, start)
        return await self._read(q)

    async def get_entry(self, index: int) -> StoredEntry | None:
        def q(conn: sqlite3.Connection) -> StoredEntry | None:
            row = conn.execute(f"SELECT idx, leaf_hash, {_DATA} FROM audit_entries WHERE idx = ?",  # noqa: S608
                               (index,)).fetchone()
            return None if row is None else StoredEntry(row[0], as_bytes(row[1]), as_bytes(row[2]))
        return await self._read(q)

    async def scan(self, start: int, limit: int) -> list[StoredEntry]:
        def q(conn: sqlite3.Connection) -> list[StoredEntry]:
            rows = conn.execute(f"SELECT idx, leaf_hash, {_DATA} FROM audit_entries WHERE idx >= ? "  # noqa: S608
                                "ORDER BY idx LIMIT ?", (start, limit)).fetchall()
            return [StoredEntry(i, as_bytes(h), as_bytes(d)) for i, h, d in rows]
        return await self._read(q)

    async def update_copies(self) -> None:
        """File the search copies of every entry committed so far (searches and verification do this first)."""
        try:
            await self._write(self._file)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"cannot file the SQLite audit store's search copies: {exc}") from exc

    def _filter_sql(self, where: EntryFilter, start: int, before: int | None) -> tuple[str, list[Any]]:
        clauses, params = filter_clauses(where, start, "?", before)
        if where.subject_tokens:
            tokens = sorted(where.subject_tokens)
            marks = ",".join("?" * len(tokens))
            clauses.append(f"idx IN (SELECT idx FROM audit_subject_tokens WHERE token IN ({marks}))")  # noqa: S608
            params.extend(tokens)
        clauses.append(f"idx < {_LOG_END}")  # a copy row past the log's end answers for no entry
        return " AND ".join(clauses), params

    async def find(self, where: EntryFilter, *, start: int, limit: int, before: int | None = None,
                   newest_first: bool = False) -> list[StoredEntry]:
        condition, params = self._filter_sql(where, start, before)
        order = "DESC" if newest_first else "ASC"
        sql = (f"SELECT idx, leaf_hash, {_DATA} FROM audit_entries WHERE idx IN (SELECT idx FROM audit_entry_meta "  # noqa: S608
               f"WHERE {condition} ORDER BY idx {order} LIMIT ?) ORDER BY idx {order}")
        params.append(limit)
        await self.update_copies()

        def q(conn: sqlite3.Connection) -> list[StoredEntry]:
            return [StoredEntry(i, as_bytes(h), as_bytes(d)) for i, h, d in conn.execute(sql, params).fetchall()]
        return await self._read(q)

    async def count(self, where: EntryFilter, *, before: int | None = None) -> int:
        condition, params = self._filter_sql(where, 0, before)
        sql = f"SELECT count(*) FROM audit_entry_meta WHERE {condition}"  # noqa: S608
        await self.update_copies()

        def q(conn: sqlite3.Connection) -> int:
            return int(conn.execute(sql, params).fetchone()[0])
        return await self._read(q)

    async def metadata_mismatches(self, start: int, end: int) -> dict[int, tuple[str, ...]]:
        await self.update_copies()

        def q(conn: sqlite3.Connection) -> dict[int, tuple[str, ...]]:
            return {row[0]: tuple(name for name, differs in zip(MISMATCH_NAMES, row[1:], strict=True) if differs)
                    for row in conn.execute(_MISMATCH_SQL, (start, end))}
        return await self._read(q)

    async def add_checkpoint(self, checkpoint: SignedCheckpoint) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            latest = conn.execute("SELECT tree_size, ts FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
                                  ).fetchone()
            ts = format_timestamp(checkpoint.timestamp)
            if latest is not None and (ts <= latest[1] or checkpoint.tree_size < latest[0]):
                conn.execute("ROLLBACK")
                raise CheckpointConflict("checkpoint is not later than the latest stored one")
            (size,) = conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM audit_entries").fetchone()
            if checkpoint.tree_size > size:
                conn.execute("ROLLBACK")
                raise CheckpointConflict("checkpoint covers entries the store does not hold")
            conn.execute("INSERT INTO audit_checkpoints (tree_size, root_hash, ts, key_id, signature) "
                         "VALUES (?,?,?,?,?)", (checkpoint.tree_size, checkpoint.root_hash, ts,
                                                checkpoint.key_id, checkpoint.signature))
            conn.execute("COMMIT")

        try:
            await self._write(w)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot store the checkpoint: {exc}") from exc

    async def latest_checkpoint(self) -> SignedCheckpoint | None:
        def q(conn: sqlite3.Connection) -> SignedCheckpoint | None:
            row = conn.execute("SELECT tree_size, root_hash, ts, key_id, signature FROM audit_checkpoints "
                               "ORDER BY seq DESC LIMIT 1").fetchone()
            return None if row is None else row_to_checkpoint(row)
        return await self._read(q)

    async def checkpoints(self) -> list[SignedCheckpoint]:
        def q(conn: sqlite3.Connection) -> list[SignedCheckpoint]:
            rows = conn.execute("SELECT tree_size, root_hash, ts, key_id, signature FROM audit_checkpoints "
                                "ORDER BY seq").fetchall()
            return [row_to_checkpoint(r) for r in rows]
        return await self._read(q)

    async def check_writable(self) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            # Written and removed in one committed transaction: the commit really reaches the disk (a full
            # file system or page limit shows), and no reader ever sees the row.
            conn.execute("INSERT INTO audit_entries VALUES (-1, x'', zeroblob(?))", (PROBE_BYTES,))
            conn.execute("DELETE FROM audit_entries WHERE idx = -1")
            conn.execute(_META_INSERT, _meta_row(-1, _EMPTY_META))  # the copies' table and indexes too
            conn.execute("DELETE FROM audit_entry_meta WHERE idx = -1")
            conn.execute("COMMIT")

        try:
            await self._write(w)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the SQLite audit store cannot take writes: {exc}") from exc

    async def add_cosignature(self, tree_size: int, root_hash: bytes, line: str) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO audit_cosignatures (tree_size, root_hash, line) VALUES (?,?,?)",
                         (tree_size, root_hash, line))

        try:
            await self._write(w)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot store the cosignature: {exc}") from exc

    async def cosignatures(self) -> list[tuple[int, bytes, str]]:
        def q(conn: sqlite3.Connection) -> list[tuple[int, bytes, str]]:
            rows = conn.execute("SELECT tree_size, root_hash, line FROM audit_cosignatures "
                                "ORDER BY tree_size, line").fetchall()
            return [(int(r[0]), as_bytes(r[1]), str(r[2])) for r in rows]
        return await self._read(q)

    async def close(self) -> None:
        with self._queue_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)  # the writer's last item: `_enqueue` queues nothing after it
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._pool.shutdown, True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
