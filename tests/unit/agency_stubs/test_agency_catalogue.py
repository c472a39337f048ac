"""The stubs' catalogue is exactly the one documented in docs/catalogue.md."""

from __future__ import annotations

import re
from pathlib import Path

from agency_stubs import CATALOGUE, CATEGORIES, FIELD_CATEGORIES
from agency_stubs.catalogue import SIMULATED_AGENCIES
from gateway.policy import load_snapshot

DOC = Path(__file__).resolve().parents[3] / "docs" / "catalogue.md"
_ROW = re.compile(r"^\| `(?P<cat>[a-z_]+\.[a-z0-9_]+)` \| (?P<kind>\w+) \| `(?P<type>\w+)` \| (?P<fields>.+) \|$")


def _documented() -> dict[str, tuple[str, str, tuple[tuple[str, str], ...]]]:
    out: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {}
    for line in DOC.read_text().splitlines():
        m = _ROW.match(line)
        if not m:
            continue
        fields: list[tuple[str, str]] = []
        for item in m["fields"].split(";"):
            name, cat = item.split(":")
            fields.append((name.split("(")[0].strip(), cat.strip()))
        out[m["cat"]] = (m["kind"], m["type"], tuple(fields))
    return out


def test_every_documented_record_category_is_implemented_exactly() -> None:
    """Each documented category of a simulated agency has the same kind, record type, field names and field
    categories in the synthetic world; the others (adult social care's, served from seeded records) are exactly
    as the shipped vocabulary declares them."""
    documented = _documented()
    simulated = {n: d for n, d in documented.items() if n.split(".")[0] in SIMULATED_AGENCIES}
    assert len(simulated) == 32
    assert set(simulated) == set(CATEGORIES)
    for name, (kind, record_type, fields) in simulated.items():
        spec = CATEGORIES[name]
        assert (spec.kind.value, spec.record_type, spec.fields) == (kind, record_type, fields), name
    declared = load_snapshot(DOC.parents[1] / "policies").record_categories
    others = {n: d for n, d in documented.items() if n not in simulated}
    assert {n.split(".")[0] for n in others} == {"asc"}
    assert set(others) == {n for n, c in declared.items() if c.agency == "asc" and not c.group}
    for name, (kind, record_type, fields) in others.items():
        category = declared[name]
        assert category.kind is not None
        assert (category.kind.value, category.record_type, tuple(category.fields.items())) == (
            kind, record_type, fields), name


def test_field_categories_match_the_documented_table() -> None:
    """The field-category vocabulary is the documented one, and every field uses a member of it."""
    section = DOC.read_text().split("## Field categories", 1)[1].split("## Record categories", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \| .+ \|$", section, re.MULTILINE))
    assert documented == set(FIELD_CATEGORIES)
    used = {cat for spec in CATEGORIES.values() for _, cat in spec.fields}
    assert used <= set(FIELD_CATEGORIES)


def test_catalogue_groups_categories_under_their_agency() -> None:
    """Every agency has categories, each named `<agency>.<name>`."""
    assert tuple(CATALOGUE) == SIMULATED_AGENCIES
    for agency, specs in CATALOGUE.items():
        assert specs
        assert all(s.category.startswith(f"{agency}.") and s.agency == agency for s in specs)
