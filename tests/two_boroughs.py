"""A copy of the shipped policy as a partnership of two areas (boroughs), Camden and Hackney, added as data only.

Children's social care (`csc`) becomes Camden's; Hackney gets its own (`csc_hackney`, one category). Each
borough has its own MASH hub identity (`hub_camden`, `hub_hackney`); police, health and the rest still
serve the whole partnership. Camden's hub asks under the shipped MASH agreement, Hackney's under its own,
and both may ask the other borough's children's social care under the pan-partnership agreement, for child
protection only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HUB_CAMDEN = "spiffe://mash.local/agency/hub_camden/system/mash-console"
HUB_HACKNEY = "spiffe://mash.local/agency/hub_hackney/system/mash-console"
CAMDEN_AGREEMENT = "mash-isa-2026"
HACKNEY_AGREEMENT = "mash-isa-2026-hackney"
PAN_AGREEMENT = "pan-london-isa-2026"

AREAS = """\
# The partnership's areas; an agency that names one serves that area only.
areas:
  camden: {title: London Borough of Camden}
  hackney: {title: London Borough of Hackney}
"""

_AGENCIES = """\
  csc_hackney:
    title: Hackney children's social care
    holds_records: true
    area: hackney
  hub_camden:
    title: Camden MASH
    holds_records: false
    area: camden
  hub_hackney:
    title: Hackney MASH
    holds_records: false
    area: hackney
"""

_CATEGORIES = """
  # Hackney children's social care
  csc_hackney.cp_plan:
    description: Hackney's child protection plans and their category.
    kind: state
    record_type: child_protection_plan
    fields:
      plan_category: record.risk
      start_date: record.date
      key_worker: staff.contact
"""

_POLICY = """\
# Hackney children's social care: what it discloses through the hubs.
p, role:mash_manager, agency:csc_hackney, cat:csc_hackney, purpose:statutory_safeguarding, FULL, allow
p, role:mash_social_worker, agency:csc_hackney, cat:csc_hackney, purpose:statutory_safeguarding, PERTINENT, allow
"""

_AGREEMENTS = f"""
  {HACKNEY_AGREEMENT}:
    title: Hackney MASH information sharing agreement 2026-27
    parties: [police, health, csc_hackney, hub, hub_hackney]
    purposes: [safeguarding_screening, child_protection, s17_assessment]
    categories: [police, health, csc_hackney]
    valid_from: 2026-01-01
    valid_until: 2027-12-31
  {PAN_AGREEMENT}:
    title: Pan-London child protection agreement 2026-27
    cross_area: true
    parties: [police, csc, csc_hackney, hub, hub_camden, hub_hackney]
    purposes: [child_protection]
    categories: [police, csc, csc_hackney]
    valid_from: 2026-01-01
    valid_until: 2027-12-31
"""

_REDACTION = """
  csc_hackney:
    contact: {team: "Hackney MASH social work team", phone: "020 7946 0203", email: "mash.csc@hackney.example.org"}
"""


def replace_once(path: Path, old: str, new: str) -> None:
    """Replace one exact piece of a policy file; fails loudly when the shipped file no longer has it."""
    text = path.read_text()
    assert old in text, f"{path.name} no longer contains {old!r}"
    path.write_text(text.replace(old, new, 1))


def add_two_boroughs(shipped: Path, target: Path) -> Path:
    """Copy the policy directory `shipped` to `target` and make it a partnership of Camden and Hackney."""
    shutil.copytree(shipped, target)
    vocab = target / "vocabulary"
    (vocab / "areas.yaml").write_text(AREAS)
    agencies = vocab / "agencies.yaml"
    replace_once(agencies, "  csc:\n    title: Children's social care\n",
                 "  csc:\n    title: Children's social care\n    area: camden\n")
    replace_once(agencies, "  hub:\n", _AGENCIES + "  hub:\n")
    with (vocab / "record_categories.yaml").open("a") as fh:
        fh.write(_CATEGORIES)
    (target / "agencies" / "csc_hackney.csv").write_text(_POLICY)
    with (target / "redaction.yaml").open("a") as fh:
        fh.write(_REDACTION)
    with (target / "bindings.yaml").open("a") as fh:
        fh.write(f"  {HUB_CAMDEN}: [mash_manager, mash_social_worker]\n")
        fh.write(f"  {HUB_HACKNEY}: [mash_manager, mash_social_worker]\n")
    agreements = target / "agreements.yaml"
    replace_once(agreements, "parties: [police, health, csc, education, housing, probation, asc, hub]",
                 "parties: [police, health, csc, education, housing, probation, asc, hub, hub_camden]")
    replace_once(agreements, "agreements:\n", "agreements:" + _AGREEMENTS)
    return target
