"""Auditor use cases, transport-free: list and read entries, checkpoints, proofs, subject access, export.

`verify_export` checks an exported bundle offline, with no database: the bundle holds every entry's
canonical bytes, every checkpoint and the checkpoint public keys, plus a manifest of file digests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import tarfile
import tempfile
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from gateway.audit.checkpoint import (
    CheckpointKeyError,
    CheckpointSignatureError,
    PublicKeys,
    SignedCheckpoint,
    key_fingerprint,
)
from gateway.audit.encoding import EncodingError, decode_entry, format_timestamp
from gateway.audit.log import AuditLog, CheckpointUnavailable
from gateway.audit.merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion
from gateway.audit.note import Verifier
from gateway.audit.store import DisclosureStore, EntryFilter, StoredEntry, StoreError
from gateway.audit.verify import LogVerifier, Problem, VerifyReport, verify_store
from gateway.domain import AuditEvent, SystemClock
from gateway.errors import FieldViolation, InvalidRequest, NotFound

BUNDLE_FORMAT = "mash-gateway-audit-export"
BUNDLE_VERSION = 1
ENTRIES_FILE = "entries.txt"
CHECKPOINTS_FILE = "checkpoints.jsonl"
MANIFEST_FILE = "manifest.json"
_PAGE = 500
_MAX_INDEX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One decoded entry: where it is, its leaf hash, what it says, and its exact stored bytes."""

    index: int
    leaf_hash: bytes
    event: AuditEvent
    data: bytes


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Proof that entry `index` is in the tree of `tree_size` entries with head `root_hash`.

    `leaf_hash` is recomputed from `entry` (the stored entry bytes), and `checkpoint` is a stored signed
    checkpoint of that tree size, if there is one; `verify` checks the proof against it.
    """

    index: int
    tree_size: int
    leaf_hash: bytes
    path: tuple[bytes, ...]
    root_hash: bytes
    checkpoint: SignedCheckpoint | None  # the signed checkpoint for this tree size, if there is one
    entry: bytes = b""  # the canonical entry bytes the leaf hash was computed from

    def root_signed(self, keys: PublicKeys) -> bool:
        """Whether `root_hash` is the root of a checkpoint that verifies under `keys`."""
        return _is_signed(self.checkpoint, self.tree_size, self.root_hash, keys)

    def verify(self, keys: PublicKeys) -> None:
        """Raise ProofError unless the entry bytes, through the path, lead to a root signed under `keys`."""
        if self.entry and leaf_hash(self.entry) != self.leaf_hash:
            raise ProofError(f"entry {self.index}'s bytes do not hash to the proof's leaf hash")
        signed = _check_signed(self.checkpoint, self.tree_size, keys)
        if signed.root_hash != self.root_hash:
            raise ProofError(f"the log's root at tree size {self.tree_size} is not the signed checkpoint's root")
        verify_inclusion(self.index, self.tree_size, self.leaf_hash, self.path, signed.root_hash)


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """Proof that the tree of `size1` entries is a prefix of the tree of `size2` entries.

    `checkpoint1` and `checkpoint2` are stored signed checkpoints of those sizes, if there are any;
    `verify` checks the proof between their signed roots.
    """

    size1: int
    size2: int
    root1: bytes
    root2: bytes
    path: tuple[bytes, ...]
    checkpoint1: SignedCheckpoint | None = None
    checkpoint2: SignedCheckpoint | None = None

    def roots_signed(self, keys: PublicKeys) -> tuple[bool, bool]:
        """Whether `root1` and `root2` are roots of checkpoints that verify under `keys`."""
        return (_is_signed(self.checkpoint1, self.size1, self.root1, keys),
                _is_signed(self.checkpoint2, self.size2, self.root2, keys))

    def verify(self, keys: PublicKeys) -> None:
        """Raise ProofError unless the path proves the signed checkpoint of `size1` a prefix of that of `size2`."""
        first = _check_signed(self.checkpoint1, self.size1, keys)
        second = _check_signed(self.checkpoint2, self.size2, keys)
        verify_consistency(self.size1, self.size2, first.root_hash, second.root_hash, self.path)


def _is_signed(checkpoint: SignedCheckpoint | None, tree_size: int, root: bytes, keys: PublicKeys) -> bool:
    try:
        return _check_signed(checkpoint, tree_size, keys).root_hash == root
    except ProofError:
        return False


def _check_signed(checkpoint: SignedCheckpoint | None, tree_size: int, keys: PublicKeys) -> SignedCheckpoint:
    if checkpoint is None or checkpoint.tree_size != tree_size:
        raise ProofError(f"there is no signed checkpoint at tree size {tree_size}, so its root is unsigned")
    try:
        keys.verify(checkpoint)
    except CheckpointSignatureError as exc:
        raise ProofError(f"the checkpoint at tree size {tree_size} does not verify: {exc}") from exc
    return checkpoint


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What an export wrote."""

    path: Path
    entries: int
    checkpoints: int
    root_hash: bytes
    key_fingerprints: dict[str, str]
    left_out: int = 0  # entries after the newest checkpoint, not exported because no signature covers them


