"""Regenerate the Python code for protos/ into gateway/generated/ (never edit the output by hand).

Pinned tools: grpcio-tools and mypy-protobuf at the versions in pyproject.toml. The generated modules
import each other as `gateway.generated.mash.gateway.v1.*`, so the output can live inside the
`gateway` package; this script rewrites protoc's absolute imports accordingly.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "gateway" / "generated"
PACKAGE_PREFIX = "gateway.generated"
PINNED = {"grpcio-tools": "1.85.1", "mypy-protobuf": "5.1.0"}

_IMPORT_LINE = re.compile(r"^(from|import) mash\.", re.MULTILINE)
_QUALIFIED_NAME = re.compile(r"(?<![\w.'\"/])mash\.gateway\.v1\.")


def _check_pins() -> None:
    for dist, want in PINNED.items():
        have = metadata.version(dist)
        if have != want:
            sys.exit(f"{dist} {have} is installed but {want} is pinned; run `make protos` in a fresh venv")


def _rewrite(path: Path) -> None:
    text = path.read_text()
    text = _IMPORT_LINE.sub(lambda m: f"{m.group(1)} {PACKAGE_PREFIX}.mash.", text)
    if path.suffix == ".pyi":
        text = _QUALIFIED_NAME.sub(f"{PACKAGE_PREFIX}.mash.gateway.v1.", text)
    path.write_text(text)


def generate(out: Path) -> None:
    """Write the generated package to `out`, replacing whatever was there."""
    _check_pins()
    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
            f"--mypy_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *protos,
        ]
        subprocess.run(cmd, check=True, cwd=PROTO_ROOT)  # noqa: S603 - fixed argv, no shell
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    for directory in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").write_text("")
    (out / "__init__.py").write_text(
        '"""Code generated from protos/ by scripts/gen_protos.py. Do not edit."""\n'
    )
    for path in sorted(out.rglob("*.py*")):
        if path.suffix in {".py", ".pyi"}:
            _rewrite(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
