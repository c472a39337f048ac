"""`mash-gateway backup create|verify`: a consistent copy of a SQLite gateway's state directory, and its check.

Every SQLite database in the state directory (the audit log and any workflow store) is copied with SQLite's
online backup API, so a running gateway keeps serving and the copy is a committed state, never a torn file;
the key rings are copied as they are. A manifest records each file's SHA-256. `verify` checks the manifest
and verifies the copied audit log against its own checkpoints and any checkpoints kept elsewhere.
PostgreSQL audit stores are backed up with pg_dump instead (docs/operations.md).

Exit codes: 0 success, 1 verification failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from gateway.audit.backends import open_store
from gateway.audit.checkpoint import CheckpointKeyError, PublicKeys, SignedCheckpoint, load_public_keys
from gateway.audit.review import AuditReview
from gateway.audit.verify import VerifyReport
from gateway.cli.audit_cmd import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, _trusted_checkpoints
from gateway.errors import GatewayError

MANIFEST = "backup-manifest.json"
_FORMAT = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = subparsers.add_parser("backup", help="back up a SQLite gateway's state, or check a backup")
    sub = backup.add_subparsers(dest="backup_command", required=True, metavar="ACTION")

    p = sub.add_parser("create", help="copy the audit log, workflow stores and keys into a new directory")
    p.add_argument("--state-dir", type=Path, required=True, help="the gateway's state directory")
    p.add_argument("dest", type=Path, help="new directory for the backup")
    p.set_defaults(func=_cmd_create)

    p = sub.add_parser("verify", help="check a backup's files and verify its audit log")
    p.add_argument("backup", type=Path, help="a directory written by `backup create`")
    p.add_argument("--trusted-checkpoint", type=Path, action="append", default=[], metavar="FILE",
                   help="a checkpoint kept elsewhere (JSON, as printed by `audit checkpoint --json`); the "
                        "backed-up log must hold and match it (repeatable)")
    p.set_defaults(func=_cmd_verify)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_database(source: Path, dest: Path) -> None:
    dest.touch(mode=0o600)  # the copy is as private as the key files beside it
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(dest)) as dst:
        src.backup(dst)  # pages as of one committed state, while the gateway keeps writing


def create_backup(state_dir: Path, dest: Path) -> list[str]:
    """Copy every `*.sqlite` database (online backup) and the `keys/` directory of `state_dir` into the new
    directory `dest`, with a manifest; returns the copied files' relative paths."""
    if not (state_dir / "audit.sqlite").is_file():
        raise UsageError(f"{state_dir} holds no audit.sqlite (for a PostgreSQL audit store use pg_dump)")
    if dest.exists():
        raise UsageError(f"{dest} already exists; a backup goes into a new directory")
    dest.mkdir(parents=True, mode=0o700)
    for database in sorted(state_dir.glob("*.sqlite")):
        _copy_database(database, dest / database.name)
    if (state_dir / "keys").is_dir():
        shutil.copytree(state_dir / "keys", dest / "keys")  # copy2 keeps the key files' 0600 modes
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    manifest = {"format": _FORMAT, "files": {name: _sha256(dest / name) for name in files}}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return files


def _manifest_problems(backup: Path) -> list[str]:
    try:
        manifest = json.loads((backup / MANIFEST).read_text())
        files: dict[str, str] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{backup} is not a backup written by `backup create` ({type(exc).__name__})") from exc
    problems = []
    for name, want in sorted(files.items()):
        path = backup / name
        if not path.resolve().is_relative_to(backup.resolve()):
            problems.append(f"{name}: outside the backup")
        elif not path.is_file():
            problems.append(f"{name}: missing")
        elif _sha256(path) != want:
            problems.append(f"{name}: changed since the backup was made")
    return problems


def verify_backup(backup: Path, trusted: list[Path]) -> list[str]:
    """Problems with the backup in `backup` (empty if none): changed or missing files, or an audit log that does
    not verify against its checkpoints and the `trusted` ones."""
    problems = _manifest_problems(backup)
    if problems:
        return problems
    try:
        keys = load_public_keys(backup / "keys" / "checkpoint")
    except CheckpointKeyError as exc:
        return [f"keys/checkpoint: {exc}"]
    checkpoints = _trusted_checkpoints(argparse.Namespace(trusted_checkpoint=trusted))
    # Verify a scratch copy beside it (as well protected): opening a store may apply migrations, and the
    # backup must stay as written.
    with tempfile.TemporaryDirectory(dir=backup, prefix=".verify-") as scratch:
        copy = Path(scratch) / "audit.sqlite"
        shutil.copyfile(backup / "audit.sqlite", copy)
        report = asyncio.run(_verify_log(f"sqlite:///{copy}", keys, checkpoints))
    return [] if report.ok else [f"audit.sqlite: {report.summary()}"]


async def _verify_log(url: str, keys: PublicKeys, checkpoints: list[SignedCheckpoint]) -> VerifyReport:
    store = await open_store(url)
    try:
        return await AuditReview(store, keys).verify(checkpoints)
    finally:
        await store.close()


def _cmd_create(args: argparse.Namespace) -> int:
    try:
        files = create_backup(args.state_dir, args.dest)
    except (UsageError, OSError, sqlite3.Error) as exc:
        print(f"error: {exc}", flush=True)
        return EXIT_USAGE
    print(f"backed up {len(files)} files to {args.dest}; keep it where the gateway's host cannot change it")
    os.sync()
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    try:
        problems = verify_backup(args.backup, args.trusted_checkpoint)
    except (UsageError, GatewayError, OSError) as exc:
        print(f"error: {exc}", flush=True)
        return EXIT_USAGE
    for problem in problems:
        print(problem)
    if problems:
        return EXIT_FAILED
    print(f"backup {args.backup} is complete and its audit log verifies")
    return EXIT_OK