def _decode(row: StoredEntry) -> AuditRecord:
    try:
        decoded = decode_entry(row.data)
    except EncodingError as exc:
        raise StoreError(f"entry {row.index} is malformed ({exc}); run `audit verify`") from exc
    return AuditRecord(row.index, row.leaf_hash, decoded.event, row.data)


class AuditReview:
    """What auditors may do with the log; `keys` verify checkpoints.

    Given a running `AuditLog`, proofs come from its tree. Given only a store (the auditors' CLI), listing,
    verification and export read the store as it is, so they work on a damaged log and report the damage;
    the tree for proofs is loaded on first use, and loading refuses a log that fails its own checks.
    """

    def __init__(self, source: AuditLog | DisclosureStore, keys: PublicKeys) -> None:
        self._log = source if isinstance(source, AuditLog) else None
        self.store: DisclosureStore = source.store if isinstance(source, AuditLog) else source
        self.keys = keys
        self._log_lock = asyncio.Lock()

    async def log(self) -> AuditLog:
        """The audit log whose tree proofs come from; opened read-only on first use if none was given."""
        async with self._log_lock:
            if self._log is None:
                self._log = await AuditLog.open(self.store, None, SystemClock(), checkpoint_interval=None,
                                                keys=self.keys or None)
            return self._log

    async def list_entries(self, where: EntryFilter | None = None, *, limit: int | None = None,
                           start: int = 0, before: int | None = None,
                           newest_first: bool = False) -> AsyncIterator[AuditRecord]:
        """Entries matching `where` with `start <= index` (and `index < before`), in index order or newest
        first, fetched page by page."""
        where = where or EntryFilter()
        if where.since is not None and where.until is not None and where.since >= where.until:
            raise InvalidRequest([FieldViolation("until", "must be later than since")])
        if limit is not None and limit < 0:
            raise InvalidRequest([FieldViolation("limit", "must not be negative")])
        if start > _MAX_INDEX or (before is not None and before <= max(start, 0)):
            return  # no store holds that many entries (and SQL integers stop at 2**63 - 1)
        before = None if before is None or before > _MAX_INDEX else before
        remaining = limit
        while remaining is None or remaining > 0:
            page = _PAGE if remaining is None else min(_PAGE, remaining)
            rows = await self.store.find(where, start=start, limit=page, before=before, newest_first=newest_first)
            for row in rows:
                yield _decode(row)
            if remaining is not None:
                remaining -= len(rows)
            if len(rows) < page:
                return
            if newest_first:
                before = rows[-1].index
            else:
                start = rows[-1].index + 1

    async def count(self, where: EntryFilter | None = None, *, before: int | None = None) -> int:
        """How many entries match `where` (with `index < before`, if given)."""
        return await self.store.count(where or EntryFilter(), before=None if before is None or before > _MAX_INDEX
                                      else before)

    async def get_entry(self, index: int) -> AuditRecord:
        if index < 0:
            raise InvalidRequest([FieldViolation("index", "must not be negative")])
        if index > _MAX_INDEX:
            raise NotFound(f"no audit entry {index}")
        row = await self.store.get_entry(index)
        if row is None:
            raise NotFound(f"no audit entry {index}")
        return _decode(row)

    async def latest_checkpoint(self) -> SignedCheckpoint:
        checkpoint = await self.store.latest_checkpoint()
        if checkpoint is None:
            raise NotFound("the audit log has no checkpoint yet")
        return checkpoint

    async def checkpoint_at(self, tree_size: int) -> SignedCheckpoint:
        """The stored checkpoint of exactly `tree_size` entries; NotFound if there is none."""
        checkpoint = await self._signed_at(tree_size, await self.store.latest_checkpoint())
        if checkpoint is None:
            raise NotFound(f"the audit log has no checkpoint of tree size {tree_size}")
        return checkpoint

    async def cosignatures(self, checkpoint: SignedCheckpoint) -> tuple[str, ...]:
        """The witness cosignature lines stored for `checkpoint` (not verified here: a verifier checks them)."""
        return tuple(line for size, root, line in await self.store.cosignatures()
                     if size == checkpoint.tree_size and root == checkpoint.root_hash)

    async def _signed_at(self, tree_size: int, latest: SignedCheckpoint | None) -> SignedCheckpoint | None:
        """The newest stored checkpoint of exactly `tree_size` entries, if any."""
        if latest is not None and latest.tree_size == tree_size:
            return latest
        for checkpoint in reversed(await self.store.checkpoints()):
            if checkpoint.tree_size == tree_size:
                return checkpoint
        return None

    async def inclusion_proof(self, index: int, tree_size: int | None = None) -> InclusionProof:
        """Prove entry `index` against `tree_size` (default: the latest checkpoint that covers it).

        The leaf hash is recomputed from the stored entry bytes, not taken from the tree, so a proof for an
        entry changed after the tree was loaded does not verify.
        """
        log = await self.log()
        latest = await self.store.latest_checkpoint()
        if tree_size is None:
            if latest is not None and index < latest.tree_size:
                tree_size = latest.tree_size
            else:
                tree_size = await log.sync()
        if not 0 <= index < tree_size:
            raise InvalidRequest([FieldViolation("index", f"must be in 0..{tree_size - 1} for tree size "
                                                          f"{tree_size}")])
        try:
            path = await log.inclusion_proof(index, tree_size)
        except ProofError as exc:
            raise InvalidRequest([FieldViolation("tree_size", str(exc))]) from exc
        row = await self.store.get_entry(index)
        if row is None:
            raise NotFound(f"no audit entry {index}")
        return InclusionProof(
            index=index, tree_size=tree_size, leaf_hash=leaf_hash(row.data), path=tuple(path),
            root_hash=await log.root(tree_size), checkpoint=await self._signed_at(tree_size, latest),
            entry=row.data)

    async def consistency_proof(self, size1: int, size2: int | None = None) -> ConsistencyProof:
        """Prove the log of `size1` entries is a prefix of the log of `size2` (default: the latest checkpoint's
        size, or the current size if there is none), with the signed checkpoints of both sizes if stored."""
        log = await self.log()
        latest = await self.store.latest_checkpoint()
        if size2 is None:
            size2 = latest.tree_size if latest is not None and latest.tree_size >= size1 else await log.sync()
        if not 0 < size1 <= size2:
            raise InvalidRequest([FieldViolation("size1", f"need 0 < size1 <= size2 (size2 is {size2})")])
        try:
            path = await log.consistency_proof(size1, size2)
        except ProofError as exc:
            raise InvalidRequest([FieldViolation("size2", str(exc))]) from exc
        return ConsistencyProof(size1, size2, await log.root(size1), await log.root(size2), tuple(path),
                                checkpoint1=await self._signed_at(size1, latest),
                                checkpoint2=await self._signed_at(size2, latest))

    async def subject_access(self, tokens: Collection[str], where: EntryFilter | None = None, *,
                             before: int | None = None) -> AsyncIterator[AuditRecord]:
        """Every entry about the person whose subject tokens (under every key id) are `tokens`, narrowed by the
        other criteria of `where` (and to `index < before`) if given."""
        wanted = frozenset(t for t in tokens if t)
        if not wanted:
            raise InvalidRequest([FieldViolation("subject", "no subject token could be computed")])
        async for record in self.list_entries(dataclasses.replace(where or EntryFilter(), subject_tokens=wanted),
                                              before=before):
            yield record

    async def _fresh_checkpoint(self) -> SignedCheckpoint | None:
        """Checkpoint now if this review has a running log with a signing key, so recent entries are covered."""
        if self._log is None or not self._log.can_checkpoint:
            return None
        try:
            return await self._log.checkpoint()
        except CheckpointUnavailable:
            return None  # e.g. the store contradicts the latest checkpoint: the verification will say so

    async def verify(self, trusted: Sequence[SignedCheckpoint] = (), *, require_coverage: bool = True,
                     witnesses: Sequence[Verifier] = (), quorum: int = 0) -> VerifyReport:
        """Verify the log. With a signing log, as of a checkpoint made now (later appends are not part of it);
        otherwise everything stored, and entries after the newest checkpoint count as not verified (a problem
        only with `require_coverage`). The log must also hold and match the `trusted` checkpoints the auditor
        kept, and with a `quorum` the checkpoints that many `witnesses` cosigned."""
        fresh = await self._fresh_checkpoint()
        return await verify_store(self.store, self.keys, up_to=None if fresh is None else fresh.tree_size,
                                  trusted=trusted, require_coverage=require_coverage, witnesses=witnesses,
                                  quorum=quorum)

    async def export(self, dest: Path) -> ExportSummary:
        """Write a self-contained bundle (a directory, or a tar file if `dest` ends in `.tar`) of the log up to its
        newest signed checkpoint, so every exported entry is covered by a signature.

        With a signing log a checkpoint is made first; otherwise entries after the newest checkpoint are left
        out (counted in `left_out`). Damage is exported as stored, for `verify_export` to report.
        """
        bundle = await self._bundle()
        try:
            await asyncio.to_thread(_write_bundle, dest, bundle)
        finally:
            bundle.close()
        return ExportSummary(dest, bundle.entries, bundle.checkpoints, bundle.root_hash, bundle.fingerprints,
                             bundle.left_out)

    async def export_chunks(self, chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]:
        """The tar bundle `export` writes, in chunks of at most `chunk_size` bytes, for streaming to a client.

        Entries are spooled to a temporary file and every file operation runs in a worker thread, so a large
        export neither sits in memory nor holds up the event loop.
        """
        bundle = await self._bundle()
        try:
            pieces = _rechunk(_tar_pieces(bundle), chunk_size)
            while chunk := await asyncio.to_thread(next, pieces, b""):
                yield chunk
        finally:
            bundle.close()  # synchronous: this also runs when a client abandons the stream

    async def _bundle(self) -> _Bundle:
        """Collect the bundle of the log up to its newest signed checkpoint; the entries go to a temporary file."""
        await self._fresh_checkpoint()
        checkpoints = await self.store.checkpoints()
        if not checkpoints:
            raise NotFound("the audit log has no signed checkpoint yet; make one (`mash-gateway audit checkpoint`) "
                           "before exporting")
        size = max(0, checkpoints[-1].tree_size)
        checkpoints = [cp for cp in checkpoints if cp.tree_size <= size]
        spool = await asyncio.to_thread(tempfile.TemporaryFile)
        try:
            digest = hashlib.sha256()
            verifier = LogVerifier([], None, require_coverage=False)
            start = 0
            while start < size:
                rows = [row for row in await self.store.scan(start, min(_PAGE, size - start)) if row.index < size]
                if not rows:
                    break
                await asyncio.to_thread(_spool, spool, digest, rows)
                verifier.feed(rows)
                start = rows[-1].index + 1
                del rows  # one page in memory at a time, not two while the next is fetched
            report = verifier.finish()
            files: dict[str, bytes] = {
                CHECKPOINTS_FILE: b"".join(json.dumps(cp.to_dict(), sort_keys=True).encode() + b"\n"
                                           for cp in checkpoints),
            }
            fingerprints = {}
            for kid in sorted(self.keys):
                files[f"keys/{kid}.pub"] = self.keys.pem(kid)
                fingerprints[kid] = key_fingerprint(self.keys[kid])
            digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
            digests[ENTRIES_FILE] = digest.hexdigest()
            manifest = {
                "format": BUNDLE_FORMAT,
                "version": BUNDLE_VERSION,
                "created_at": format_timestamp(datetime.now(UTC)),
                "entries": report.entries,
                "checkpoints": len(checkpoints),
                "root_hash": report.root_hash.hex(),
                "key_fingerprints": fingerprints,
                "files": dict(sorted(digests.items())),
            }
            files[MANIFEST_FILE] = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
            return _Bundle(files=files, entries_file=spool, entries_size=spool.tell(), entries=report.entries,
                           checkpoints=len(checkpoints), root_hash=report.root_hash, fingerprints=fingerprints,
                           left_out=max(0, await self.store.size() - size))
        except BaseException:
            spool.close()
            raise


