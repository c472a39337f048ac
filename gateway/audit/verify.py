"""Full verification of an audit log: every entry's bytes, position and leaf, the tree, and every checkpoint.

Each stored entry's leaf hash is recomputed from its canonical bytes and checked against the stored hash
and the index the entry claims for itself; the recomputed tree must match every signed checkpoint. This
finds altered, deleted, reordered and inserted entries and altered checkpoints, and names the first bad
entry (and checkpoint). An attacker who rewrites every later entry consistently is still caught by the
checkpoints, but can then only be located to the range between two checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.audit.checkpoint import CheckpointSignatureError, PublicKeys, SignedCheckpoint
from gateway.audit.encoding import SCHEMA_VERSION
from gateway.audit.merkle import MerkleTree
from gateway.audit.note import NoteError, Signature, Verifier, note_text, parse_signature_lines, verify_signature
from gateway.audit.store import DisclosureStore, StoredEntry, StoreError
from gateway.tasks import read_outcome

_MAX_PROBLEMS = 100
_BATCH = 5000
_AHEAD = 2  # batches read and compared ahead of the one being hashed
_Batch = tuple[list[StoredEntry], "asyncio.Future[dict[int, tuple[str, ...]]] | Exception | None"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the log, located by entry index and/or checkpoint position (0 = oldest)."""

    # altered | missing | moved | malformed | truncated | bad_signature | root_mismatch | order | uncovered
    # | unwitnessed
    kind: str
    message: str
    entry: int | None = None
    checkpoint: int | None = None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of verifying a whole log."""

    ok: bool
    entries: int
    checkpoints: int
    tree_size: int
    root_hash: bytes
    first_bad_entry: int | None
    first_bad_checkpoint: int | None
    suspect_range: tuple[int, int] | None  # [start, end) when only a checkpoint root locates the damage
    problems: tuple[Problem, ...]
    seconds: float = 0.0
    key_ids: tuple[str, ...] = field(default=())
    uncovered: int = 0  # entries after the newest checkpoint: no signature vouches for them

    def summary(self) -> str:
        if self.ok:
            return (f"OK: {self.entries} entries and {self.checkpoints} checkpoints verify; "
                    f"root {self.root_hash.hex()}")
        where = []
        if self.first_bad_entry is not None:
            where.append(f"first bad entry {self.first_bad_entry}")
        elif self.suspect_range is not None:
            where.append(f"damage within entries {self.suspect_range[0]}..{self.suspect_range[1] - 1}")
        if self.first_bad_checkpoint is not None:
            where.append(f"first bad checkpoint #{self.first_bad_checkpoint}")
        if not where:
            return f"FAILED: {self.problems[0].message}"
        return f"FAILED: {'; '.join(where)}: {self.problems[0].message}"


def _envelope(data: bytes) -> tuple[int | None, int | None]:
    """The index and schema version an entry claims, read from its fixed canonical tail.

    Canonical entries are ``{"event":{…},"index":N,"v":V}``; the event's own text cannot contain the
    tail's unescaped quotes, so the last ``,"index":`` is the envelope's. The leaf hash covers the rest.
    """
    if not data.startswith(b'{"event":{') or not data.endswith(b"}"):
        return None, None
    pos = data.rfind(b',"index":')
    if pos < 0:
        return None, None
    tail = data[pos + 9:-1]
    number, sep, version = tail.partition(b',"v":')
    if not sep or not number.isdigit() or not version.isdigit():
        return None, None
    return int(number), int(version)


def checked_leaf(row: StoredEntry) -> bytes:
    """The leaf hash recomputed from `row`'s bytes; raises StoreError unless it matches the stored hash and
    the row sits at the index it was written with."""
    digest = hashlib.sha256(b"\x00" + row.data).digest()
    if digest != row.leaf_hash:
        raise StoreError(f"entry {row.index} does not match its leaf hash")
    claimed, version = _envelope(row.data)
    if claimed != row.index or version != SCHEMA_VERSION:
        raise StoreError(f"entry {row.index} is not a valid entry written at that index")
    return digest


class LogVerifier:
    """Feeds stored rows in index order through the checks; `finish` returns the report."""

    def __init__(self, checkpoints: Sequence[SignedCheckpoint], keys: PublicKeys | None, *,
                 require_coverage: bool = True, trusted: Sequence[SignedCheckpoint] = (),
                 witnessed: Sequence[tuple[int, bytes]] | None = None) -> None:
        """With `keys` None the checkpoints' signatures are not checked (only their roots against the entries).

        With `require_coverage`, entries no checkpoint covers (all of them if there is no checkpoint) are a
        problem: nothing signed vouches for them, so they cannot be called verified.

        `trusted` are checkpoints the auditor kept outside the store: the log must still hold at least their
        entries and match their roots, which exposes deletions and rewrites an attacker also covered by
        replacing the stored checkpoints.

        `witnessed` are the (tree size, root) pairs a quorum of witnesses cosigned. When given (even empty),
        only they and `trusted` count as covering entries: the log's own signature is not enough.
        """
        self._require_coverage = require_coverage
        self._trusted = list(trusted)
        self._witnessed = None if witnessed is None else list(witnessed)
        self._tree = MerkleTree()
        self._checkpoints = list(checkpoints)
        self._keys = keys
        self._problems: list[Problem] = []
        self._first_bad_entry: int | None = None
        self._first_bad_checkpoint: int | None = None
        self._suspect: tuple[int, int] | None = None
        self._expected = 0
        self._aligned = True  # every row so far sat at its expected index, so tree position == index
        self._started = time.perf_counter()
        # Checkpoints whose root we compare when the tree reaches their size, smallest size first.
        self._by_size = sorted((i for i, cp in enumerate(self._checkpoints) if cp.tree_size >= 0),
                               key=lambda i: self._checkpoints[i].tree_size)
        self._next_cp = 0
        self._last_good_size = 0
        self._check_checkpoint_sequence()
        self._compare_roots()

    def _problem(self, problem: Problem) -> None:
        if problem.entry is not None and (self._first_bad_entry is None or problem.entry < self._first_bad_entry):
            self._first_bad_entry = problem.entry
        if problem.checkpoint is not None and (self._first_bad_checkpoint is None
                                               or problem.checkpoint < self._first_bad_checkpoint):
            self._first_bad_checkpoint = problem.checkpoint
        if len(self._problems) < _MAX_PROBLEMS:
            self._problems.append(problem)

    @property
    def tree(self) -> MerkleTree:
        """The tree of leaf hashes recomputed from the entry bytes fed so far."""
        return self._tree

    def report_problem(self, problem: Problem) -> None:
        """Add a problem found outside the verifier (e.g. rows the store could not read)."""
        self._problem(problem)

    def _check_checkpoint_sequence(self) -> None:
        previous: SignedCheckpoint | None = None
        for position, cp in enumerate(self._checkpoints):
            if cp.tree_size < 0:
                self._problem(Problem("malformed", f"checkpoint #{position} claims a negative tree size",
                                      checkpoint=position))
                continue
            try:
                if self._keys is not None:
                    self._keys.verify(cp)
            except CheckpointSignatureError as exc:
                self._problem(Problem("bad_signature", f"checkpoint #{position}: {exc}", checkpoint=position))
            if previous is not None and (cp.timestamp <= previous.timestamp or cp.tree_size < previous.tree_size):
                self._problem(Problem("order", f"checkpoint #{position} is not later than the one before it",
                                      checkpoint=position))
            previous = cp

    def _compare_roots(self) -> None:
        size = self._tree.size
        while self._next_cp < len(self._by_size):
            position = self._by_size[self._next_cp]
            cp = self._checkpoints[position]
            if cp.tree_size > size:
                return
            if self._tree.root(cp.tree_size) != cp.root_hash:
                if self._first_bad_entry is None and self._suspect is None:
                    self._suspect = (self._last_good_size, cp.tree_size)
                self._problem(Problem(
                    "root_mismatch",
                    f"checkpoint #{position} (tree size {cp.tree_size}) does not match the entries",
                    checkpoint=position))
            elif self._suspect is None:
                self._last_good_size = cp.tree_size
            self._next_cp += 1

    def _blame_moved(self, index: int, claimed: int, digest: bytes, batch: list[bytes]) -> int:
        """Which index to name for a row at `index` written as entry `claimed`.

        A row claiming a later position, or a byte-identical copy of the entry already at `claimed` (a replay),
        is itself the bad row. A different entry claiming an earlier position means rows were shifted by an
        insertion at or after `claimed`, so the damage starts there.
        """
        if claimed > index or not self._aligned:
            return index
        size = self._tree.size
        earlier = self._tree.leaf(claimed) if claimed < size else batch[claimed - size]
        return index if earlier == digest else claimed

    def feed(self, rows: Iterable[StoredEntry]) -> None:
        sha = hashlib.sha256
        digests: list[bytes] = []
        for row in rows:
            index, data = row.index, row.data
            if index != self._expected:
                self._aligned = False
                if index > self._expected:
                    self._problem(Problem("missing", f"entries {self._expected}..{index - 1} are missing",
                                          entry=self._expected))
                else:
                    self._problem(Problem("order", f"entry {index} appears out of order", entry=index))
            self._expected = index + 1
            digest = sha(b"\x00" + data).digest()
            digests.append(digest)
            if digest != row.leaf_hash:
                self._problem(Problem("altered", f"entry {index} does not match its leaf hash", entry=index))
            claimed, version = _envelope(data)
            if claimed is None:
                self._problem(Problem("malformed", f"entry {index} is not a valid entry", entry=index))
            elif claimed != index:
                self._problem(Problem("moved", f"entry at index {index} was written as entry {claimed}",
                                      entry=self._blame_moved(index, claimed, digest, digests)))
            elif version != SCHEMA_VERSION:
                self._problem(Problem("malformed", f"entry {index} has unknown schema version {version}",
                                      entry=index))
        # Roots of every size stay computable from the level arrays, so checkpoints are compared per batch.
        self._tree.extend(digests)
        self._compare_roots()

    def report_meta_mismatches(self, mismatches: Mapping[int, Sequence[str]]) -> None:
        """Report entries whose stored filter columns or subject-token rows disagree with their own bytes (as
        found by the store's `metadata_mismatches`), naming what differs but never the values.

        Listing and subject access search those copies, so a changed user id or a deleted token row would
        hide an entry from them without touching the signed bytes.
        """
        for index in sorted(mismatches):
            differing = ["subject tokens" if name == "subject_tokens" else name for name in mismatches[index]]
            if differing:
                self._problem(Problem("altered", f"entry {index}'s stored {', '.join(differing)} do not match "
                                      "the entry (listing and subject access would mislead)", entry=index))

    def _check_trusted(self, size: int) -> list[int]:
        """Check the auditor's own checkpoints against the whole tree; returns the sizes they vouch for."""
        vouched = []
        for cp in self._trusted:
            label = f"your trusted checkpoint (tree size {cp.tree_size})"
            try:
                if self._keys is not None:
                    self._keys.verify(cp)
            except CheckpointSignatureError as exc:
                self._problem(Problem("bad_signature", f"{label}: {exc}"))
                continue
            if cp.tree_size < 0:
                self._problem(Problem("malformed", f"{label} claims a negative tree size"))
            elif cp.tree_size > size:
                self._problem(Problem("truncated", f"{label} vouches for {cp.tree_size} entries but the log holds "
                                      f"{size}: entries were removed", entry=size))
            elif self._tree.root(cp.tree_size) != cp.root_hash:
                if self._first_bad_entry is None and self._suspect is None:
                    self._suspect = (0, cp.tree_size)
                self._problem(Problem("root_mismatch", f"the log does not match {label}: its history was "
                                      "rewritten since"))
            else:
                vouched.append(cp.tree_size)
        return vouched

    def _check_witnessed(self, size: int) -> list[int]:
        """Check the checkpoints a quorum of witnesses cosigned against the tree; returns the sizes they vouch for."""
        vouched = []
        for tree_size, root in self._witnessed or ():
            label = f"the witnessed checkpoint of tree size {tree_size}"
            if tree_size > size:
                self._problem(Problem("truncated", f"{label} vouches for {tree_size} entries but the log holds "
                                      f"{size}: entries were removed", entry=size))
            elif self._tree.root(tree_size) != root:
                if self._first_bad_entry is None and self._suspect is None:
                    self._suspect = (0, tree_size)
                self._problem(Problem("root_mismatch", f"the log does not match {label}: entries it covers were "
                                      "deleted or rewritten"))
            else:
                vouched.append(tree_size)
        return vouched

    def finish(self) -> VerifyReport:
        size = self._tree.size
        for position in self._by_size[self._next_cp:]:
            cp = self._checkpoints[position]
            self._problem(Problem("truncated", f"checkpoint #{position} vouches for {cp.tree_size} entries but "
                                  f"the log holds {size}", entry=size, checkpoint=position))
        sizes = [self._checkpoints[i].tree_size for i in self._by_size]
        if self._witnessed is not None:
            sizes = self._check_witnessed(size)  # the operator's own signatures no longer count
        sizes += self._check_trusted(size)
        covered = min(max(sizes, default=0), size)
        if self._witnessed is not None and not sizes:
            self._problem(Problem("unwitnessed", "no checkpoint is cosigned by enough of the trusted witnesses"))
        elif self._require_coverage and not sizes:
            self._problem(Problem("uncovered", f"no signed checkpoint: nothing vouches for the {size} entries"))
        elif self._require_coverage and covered < size:
            self._problem(Problem("uncovered", f"entries {covered}..{size - 1} are not covered by any signed "
                                  "checkpoint yet"))
        ok = not self._problems
        return VerifyReport(
            ok=ok,
            entries=size,
            checkpoints=len(self._checkpoints),
            tree_size=size,
            root_hash=self._tree.root(),
            first_bad_entry=self._first_bad_entry,
            first_bad_checkpoint=self._first_bad_checkpoint,
            suspect_range=None if self._first_bad_entry is not None else self._suspect,
            problems=tuple(self._problems),
            seconds=time.perf_counter() - self._started,
            key_ids=tuple(sorted({cp.key_id if self._keys is None else self._keys.local_id(cp)
                                  for cp in self._checkpoints})),
            uncovered=size - covered,
        )


def witnessed_heads(cosignatures: Iterable[tuple[int, bytes, str]], origin: str | None,
                    witnesses: Sequence[Verifier], quorum: int) -> list[tuple[int, bytes]]:
    """The (tree size, root) pairs of this log's checkpoints that at least `quorum` distinct `witnesses` cosigned.

    Each stored line is verified over the checkpoint text rebuilt from `origin`, size and root, so a stored
    cosignature proves nothing unless the witness's key really signed that head of this log.
    """
    if origin is None or quorum <= 0:
        return []
    known = {(w.name, w.key_id): w for w in witnesses}
    signers: dict[tuple[int, bytes], set[tuple[str, bytes]]] = {}
    for tree_size, root, line in cosignatures:
        try:
            sig: Signature = parse_signature_lines(line)[0]
        except (NoteError, IndexError):
            continue
        witness = known.get((sig.name, sig.key_id))
        if witness is not None and verify_signature(witness, note_text(origin, tree_size, root), sig):
            signers.setdefault((tree_size, root), set()).add((sig.name, sig.key_id))
    return sorted(head for head, who in signers.items() if len(who) >= quorum)


async def verify_store(store: DisclosureStore, keys: PublicKeys, *, batch: int = _BATCH,
                       up_to: int | None = None, trusted: Sequence[SignedCheckpoint] = (),
                       require_coverage: bool = True, witnesses: Sequence[Verifier] = (),
                       quorum: int = 0) -> VerifyReport:
    """Verify everything `store` holds against the checkpoint verification `keys`.

    With `up_to`, only the first `up_to` entries and the checkpoints of at most that size are checked: the
    log as of a checkpoint just made, whatever is appended while verification runs. `trusted` are
    checkpoints the auditor kept (see `LogVerifier`). Without `require_coverage`, entries after the newest
    checkpoint are only counted (`uncovered`), not a problem. With a `quorum`, only checkpoints that many of
    the `witnesses` cosigned vouch for entries.
    """
    unreadable: Problem | None = None
    witnessed: list[tuple[int, bytes]] | None = None
    try:
        checkpoints = await store.checkpoints()
        if up_to is not None:
            checkpoints = [cp for cp in checkpoints if cp.tree_size <= up_to]
        if quorum > 0:
            witnessed = witnessed_heads(await store.cosignatures(), keys.origin, witnesses, quorum)
    except StoreError as exc:
        # Damaged checkpoint rows are something to report, not a reason to stop checking the entries.
        checkpoints = []
        unreadable = Problem("malformed", f"the stored checkpoints cannot be read: {exc}", checkpoint=0)
    if quorum > 0 and witnessed is None:
        witnessed = []
    verifier = LogVerifier(checkpoints, keys, trusted=trusted, require_coverage=require_coverage,
                           witnessed=witnessed)
    if unreadable is not None:
        verifier.report_problem(unreadable)

    async def scan(start: int) -> list[StoredEntry]:
        if up_to is not None and start >= up_to:
            return []
        rows = await store.scan(start, batch if up_to is None else min(batch, up_to - start))
        return [row for row in rows if up_to is None or row.index < up_to]

    # A producer reads batches and has the store compare each one's filter columns with its bytes, staying up
    # to _AHEAD batches in front, so the database's work overlaps the hashing here instead of alternating.
    ready: asyncio.Queue[_Batch] = asyncio.Queue(maxsize=_AHEAD)

    async def produce() -> None:
        start = 0
        try:
            while rows := await scan(start):
                compared = asyncio.ensure_future(store.metadata_mismatches(rows[0].index, rows[-1].index + 1))
                # Retrieved here too, so a comparison left behind when verification stops early is not logged.
                compared.add_done_callback(read_outcome)
                await ready.put((rows, compared))
                start = rows[-1].index + 1
        except Exception as exc:  # handed to the consumer, which raises it as before
            await ready.put(([], exc))
        else:
            await ready.put(([], None))

    producer = asyncio.ensure_future(produce())
    try:
        while True:
            rows, compared = await ready.get()
            if isinstance(compared, Exception):
                raise compared
            if compared is None:
                break
            verifier.feed(rows)
            verifier.report_meta_mismatches(await compared)
    finally:
        producer.cancel()
        with contextlib.suppress(BaseException):
            await producer
        while not ready.empty():
            _, queued = ready.get_nowait()
            if isinstance(queued, asyncio.Future):
                queued.cancel()
    return verifier.finish()
