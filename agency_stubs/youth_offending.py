"""A youth offending service (`yos`) as policy data: its declaration, record categories, practitioner role,
access lines, client binding and redaction contact, in one place.

`add_youth_offending_service` adds it to a copy of a single-area policy directory, by configuration alone (no
gateway code knows of it); `declare_youth_offending_service` makes the same edits to a policy directory in
place, which is how the generated pan-London partnership (`agency_stubs.london_policy`) gives every borough its
own service (`yos_camden`). The simulated service's catalogue and MASH contact are read from the same data.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from agency_stubs.catalogue import CategorySpec
from gateway.domain import AgencyContact, RecordKind

YOS = "yos"
YOS_CLIENT = "spiffe://mash.local/agency/yos/system/case-system"

_AGENCY = """
  yos:
    title: Youth offending service
    holds_records: true
"""

_CATEGORIES = """
  # youth offending service
  yos.court_order:
    description: Court orders the youth offending service supervises.
    kind: involvement
    record_type: youth_court_order
    fields:
      order_type: record.status
      start_date: record.date
      offence: justice.offence
      case_manager: staff.contact
      notes: record.detail
  yos.assessment:
    description: AssetPlus assessments of the young person's risk of serious harm.
    kind: state
    record_type: assetplus_assessment
    fields:
      risk_of_serious_harm: record.risk
      assessed: record.date
"""

_ROLE = """  yos_case_manager:
    agency: yos
    inside_mash: false
    description: A youth offending service case manager.
    member_of: [operational]
"""

ACCESS_LINES = """\
# Youth offending service: what it discloses through the hub.
p, role:mash_staff, agency:yos, cat:yos, purpose:statutory_safeguarding, PERTINENT, allow
p, role:mash_manager, agency:yos, cat:yos, purpose:statutory_safeguarding, FULL, allow
p, role:operational, agency:yos, cat:yos, purpose:statutory_safeguarding, EXISTS, allow
p, role:social_worker, agency:yos, cat:yos.court_order, purpose:child_protection, PERTINENT, allow
p, role:yos_case_manager, agency:yos, cat:yos, purpose:child_protection, FULL, allow
# Analysis (docs/analysis.md): the analyst gets counts and dates of yos records, never their content.
p, role:mash_analyst, agency:yos, cat:yos, purpose:safeguarding_analysis, PERTINENT, allow
p, role:mash_analyst, agency:yos, cat:yos, purpose:strategic_safeguarding_analysis, PERTINENT, allow
"""
"""The service's policy lines (`agencies/yos.csv`)."""

_REDACTION = """
  yos:
    contact: {team: "YOS MASH officer", phone: "020 7946 0108", email: "mash.yos@example.org"}
    fields:
      # The offence stays with the youth offending service; others learn that there is an order.
      justice.offence: {operator: replace, text: "[offence withheld]"}
"""

# The children's MASH agreements in force (the case one and the analysis one) list every agency; the expired
# one kept further down to review past disclosures lists fewer, and stays as signed.
_MASH_PARTIES = "parties: [police, health, csc, education, housing, probation, asc, hub]"
_MASH_CATEGORIES = "categories: [police, health, csc, education, housing, probation, asc]"

CATALOGUE: tuple[CategorySpec, ...] = tuple(
    CategorySpec(name, RecordKind(spec["kind"]), spec["record_type"], spec["description"],
                 tuple(spec["fields"].items()))
    for name, spec in yaml.safe_load(_CATEGORIES).items()
)
"""The service's record categories as its node describes them, read from the policy's category declarations."""

CATEGORIES: Mapping[str, CategorySpec] = MappingProxyType({spec.category: spec for spec in CATALOGUE})

_CONTACT: dict[str, Any] = yaml.safe_load(_REDACTION)[YOS]["contact"]
MASH_CONTACT = AgencyContact(YOS, _CONTACT["team"], _CONTACT["phone"], _CONTACT["email"])
"""Who the service's MASH contact is, as the redaction rules name them."""


def _replace(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace the first `count` occurrences of `old` (-1: all); ValueError if there is none."""
    text = path.read_text(encoding="utf-8")
    if old not in text:
        raise ValueError(f"{path.name} no longer contains {old!r}: cannot add the youth offending service")
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)


def declare_youth_offending_service(policy_dir: Path) -> None:
    """Declare the service in `policy_dir` in place: agency, record categories, role, client binding, a party
    to the children's MASH agreements in force, and its redaction contact (not its access lines, which are
    `ACCESS_LINES`); ValueError if the directory is not shaped like the shipped policy."""
    vocab = policy_dir / "vocabulary"
    _replace(vocab / "agencies.yaml", "  hub:\n", _AGENCY.lstrip("\n") + "  hub:\n")
    _append(vocab / "record_categories.yaml", _CATEGORIES)
    _replace(vocab / "roles.yaml", "roles:\n", "roles:\n" + _ROLE)
    _append(policy_dir / "bindings.yaml", f"  {YOS_CLIENT}: [yos_case_manager]\n")
    _replace(policy_dir / "agreements.yaml", _MASH_PARTIES, _MASH_PARTIES.replace(", hub]", ", yos, hub]"), -1)
    _replace(policy_dir / "agreements.yaml", _MASH_CATEGORIES, _MASH_CATEGORIES.replace("]", ", yos]"), -1)
    _append(policy_dir / "redaction.yaml", _REDACTION)


def add_youth_offending_service(shipped: Path, target: Path) -> Path:
    """Copy the policy directory `shipped` to `target` and declare, bind and grant a youth offending service."""
    shutil.copytree(shipped, target)
    declare_youth_offending_service(target)
    (target / "agencies" / f"{YOS}.csv").write_text(ACCESS_LINES, encoding="utf-8")
    return target