@dataclass(slots=True)
class _Bundle:
    """An export bundle being written: the small files in memory, the entries in a temporary file."""

    files: dict[str, bytes]
    entries_file: IO[bytes]
    entries_size: int
    entries: int
    checkpoints: int
    root_hash: bytes
    fingerprints: dict[str, str]
    left_out: int

    def names(self) -> list[str]:
        return sorted([*self.files, ENTRIES_FILE])

    def copy_entries(self, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        self.entries_file.seek(0)
        while chunk := self.entries_file.read(chunk_size):
            yield chunk

    def close(self) -> None:
        self.entries_file.close()


def _spool(spool: IO[bytes], digest: Any, rows: Sequence[StoredEntry]) -> None:
    for row in rows:
        line = b"%d\t%s\t" % (row.index, row.leaf_hash.hex().encode()) + row.data + b"\n"
        spool.write(line)
        digest.update(line)


def _tar_pieces(bundle: _Bundle) -> Iterator[bytes]:
    """The bundle as a tar stream (what `tarfile` writes), piece by piece."""
    for name in bundle.names():
        info = tarfile.TarInfo(name)
        info.size = bundle.entries_size if name == ENTRIES_FILE else len(bundle.files[name])
        info.mode = 0o644
        yield info.tobuf(tarfile.DEFAULT_FORMAT, tarfile.ENCODING, "surrogateescape")
        if name == ENTRIES_FILE:
            yield from bundle.copy_entries()
        else:
            yield bundle.files[name]
        yield tarfile.NUL * (-info.size % tarfile.BLOCKSIZE)
    end = 2 * tarfile.BLOCKSIZE
    yield tarfile.NUL * end
    # tarfile pads an archive to whole records; the stream ends the same way.
    yield tarfile.NUL * (-end % tarfile.RECORDSIZE)


def _rechunk(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The same bytes in chunks of exactly `size` (the last may be shorter)."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def _write_bundle(dest: Path, bundle: _Bundle) -> None:
    if dest.exists() and (dest.is_file() or any(dest.iterdir())):
        raise InvalidRequest([FieldViolation("path", "export destination already exists and is not empty")])
    if dest.name.endswith(".tar"):
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as out:
            for piece in _tar_pieces(bundle):
                out.write(piece)
        return
    for name in bundle.names():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for piece in bundle.copy_entries() if name == ENTRIES_FILE else (bundle.files[name],):
                out.write(piece)


def read_chunks(path: Path, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """The bytes of an exported tar bundle in chunks, for streaming it to a client."""
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_size):
            yield chunk


def _read_bundle(path: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if path.is_dir():
        for item in path.rglob("*"):
            if item.is_file():
                files[item.relative_to(path).as_posix()] = item.read_bytes()
        return files
    with tarfile.open(path, "r") as tar:
        # Read members into memory only; nothing from the archive is written to disk.
        for member in tar.getmembers():
            if member.isfile():
                fh = tar.extractfile(member)
                if fh is not None:
                    files[member.name] = fh.read()
    return files


def _bundle_problem(message: str) -> VerifyReport:
    return VerifyReport(ok=False, entries=0, checkpoints=0, tree_size=0, root_hash=b"",
                        first_bad_entry=None, first_bad_checkpoint=None, suspect_range=None,
                        problems=(Problem("bundle", message),))


def _parse_entries(blob: bytes) -> Iterator[StoredEntry]:
    for number, line in enumerate(blob.split(b"\n")[:-1] if blob else []):
        parts = line.split(b"\t", 2)
        if len(parts) != 3:
            raise ValueError(f"line {number + 1} of {ENTRIES_FILE} is malformed")
        yield StoredEntry(int(parts[0]), bytes.fromhex(parts[1].decode()), parts[2])


def verify_export(path: Path, *, trusted_keys: PublicKeys | None = None,
                  trusted_checkpoints: Sequence[SignedCheckpoint] = ()) -> VerifyReport:
    """Verify a bundle written by `AuditReview.export` offline.

    With `trusted_keys` (obtained out of band) the checkpoints must verify under those keys; otherwise the
    bundle's own keys are used and their fingerprints must be compared by the auditor. The bundle must also
    hold and match every one of `trusted_checkpoints` (checkpoints the auditor kept).
    """
    try:
        files = _read_bundle(path)
    except (OSError, tarfile.TarError) as exc:
        return _bundle_problem(f"cannot read the bundle: {exc}")
    try:
        manifest: dict[str, Any] = json.loads(files[MANIFEST_FILE])
        if manifest.get("format") != BUNDLE_FORMAT or manifest.get("version") != BUNDLE_VERSION:
            return _bundle_problem("not an audit export bundle of a known version")
        listed: dict[str, str] = manifest["files"]
    except (KeyError, ValueError, TypeError, AttributeError):
        return _bundle_problem("the bundle has no readable manifest.json")
    for name, digest in sorted(listed.items()):
        if name not in files:
            return _bundle_problem(f"{name} is missing from the bundle")
        if hashlib.sha256(files[name]).hexdigest() != digest:
            return _bundle_problem(f"{name} does not match the manifest")
    extra = sorted(set(files) - set(listed) - {MANIFEST_FILE})
    if extra:
        return _bundle_problem(f"unexpected files in the bundle: {', '.join(extra)}")
    try:
        bundle_keys = PublicKeys.from_pem({name[5:-4]: data for name, data in files.items()
                                           if name.startswith("keys/") and name.endswith(".pub")})
        checkpoints = [SignedCheckpoint.from_dict(json.loads(line))
                       for line in files.get(CHECKPOINTS_FILE, b"").splitlines() if line.strip()]
        rows = list(_parse_entries(files.get(ENTRIES_FILE, b"")))
    except (CheckpointKeyError, CheckpointSignatureError, ValueError, TypeError) as exc:
        return _bundle_problem(f"the bundle is malformed: {exc}")
    verifier = LogVerifier(checkpoints, trusted_keys if trusted_keys is not None else bundle_keys,
                           trusted=trusted_checkpoints)
    verifier.feed(rows)
    report = verifier.finish()
    if report.ok and (report.entries != manifest.get("entries") or report.root_hash.hex() !=
                      manifest.get("root_hash")):
        return _bundle_problem("the manifest's entry count or root does not match the entries")
    return report
