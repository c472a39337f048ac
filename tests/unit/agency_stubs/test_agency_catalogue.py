"""The stubs' catalogue is exactly the one documented in docs/catalogue.md."""

from __future__ import annotations

import re
from pathlib import Path

from agency_stubs import CATALOGUE, CATEGORIES, FIELD_CATEGORIES
from agency_stubs.catalogue import SIMULATED_AGENCIES

DOC = Path(__file__).resolve().parents[3] / "docs" / "catalogue.md"
_ROW = re.compile(r"^\| `(?P<cat>[a-z_]+\.[a-z_]+)` \| (?P<kind>\w+) \| `(?P<type>\w+)` \| (?P<fields>.+) \|$")


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
    """Each documented record category has the same kind, record type, field names and field categories."""
    documented = _documented()
    assert len(documented) == 32
    assert set(documented) == set(CATEGORIES)
    for name, (kind, record_type, fields) in documented.items():
        spec = CATEGORIES[name]
        assert (spec.kind.value, spec.record_type, spec.fields) == (kind, record_type, fields), name


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
