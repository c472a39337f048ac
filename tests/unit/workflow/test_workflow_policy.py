"""workflow.yaml: the shipped file is sound and cross-checked; a bad one is reported at file:line."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.errors import PolicyError
from gateway.policy import PolicyHolder
from gateway.testing import FixedClock
from gateway.workflow.policy import load_workflow

GOOD = """\
calendar:
  timezone: Europe/London
  working_hours: {start: "09:00", end: "17:00"}
  bank_holidays: [2026-12-25]
retention: {closed_referral_days: 30}
concern_categories: [neglect]
permissions:
  submit: [police_officer]
receivers:
  csc: spiffe://mash.local/agency/csc/system/case-system
screening:
  acts_as: spiffe://mash.local/agency/hub/system/mash-console
  user: gateway.screening
  role: mash_manager
  purpose: safeguarding_screening
  legal_basis: dpa_2018_sch1_para18
  agreement: mash-isa-2026
mashes:
  children:
    subject: child
    screen_open_case: true
    ratings:
      red: {meaning: "significant harm", deadlines: {research: 4, decision: 4}}
    decisions:
      s47_strategy_discussion: {meaning: "strategy discussion", receiving_role: social_worker}
"""


def _names(policy_dir: Path) -> dict[str, set[str]]:
    vocab = PolicyHolder.from_directory(policy_dir, clock=FixedClock()).current.vocabulary
    return {"roles": set(vocab.roles), "agencies": set(vocab.agencies), "categories": set(vocab.record_categories)}


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "workflow.yaml").write_text(textwrap.dedent(text))
    return tmp_path


def _findings(tmp_path: Path, text: str, policy_dir: Path) -> list[tuple[int, str]]:
    with pytest.raises(PolicyError) as caught:
        load_workflow(_write(tmp_path, text), **_names(policy_dir))
    return [(f.line, f.message) for f in caught.value.findings]


def test_the_shipped_workflow_policy_loads_against_the_shipped_vocabulary(policy_dir: Path) -> None:
    """Children's and adults' MASHes side by side, Red at 4 working hours, Blue with no target."""
    policy = load_workflow(policy_dir, **_names(policy_dir))
    assert set(policy.mashes) == {"children", "adults"}
    children, adults = policy.mashes["children"], policy.mashes["adults"]
    assert (children.subject, adults.subject) == ("child", "adult")
    assert children.screen_open_case
    assert adults.screen_open_case
    # Each MASH screens under its own agreement: the adults' under the adult safeguarding agreement.
    assert children.screening is not None
    assert adults.screening is not None
    assert (children.screening.purpose, children.screening.agreement) == ("safeguarding_screening", "mash-isa-2026")
    assert (adults.screening.purpose, adults.screening.agreement) == ("care_act_s42_enquiry",
                                                                      "adult-safeguarding-isa-2026")
    assert adults.screening.acts_as == children.screening.acts_as  # the rest comes from the top-level caller
    assert adults.ratings["red"].hours("research") == 8
    assert children.ratings["red"].hours("research") == 4
    assert children.ratings["blue"].hours("decision") is None
    assert "care_act_s42_enquiry" in adults.decisions
    assert policy.allows("mash_manager", "decide")
    assert not policy.allows("police_officer", "decide")


def test_a_deadline_follows_the_rating_and_the_calendar(policy_dir: Path) -> None:
    """Red rated on Friday 16:00 is due Monday 12:00; Blue has no deadline."""
    policy = load_workflow(policy_dir)
    friday = datetime(2026, 11, 27, 16, tzinfo=UTC)
    assert policy.due("children", "red", "decision", friday) == datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert policy.due("children", "blue", "decision", friday) is None


def test_a_minimal_policy_loads(tmp_path: Path, policy_dir: Path) -> None:
    """The smallest complete file is accepted."""
    policy = load_workflow(_write(tmp_path, GOOD), **_names(policy_dir))
    assert policy.retention_days == 30


@pytest.mark.parametrize(("old", "new", "line", "says"), [
    ("deadlines: {research: 4, decision: 4}", "deadlines: {research: -4}", 23, "positive number"),
    ("deadlines: {research: 4, decision: 4}", "deadlines: {triage: 4}", 23, "unknown step"),
    ("deadlines: {research: 4, decision: 4}", "deadlines: {research: 8, decision: 4}", 23, "before the research"),
    ("submit: [police_officer]", "submit: [police_officer, wizard]", 8, "undeclared roles: wizard"),
    ("submit: [police_officer]", "teleport: [police_officer]", 8, "unknown permission"),
    ("timezone: Europe/London", "timezone: Mars/Olympus", 2, "IANA zone"),
    ("bank_holidays: [2026-12-25]", "bank_holidays: [christmas]", 4, "must be a date"),
    ("receiving_role: social_worker", "receiving_role: wizard", 25, "undeclared role"),
    ("csc: spiffe", "pharmacy: spiffe", 10, "undeclared agency"),
    ("subject: child", "subject: pet", 20, "subject must be"),
    ("closed_referral_days: 30", "closed_referral_days: -1", 5, "retention"),
    ("  role: mash_manager\n", "", 12, "screening needs role"),
])
def test_each_mistake_is_reported_at_its_line(tmp_path: Path, policy_dir: Path, old: str, new: str, line: int,
                                              says: str) -> None:
    """A wrong value is a finding at the line that holds it, saying what is wrong."""
    assert old in GOOD
    found = _findings(tmp_path, GOOD.replace(old, new), policy_dir)
    assert any(at == line and says in message for at, message in found), found


def test_a_missing_workflow_policy_is_an_error(tmp_path: Path) -> None:
    """No workflow.yaml: PolicyError naming the file."""
    with pytest.raises(PolicyError, match=r"workflow\.yaml"):
        load_workflow(tmp_path)


def test_invalid_yaml_is_an_error_at_its_line(tmp_path: Path) -> None:
    """A syntax error is reported with the line it is on."""
    with pytest.raises(PolicyError) as caught:
        load_workflow(_write(tmp_path, "calendar:\n  timezone: [unclosed\n"))
    assert caught.value.findings[0].file == "workflow.yaml"
    assert caught.value.findings[0].line >= 2


def test_a_mash_screening_an_adult_needs_an_open_case_category_for_adults(tmp_path: Path, policy_dir: Path) -> None:
    """workflow.yaml is checked with the policy: without a category marked `open_cases: adult`, the adults'
    MASH cannot screen on arrival, and the finding points at its `screen_open_case` line."""
    import shutil

    from gateway.policy import load_snapshot

    copy = tmp_path / "policies"
    shutil.copytree(policy_dir, copy)
    categories = copy / "vocabulary" / "record_categories.yaml"
    categories.write_text(categories.read_text().replace("    open_cases: adult\n", ""))
    with pytest.raises(PolicyError) as caught:
        load_snapshot(copy)
    lines = (copy / "workflow.yaml").read_text().splitlines()
    adults = lines.index("  adults:")
    expected = next(i for i, text in enumerate(lines) if i > adults and "screen_open_case" in text) + 1
    [finding] = caught.value.findings
    assert (finding.file, finding.line) == ("workflow.yaml", expected)
    assert "no record category answers the open-case check for an adult" in finding.message


def test_a_mashs_own_screening_keys_replace_the_top_level_ones(tmp_path: Path, policy_dir: Path) -> None:
    """A MASH may screen under its own purpose and agreement; the caller it acts as comes from the top level."""
    own = GOOD + "    screening: {purpose: care_act_s42_enquiry, agreement: adult-safeguarding-isa-2026}\n"
    policy = load_workflow(_write(tmp_path, own), **_names(policy_dir))
    screening = policy.mashes["children"].screening
    assert screening is not None
    assert (screening.purpose, screening.agreement) == ("care_act_s42_enquiry", "adult-safeguarding-isa-2026")
    assert (screening.legal_basis, screening.role) == ("dpa_2018_sch1_para18", "mash_manager")
    bad = GOOD + "    screening: {purpose: care_act_s42_enquiry, colour: blue}\n"
    findings = _findings(tmp_path, bad, policy_dir)
    assert [m for _, m in findings] == ["unknown screening keys: colour"]
