"""Configuration file schemas: pydantic validation errors turned into plain messages located at file:line.

The schemas themselves are pydantic models (or dataclasses) next to the code that uses them; this module
only says, for each validation error, which line of the file it is about and what to tell the reader.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError
from pydantic_core import ErrorDetails

KeyPath = tuple[str | int, ...]  # a pydantic error location: keys and list indexes from the top


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
        loc = tuple(part for part in error["loc"] if not _is_internal(part))
        found.append(Problem(line_of(loc), ".".join(str(p) for p in loc), _plain(error)))
    return found


def _is_internal(part: str | int) -> bool:
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
