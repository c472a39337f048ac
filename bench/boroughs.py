"""A bench-only partnership of many boroughs: every record-holding agency of a policy directory, once per borough.

`generate(source, target, boroughs)` writes a policy directory in which each record holder `police` of
`source` becomes `police_b01` … `police_bNN`, each a declared agency with its own record categories
(`police_b01.domestic_abuse`), its own access lines (`agencies/police_b01.csv`), redaction contact and
agreement coverage, exactly as the original agency had them. The original agencies stay declared but hold
no records, so roles, client bindings and the hub keep their homes. Workflow and policy tests, which speak
of the original six agencies, are left out.

This exists to measure a gateway broadcasting to 192 nodes (32 boroughs × 6 agencies, every agency once per
borough); it is not a model of a real pan-London partnership. That model, with named boroughs, London-wide
agencies, borough agreements and the cross-borough agreement, is `agency_stubs.london_policy`, whose
helpers this layout reuses.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from agency_stubs.london_policy import move_access_lines

VOCABULARY = "vocabulary"
_SUFFIX = re.compile(r"^(?P<agency>[a-z][a-z0-9_]*?)_b(?P<borough>\d+)$")


def borough_agency(agency: str, borough: int) -> str:
    """The declared name of `agency` in `borough` (1-based): ``police_b07``."""
    return f"{agency}_b{borough:02d}"


def home_agency(name: str) -> str:
    """The original agency of a borough agency name (``police_b07`` → ``police``); other names unchanged."""
    match = _SUFFIX.match(name)
    return match["agency"] if match else name


def borough_names(agencies: tuple[str, ...], boroughs: int) -> list[str]:
    """Every borough agency, borough by borough."""
    return [borough_agency(a, b) for b in range(1, boroughs + 1) for a in agencies]


def rename_category(category: str, holders: set[str], borough: int) -> str:
    """`category` moved to `borough` if it belongs to a record holder (``health.gp`` → ``health_b03.gp``)."""
    root, dot, rest = category.partition(".")
    return f"{borough_agency(root, borough)}{dot}{rest}" if root in holders else category


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _dump(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")


def generate(source: Path, target: Path, boroughs: int) -> list[str]:
    """Write the many-borough policy directory for `source` at `target`; returns the borough agencies."""
    if target.exists():
        raise FileExistsError(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("tests", "workflow.yaml", "agencies"))
    vocab = target / VOCABULARY
    numbers = range(1, boroughs + 1)

    agencies_doc = _load(vocab / "agencies.yaml")
    declared: dict[str, Any] = agencies_doc["agencies"]
    holders = [name for name, spec in declared.items() if spec.get("holds_records")]
    held = set(holders)
    out: dict[str, Any] = {}
    for name, spec in declared.items():
        out[name] = {**spec, "holds_records": False} if name in held else spec
    for b in numbers:
        for name in holders:
            out[borough_agency(name, b)] = {**declared[name], "title": f"{declared[name]['title']} (borough {b:02d})"}
    _dump(vocab / "agencies.yaml", {"agencies": out})

    categories_doc = _load(vocab / "record_categories.yaml")
    categories: dict[str, Any] = {}
    for b in numbers:
        for name, spec in categories_doc["record_categories"].items():
            copy = dict(spec)
            if b > 1:
                copy.pop("open_cases", None)  # only one category may answer screening's open-case check
            if "parent" in copy:
                copy["parent"] = rename_category(copy["parent"], held, b)
            categories[rename_category(name, held, b)] = copy
    _dump(vocab / "record_categories.yaml", {"record_categories": categories})

    roles_doc = _load(vocab / "roles.yaml")
    roles: dict[str, Any] = roles_doc["roles"]
    for name, spec in list(roles.items()):
        if spec.get("reviews") and spec.get("agency") in held:  # each borough agency decides its own reviews
            for b in numbers:
                roles[f"{name}_b{b:02d}"] = {**spec, "agency": borough_agency(spec["agency"], b)}
    _dump(vocab / "roles.yaml", roles_doc)

    def expand(names: list[str]) -> list[str]:
        """Each record holder's category (or the agency itself) once per borough; other names as they are."""
        out: list[str] = []
        for name in names:
            if name.partition(".")[0] in held:
                out += [rename_category(name, held, b) for b in numbers]
            else:
                out.append(name)
        return out

    agreements_doc = _load(target / "agreements.yaml")
    for spec in agreements_doc["agreements"].values():
        spec["parties"] = list(dict.fromkeys([*spec["parties"], *expand(spec["parties"])]))
        spec["categories"] = list(dict.fromkeys(expand(spec["categories"])))
    _dump(target / "agreements.yaml", agreements_doc)

    redaction = _load(target / "redaction.yaml")
    for rule in (redaction.get("safeguarding") or {}).values():
        if isinstance(rule, dict) and "record_categories" in rule:
            rule["record_categories"] = expand(rule["record_categories"])
    per_agency: dict[str, Any] = {}
    for b in numbers:
        for name, spec in (redaction.get("agencies") or {}).items():
            copy = dict(spec)
            if "records" in copy:
                copy["records"] = {rename_category(c, held, b): v for c, v in copy["records"].items()}
            per_agency[borough_agency(name, b) if name in held else name] = copy
    redaction["agencies"] = per_agency
    _dump(target / "redaction.yaml", redaction)

    lines_dir = target / "agencies"
    lines_dir.mkdir()
    for name in holders:
        text = (source / "agencies" / f"{name}.csv").read_text(encoding="utf-8")
        for b in numbers:
            moved = move_access_lines(text, name, borough_agency(name, b))
            (lines_dir / f"{borough_agency(name, b)}.csv").write_text(moved, encoding="utf-8")
    return borough_names(tuple(holders), boroughs)
