"""Backup and restore, as docs/operations.md tells an operator to do them: `mash-gateway backup` for SQLite and
pg_dump/pg_restore for PostgreSQL, each restore checked with `audit verify --trusted-checkpoint`."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agency_stubs import World
from agency_stubs.cast import KAI_MERCER
from gateway.cli.main import main as cli
from gateway.demo.partnership import Partnership

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCREENING = {"purpose": "safeguarding_screening", "legal_basis": "dpa_2018_sch1_para18",
             "agreement": "mash-isa-2026", "case_reference": "MASH-2026-0001"}
SUBJECT = {"nhs_number": KAI_MERCER.nhs_number, "given_name": KAI_MERCER.given_name,
           "family_name": KAI_MERCER.family_name, "date_of_birth": KAI_MERCER.date_of_birth}
AGENCIES = ("police", "health", "csc")


async def _disclose(partnership: Partnership, times: int) -> None:
    manager = partnership.client("hub", "mash-console", user="manager.1", role="mash_manager")
    for _ in range(times):
        await manager.screen(subject=SUBJECT, **SCREENING)


async def _keep_checkpoint(partnership: Partnership, path: Path) -> int:
    """Sign a checkpoint now and keep it in `path`, as an auditor keeps one away from the gateway's host."""
    assert partnership.gateway is not None
    checkpoint = await partnership.gateway.deps.audit.checkpoint()
    await asyncio.to_thread(path.write_text, json.dumps(checkpoint.to_dict()))
    return checkpoint.tree_size


async def _run(*argv: str) -> int:
    """The `mash-gateway` command, as an operator runs it (in a thread: it starts its own event loop)."""
    return await asyncio.to_thread(cli, list(argv))


async def test_a_sqlite_backup_taken_while_serving_restores_a_gateway_that_verifies_and_loses_nothing(
    tmp_path: Path, policy_dir: Path, shared_world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """`backup create` on a live gateway, then restore: the log verifies against a checkpoint kept elsewhere."""
    state, backup, restored = tmp_path / "state", tmp_path / "backup", tmp_path / "restored"
    kept = tmp_path / "kept-elsewhere.json"
    async with Partnership(state, policy_dir, world=shared_world, agencies=AGENCIES) as partnership:
        await _disclose(partnership, 3)
        size = await _keep_checkpoint(partnership, kept)
        assert await _run("backup", "create", "--state-dir", str(state), str(backup)) == 0
        await _disclose(partnership, 1)  # written after the backup: not in it, and not needed by `kept`
    assert sorted(p.name for p in (backup / "keys").iterdir()) == sorted(p.name for p in (state / "keys").iterdir())
    # The database copies are private (0600) like the key files.
    # Every store in the state directory is copied: the audit log, referrals, owner reviews and the locator index.
    assert {p.name: p.stat().st_mode & 0o077 for p in backup.glob("*.sqlite")} == {
        "audit.sqlite": 0, "referrals.sqlite": 0, "reviews.sqlite": 0, "locator.sqlite": 0}
    assert await _run("backup", "verify", str(backup), "--trusted-checkpoint", str(kept)) == 0

    restored.mkdir()
    shutil.copy2(backup / "audit.sqlite", restored / "audit.sqlite")
    shutil.copytree(backup / "keys", restored / "keys")
    shutil.copytree(state / "pki", restored / "pki")  # certificates are reissued or restored separately
    assert await _run("audit", "verify", "--state-dir", str(restored), "--trusted-checkpoint", str(kept)) == 0
    async with Partnership(restored, policy_dir, world=shared_world, agencies=AGENCIES) as partnership:
        assert partnership.gateway is not None
        assert partnership.gateway.deps.audit.size >= size
        await _disclose(partnership, 1)  # the restored keys still seal and tokenise: it serves as before
    # The same person's disclosures from before the backup are still found by subject access.
    capsys.readouterr()
    assert await _run("audit", "subject-access", "--state-dir", str(restored), "--json",
                      "--nhs-number", KAI_MERCER.nhs_number) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len([e for e in found if e["index"] < size and e["event"]["kind"] == "disclosure"]) >= 3


async def test_a_backup_older_than_a_kept_checkpoint_or_altered_after_it_was_made_fails_verification(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """A backup that lacks entries a kept checkpoint covers, or whose files changed, fails `backup verify`."""
    state, backup, later = tmp_path / "state", tmp_path / "backup", tmp_path / "later.json"
    async with Partnership(state, policy_dir, world=shared_world, agencies=AGENCIES) as partnership:
        await _disclose(partnership, 1)
        await _keep_checkpoint(partnership, tmp_path / "earlier.json")
        assert await _run("backup", "create", "--state-dir", str(state), str(backup)) == 0
        await _disclose(partnership, 2)
        await _keep_checkpoint(partnership, later)
    assert await _run("backup", "verify", str(backup)) == 0
    assert await _run("backup", "verify", str(backup), "--trusted-checkpoint", str(later)) == 1
    with (backup / "keys" / "sealing.json").open("a") as f:
        f.write(" ")
    assert await _run("backup", "verify", str(backup)) == 1
    assert await _run("backup", "create", "--state-dir", str(state), str(backup)) == 2  # never over an old backup


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards."""
    name = f"backup_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
        try:
            yield name
        finally:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.mark.postgres
async def test_a_postgres_audit_log_restored_from_pg_dump_verifies_against_a_kept_checkpoint(
    tmp_path: Path, policy_dir: Path, shared_world: World, schema: str
) -> None:
    """pg_dump -Fc of the audit schema, dropped and pg_restore'd: it verifies against the kept checkpoint."""
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    dump, kept = tmp_path / "audit.dump", tmp_path / "kept-elsewhere.json"
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world, agencies=AGENCIES,
                           audit_store=url) as partnership:
        await _disclose(partnership, 3)
        await _keep_checkpoint(partnership, kept)
        await asyncio.to_thread(subprocess.run, ["pg_dump", "--format=custom", f"--schema={schema}",
                                                 f"--file={dump}", POSTGRES_URL], check=True)
    keys = str(tmp_path / "state" / "keys" / "checkpoint")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await asyncio.to_thread(subprocess.run, ["pg_restore", "--exit-on-error", f"--dbname={POSTGRES_URL}", str(dump)],
                            check=True)
    assert await _run("audit", "verify", "--store", url, "--keys", keys, "--trusted-checkpoint", str(kept)) == 0
