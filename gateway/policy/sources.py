"""Reading policy files so that every value keeps the file:line it came from, for precise findings."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway.errors import Finding

# The line-keeping values live in the schema layer, which the redaction rules share; re-exported here.
from gateway.schema import LineDict as LineDict
from gateway.schema import LineList as LineList
from gateway.schema import line_in as line_in

# Every file that makes up a policy snapshot; the content hash (the policy version) covers all of them.
POLICY_SUFFIXES = (".conf", ".csv", ".yaml", ".yml")


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """Where something was written: a file relative to the policy directory and a 1-based line (0: the file)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    def finding(self, message: str, severity: str = "error") -> Finding:
        return Finding(self.file, self.line, message, severity)


NOWHERE = Location("", 0)


# libyaml's parser is several times faster than the pure-Python one; both report node marks.
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeBase):  # type: ignore[valid-type, misc]  # base chosen at import time
    """A safe loader whose mappings and sequences carry line numbers."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        if key in result:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


class SourceError(Exception):
    """A file could not be read or parsed at all; carries the finding that says where."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding
        super().__init__(str(finding))


def load_yaml(path: Path, rel: str) -> LineDict:
    """Parse a YAML file whose top level must be a mapping; SourceError with file:line otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(Finding(rel, 0, f"cannot read file: {exc}")) from exc
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise SourceError(Finding(rel, line, f"YAML syntax error: {exc.problem or exc}")) from exc
    except yaml.YAMLError as exc:
        raise SourceError(Finding(rel, 0, f"YAML error: {exc}")) from exc
    if data is None:
        empty = LineDict()
        empty.line, empty.key_lines = 1, {}
        return empty
    if not isinstance(data, LineDict):
        raise SourceError(Finding(rel, 1, "the top level must be a mapping"))
    return data


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One non-blank, non-comment line of a Casbin policy file, split into trimmed cells."""

    file: str
    line: int
    cells: tuple[str, ...]

    @property
    def location(self) -> Location:
        return Location(self.file, self.line)


def read_csv_rows(path: Path, rel: str) -> Iterator[CsvRow]:
    """Yield the rows of a Casbin CSV file the way Casbin's file adapter splits them (comma, trimmed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(Finding(rel, 0, f"cannot read file: {exc}")) from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        yield CsvRow(rel, number, tuple(cell.strip() for cell in stripped.split(",")))


def policy_files(directory: Path) -> list[Path]:
    """Every file that belongs to a policy directory, in a stable order."""
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file()
        and p.suffix in POLICY_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def read_tree(directory: Path) -> dict[str, bytes]:
    """Every policy file's bytes by relative path, each read once, in `policy_files` order; OSError if one fails."""
    return {path.relative_to(directory).as_posix(): path.read_bytes() for path in policy_files(directory)}


def tree_hash(files: Mapping[str, bytes]) -> str:
    """The policy version of files read by `read_tree`: SHA-256 over paths and bytes, as ``sha256:<hex>``."""
    digest = hashlib.sha256()
    for rel_text, data in files.items():
        rel = rel_text.encode()
        # Length-prefixed so that no two different directories can produce the same byte stream.
        digest.update(len(rel).to_bytes(8, "big") + rel + len(data).to_bytes(8, "big") + data)
    return "sha256:" + digest.hexdigest()


def content_hash(directory: Path) -> str:
    """The policy version: SHA-256 over every policy file's relative path and bytes, as ``sha256:<hex>``."""
    return tree_hash(read_tree(directory))
