"""A copy of the shipped policy with one more agency, a youth offending service (`yos`), added as data only."""

from __future__ import annotations

import shutil
from pathlib import Path

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

_POLICY = """\
# Youth offending service: what it discloses through the hub.
p, role:mash_staff, agency:yos, cat:yos, purpose:statutory_safeguarding, PERTINENT, allow
p, role:mash_manager, agency:yos, cat:yos, purpose:statutory_safeguarding, FULL, allow
p, role:operational, agency:yos, cat:yos, purpose:statutory_safeguarding, EXISTS, allow
p, role:social_worker, agency:yos, cat:yos.court_order, purpose:child_protection, PERTINENT, allow
p, role:yos_case_manager, agency:yos, cat:yos, purpose:child_protection, FULL, allow
"""

_REDACTION = """
  yos:
    contact: {team: "YOS MASH officer", phone: "020 7946 0108", email: "mash.yos@example.org"}
    fields:
      # The offence stays with the youth offending service; others learn that there is an order.
      justice.offence: {operator: replace, text: "[offence withheld]"}
"""


def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer contains {old!r}"
    path.write_text(text.replace(old, new, 1))


def add_youth_offending_service(shipped: Path, target: Path) -> Path:
    """Copy the policy directory `shipped` to `target` and declare, bind and grant a youth offending service."""
    shutil.copytree(shipped, target)
    vocab = target / "vocabulary"
    _replace_once(vocab / "agencies.yaml", "  hub:\n", _AGENCY.lstrip("\n") + "  hub:\n")
    with (vocab / "record_categories.yaml").open("a") as fh:
        fh.write(_CATEGORIES)
    _replace_once(vocab / "roles.yaml", "roles:\n", "roles:\n" + _ROLE)
    with (target / "bindings.yaml").open("a") as fh:
        fh.write(f"  {YOS_CLIENT}: [yos_case_manager]\n")
    # The children's MASH agreement in force (the first listed; the expired one is kept further down).
    _replace_once(target / "agreements.yaml", "parties: [police, health, csc, education, housing, probation, asc, hub]",
                  "parties: [police, health, csc, education, housing, probation, asc, yos, hub]")
    _replace_once(target / "agreements.yaml", "categories: [police, health, csc, education, housing, probation, asc]",
                  "categories: [police, health, csc, education, housing, probation, asc, yos]")
    (target / "agencies" / "yos.csv").write_text(_POLICY)
    with (target / "redaction.yaml").open("a") as fh:
        fh.write(_REDACTION)
    return target
