"""The generated protobuf package matches what the pinned tools produce from protos/, and protos lint clean."""

from __future__ import annotations

import filecmp
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_regenerating_the_protos_changes_nothing(tmp_path: Path) -> None:
    """Running scripts/gen_protos.py again produces byte-identical files: nobody edited generated code."""
    out = tmp_path / "generated"
    _load_generator().generate(out)
    committed = ROOT / "gateway" / "generated"
    assert _tree(out) == _tree(committed), "generated file set differs; run `make protos` and commit"
    changed = [name for name in sorted(_tree(out)) if not filecmp.cmp(out / name, committed / name, shallow=False)]
    assert not changed, f"generated files differ from protos/: {changed}; run `make protos` and commit"


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is needed to run buf")
def test_protos_pass_buf_standard_lint() -> None:
    """The protos follow buf's STANDARD lint rules (package versioning, naming, enum zero values...)."""
    result = subprocess.run(
        ["npx", "--yes", "@bufbuild/buf@1.75.0", "lint"],
        cwd=ROOT / "protos", capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, f"buf lint found problems:\n{result.stdout}{result.stderr}"


def test_generated_modules_import_under_the_gateway_package() -> None:
    """Generated modules import each other as gateway.generated.*, so they work from an installed package."""
    from gateway.generated.mash.gateway.v1 import hub_service_pb2, hub_service_pb2_grpc

    assert hub_service_pb2.DESCRIPTOR.package == "mash.gateway.v1"
    assert hasattr(hub_service_pb2_grpc, "HubServiceStub")
    assert sys.modules[hub_service_pb2.__name__].__name__.startswith("gateway.generated.")
