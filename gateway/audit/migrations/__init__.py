"""Plain numbered SQL migrations for the audit stores (``<dialect>/NNNN_name.sql``) and their loader."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

MIGRATIONS_TABLE = "audit_schema_migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration script."""

    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """Every migration for `dialect` ("sqlite" or "postgresql"), in version order."""
    folder = resources.files("gateway.audit.migrations").joinpath(dialect)
    found = []
    for item in folder.iterdir():
        match = _NAME.match(item.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), item.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} audit migrations must be numbered 0001, 0002, … without gaps")
    return found
