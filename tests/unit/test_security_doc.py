"""docs/security.md names the tests behind each control: every one it names must exist, every threat names one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECURITY = ROOT / "docs" / "security.md"
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
THREAT_ROW = re.compile(r"^\| ([STRIDE]\d+) \|")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")}


def missing_tests(text: str, root: Path = ROOT) -> list[str]:
    """The test ids `text` names that are not a test function in the named file."""
    missing = []
    for path, name in TEST_ID.findall(text):
        file = root / path
        if not file.is_file() or name not in _tests_in(file):
            missing.append(f"{path}::{name}")
    return missing


def threats_without_tests(text: str) -> list[str]:
    """Threat table rows (S1, T2, …) that name no test."""
    return [match.group(1) for line in text.splitlines()
            if (match := THREAT_ROW.match(line)) and not TEST_ID.search(line)]


def test_every_test_the_threat_model_names_exists() -> None:
    """A renamed or deleted test that docs/security.md still cites fails the suite."""
    text = SECURITY.read_text(encoding="utf-8")
    assert len(TEST_ID.findall(text)) >= 40
    assert missing_tests(text) == []


def test_every_threat_names_a_test_and_every_stride_category_has_threats() -> None:
    """No threat row without a covering test; each of the six STRIDE categories lists at least one threat."""
    text = SECURITY.read_text(encoding="utf-8")
    assert threats_without_tests(text) == []
    ids = {match.group(1)[0] for line in text.splitlines() if (match := THREAT_ROW.match(line))}
    assert ids == set("STRIDE")


def test_the_check_catches_a_missing_test_a_missing_file_and_a_row_without_tests(tmp_path: Path) -> None:
    """The checks above can fail: a made-up test name, a made-up file and a bare threat row are each reported."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("async def test_real() -> None:\n    pass\n")
    text = ("| S1 | threat | control | `tests/test_x.py::test_real`<br>`tests/test_x.py::test_made_up` |\n"
            "| T1 | threat | control | `tests/test_nowhere.py::test_real` |\n"
            "| R1 | threat | control | none yet |\n")
    assert missing_tests(text, tmp_path) == ["tests/test_x.py::test_made_up", "tests/test_nowhere.py::test_real"]
    assert threats_without_tests(text) == ["R1"]
