"""The `DisclosureStore` port stays a port: no backend, driver or SQL inside it."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway.audit.store as port


def test_storage_port_imports_no_backend_and_holds_no_sql() -> None:
    """gateway/audit/store.py imports none of the stores or drivers and holds no query text."""
    source = Path(port.__file__).read_text()
    tree = ast.parse(source)
    modules = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    backends = {"gateway.audit.sqlite_store", "gateway.audit.postgres_store", "gateway.audit.memory_store",
                "gateway.audit.sql", "sqlite3", "psycopg", "psycopg_pool"}
    assert modules & backends == set()
    assert "SELECT " not in source
