"""Configuration file schemas: pydantic validation errors turned into plain messages located at file:line.

The schemas themselves are pydantic models (or dataclasses) next to the code that uses them; this module
holds the parsed values that remember their lines and says, for each validation error, which line of the
file it is about and what to tell the reader.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

KeyPath = tuple[str | int, ...]  # a pydantic error location: keys and list indexes from the top


class LineDict(dict[str, Any]):
    """A YAML mapping that remembers the line of each key (1-based) and of itself."""

    line: int
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list[Any]):
    """A YAML sequence that remembers the line of each item (1-based) and of itself."""

    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


def line_in(node: Any, keys: Sequence[str | int]) -> int:
    """The line of the value at `keys` below a parsed node, or of the nearest enclosing one that has a line."""
    line = int(getattr(node, "line", 0))
    for key in keys:
        if isinstance(node, LineDict) and isinstance(key, str):
            line, node = node.line_of(key), node.get(key)
        elif isinstance(node, LineList) and isinstance(key, int):
            line, node = node.line_of(key), node[key] if key < len(node) else None
        else:
            break
    return line


@dataclass(frozen=True, slots=True)
class Problem:
    """One schema violation: the line it is about (0: the whole file), the dotted key, and the message."""

    line: int
    key: str
    message: str


def _plain(error: ErrorDetails) -> str:
    """The reader's wording for one pydantic error; the value itself is never repeated back."""
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known key"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind in ("string_type", "str_type", "is_instance_of"):
        return "must be text"
    if kind in ("float_type", "int_type", "float_parsing", "int_parsing"):
        return "must be a number"
    if kind in ("dict_type", "mapping_type", "model_type", "dataclass_type"):
        return "must be a mapping of names to values"
    if kind in ("list_type", "tuple_type"):
        return "must be a list"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind.startswith("date_"):
        return "must be a date YYYY-MM-DD"
    if kind == "enum":
        return f"must be one of {ctx.get('expected')}"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    if kind == "value_error":  # a validator's own wording
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"])


def problems(exc: ValidationError, line_of: Callable[[KeyPath], int]) -> list[Problem]:
    """Every error of a validation, each located by `line_of` (given the error's key path)."""
    found = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(part for part in error["loc"] if not is_internal(part))
        found.append(Problem(line_of(loc), ".".join(str(p) for p in loc), _plain(error)))
    return found


def is_internal(part: str | int) -> bool:
    """Whether a part of a pydantic error location is the validator's own name rather than a key."""
    # Unions and function validators add their own names to the location; readers know only the keys.
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


_TABLE = re.compile(r"\s*\[([A-Za-z0-9_.-]+)\]\s*(#.*)?$")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=")


def toml_key_lines(text: str) -> dict[tuple[str, str], int]:
    """(table, key) -> 1-based line for the plain `key = value` lines of a TOML file, and (table, "") for headers.

    Only for pointing at a line: tomllib itself has parsed the file and keeps no positions.
    """
    lines: dict[tuple[str, str], int] = {}
    table = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _TABLE.match(raw)
        if header:
            table = header.group(1)
            lines.setdefault((table, ""), number)
            continue
        key = _KEY.match(raw)
        if key:
            lines.setdefault((table, key.group(1)), number)
    return lines
