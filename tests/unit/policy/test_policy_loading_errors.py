"""A broken policy directory is refused with a PolicyError whose findings name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from policy_helpers import SHIPPED, PolicyCopy, append, edit

from gateway.errors import Finding, PolicyError
from gateway.policy import load_snapshot
from gateway.policy.snapshot import PolicyUnreadable


def findings_of(directory: Path) -> list[Finding]:
    with pytest.raises(PolicyError) as caught:
        load_snapshot(directory)
    return list(caught.value.findings)


def messages_at(findings: list[Finding], file: str, line: int) -> list[str]:
    return [f.message for f in findings if f.file == file and f.line == line]


def test_every_bad_line_is_reported_at_its_line(policy_copy: PolicyCopy) -> None:
    """Undeclared role or purpose, unknown category, malformed cells and misplaced lines are each reported."""
    findings = findings_of(policy_copy("undeclared_names"))
    police = "agencies/police.csv"
    assert messages_at(findings, police, 2) == []
    assert messages_at(findings, police, 3) == ["undeclared role 'police_sergeant'"]
    assert messages_at(findings, police, 4) == ["rule can never match: undeclared category 'police.traffic'"]
    assert messages_at(findings, police, 5) == ["undeclared purpose 'neighbourhood_watch'"]
    assert "has 7 cells" in messages_at(findings, police, 6)[0]
    assert "EXISTS, PERTINENT or FULL" in messages_at(findings, police, 7)[0]
    assert "belongs in agencies/health.csv" in messages_at(findings, police, 8)[0]
    assert "the effect must be allow, deny or review, got 'permit'" in messages_at(findings, police, 9)[0]
    assert "only allowed in deny lines" in messages_at(findings, police, 10)[0]


def test_a_typo_is_reported_with_the_closest_declared_name(policy_copy: PolicyCopy) -> None:
    """A misspelt role in a policy line, and a misspelt purpose in the vocabulary, each suggest the intended name."""
    directory = policy_copy()
    edit(
        directory / "agencies" / "police.csv",
        "p, role:mash_manager, agency:police,",
        "p, role:mash_manger, agency:police,",
    )
    edit(directory / "vocabulary" / "purposes.yaml", "parent: child_protection", "parent: child_protectoin")
    findings = findings_of(directory)
    assert "undeclared role 'mash_manger' (did you mean 'mash_manager'?)" in [f.message for f in findings]
    assert "undeclared purpose 'child_protectoin' (did you mean 'child_protection'?)" in [
        f.message for f in findings
    ]


def test_no_suggestion_when_no_declared_name_is_close(policy_copy: PolicyCopy) -> None:
    """A name unlike any declared one gets no guess that a hurried reader might accept."""
    findings = findings_of(policy_copy("undeclared_names"))
    assert messages_at(findings, "agencies/police.csv", 5) == ["undeclared purpose 'neighbourhood_watch'"]
    assert "did you mean" not in messages_at(findings, "agencies/police.csv", 4)[0]


def test_yaml_syntax_error_makes_the_policy_unreadable(policy_copy: PolicyCopy) -> None:
    """A half-written YAML file is reported with its line and as unreadable, not as a policy finding."""
    with pytest.raises(PolicyUnreadable) as caught:
        load_snapshot(policy_copy("syntax_error"))
    [finding] = [f for f in caught.value.findings if f.file == "vocabulary/roles.yaml"]
    assert finding.line > 1
    assert "YAML syntax error" in finding.message


def test_missing_directory_is_unreadable(tmp_path: Path) -> None:
    """Loading a directory that does not exist raises PolicyUnreadable."""
    with pytest.raises(PolicyUnreadable):
        load_snapshot(tmp_path / "nowhere")


def test_missing_vocabulary_file_is_unreadable(policy_copy: PolicyCopy) -> None:
    """A missing vocabulary file is named in the error."""
    directory = policy_copy()
    (directory / "vocabulary" / "purposes.yaml").unlink()
    with pytest.raises(PolicyUnreadable) as caught:
        load_snapshot(directory)
    assert any(f.file == "vocabulary/purposes.yaml" and "missing" in f.message for f in caught.value.findings)


def test_changed_model_is_refused(policy_copy: PolicyCopy) -> None:
    """A model.conf whose matcher differs from the implemented one is refused: the index would disagree."""
    directory = policy_copy()
    edit(
        directory / "model.conf",
        "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
        "some(where (p.eft == allow))",
    )
    findings = findings_of(directory)
    assert any(f.file == "model.conf" and "differs" in f.message and "e.e" in f.message for f in findings)


def test_duplicate_lines_are_refused(policy_copy: PolicyCopy) -> None:
    """The same rule twice is reported at the second copy, naming the first."""
    directory = policy_copy()
    line = append(
        directory / "agencies" / "csc.csv",
        "p, role:mash_staff, agency:csc, cat:csc, purpose:statutory_safeguarding, PERTINENT, allow\n",
    )
    findings = findings_of(directory)
    assert messages_at(findings, "agencies/csc.csv", line) == ["duplicate of agencies/csc.csv:5"]


def test_level_none_and_g_lines_are_refused(policy_copy: PolicyCopy) -> None:
    """NONE grants nothing and hierarchy lines belong in the vocabularies, so both are findings."""
    directory = policy_copy()
    line = append(
        directory / "agencies" / "csc.csv",
        "p, role:social_worker, agency:csc, cat:csc, purpose:s47_enquiry, NONE, allow\n"
        "g, role:social_worker, role:mash_staff\n",
    )
    findings = findings_of(directory)
    assert "level NONE grants nothing" in messages_at(findings, "agencies/csc.csv", line)[0]
    assert "only 'p' lines" in messages_at(findings, "agencies/csc.csv", line + 1)[0]


def test_file_for_an_unknown_agency_is_refused(policy_copy: PolicyCopy) -> None:
    """A policy file must be named after an agency that holds records."""
    directory = policy_copy()
    (directory / "agencies" / "hub.csv").write_text("# the hub holds no records\n")
    assert any(f.file == "agencies/hub.csv" for f in findings_of(directory))


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "vocabulary/roles.yaml",
            "member_of: [operational]\n  early_help_worker",
            "member_of: [operatives]\n  early_help_worker",
            "undeclared role 'operatives'",
        ),
        (
            "vocabulary/roles.yaml",
            "  housing_officer:\n    agency: housing",
            "  housing_officer:\n    agency: council",
            "undeclared agency 'council'",
        ),
        (
            "vocabulary/purposes.yaml",
            "parent: child_protection",
            "parent: protection",
            "undeclared purpose 'protection'",
        ),
        (
            "vocabulary/record_categories.yaml",
            "      dash_risk: record.risk",
            "      dash_risk: record.danger",
            "undeclared field category 'record.danger'",
        ),
        (
            "agreements.yaml",
            "purposes: [housing_management]",
            "purposes: [tenancy]",
            "undeclared purpose 'tenancy'",
        ),
        (
            "agreements.yaml",
            "valid_until: 2027-12-31\n  early",
            "valid_until: 2025-12-31\n  early",
            "ends before it starts",
        ),
        ("bindings.yaml", "[auditor]", "[auditor, mash_staff]", "is a group"),
        ("bindings.yaml", "[policy_admin]", "[policy_admin, root]", "undeclared role 'root'"),
    ],
)
def test_vocabulary_problems_are_reported(
    policy_copy: PolicyCopy, file: str, old: str, new: str, expected: str
) -> None:
    """Each vocabulary mistake is reported in the file that holds it."""
    directory = policy_copy()
    edit(directory / file, old, new)
    findings = findings_of(directory)
    assert any(f.file == file and expected in f.message and f.line > 0 for f in findings), findings


def test_every_malformed_vocabulary_value_is_reported_at_its_line_in_one_run(policy_copy: PolicyCopy) -> None:
    """A quoted flag, an unknown kind, a non-date and a stray key in four files are all reported, each at its line."""
    directory = policy_copy()
    vocabulary = directory / "vocabulary"
    edit(vocabulary / "agencies.yaml", "Police\n    holds_records: true", 'Police\n    holds_records: "yes"')
    edit(vocabulary / "record_categories.yaml", "    kind: event\n", "    kind: happening\n")
    edit(directory / "agreements.yaml", "    valid_from: 2026-01-01\n", "    valid_from: next spring\n")
    edit(vocabulary / "roles.yaml", "    inside_mash: false\n", "    inside_mash: false\n    colour: blue\n")
    findings = findings_of(directory)
    assert messages_at(findings, "vocabulary/agencies.yaml", 7) == [
        "agency 'police': holds_records must be true or false"
    ]
    [kind] = messages_at(findings, "vocabulary/record_categories.yaml", 11)
    assert kind == "category 'police.domestic_abuse': kind must be one of 'involvement', 'state' or 'event'"
    [day] = messages_at(findings, "agreements.yaml", 13)
    assert day.endswith(": valid_from must be a date YYYY-MM-DD")
    [stray] = messages_at(findings, "vocabulary/roles.yaml", 53)
    assert stray.startswith("role 'social_worker': colour is not a known key (expected one of: agency, ")


def test_a_malformed_entry_is_not_also_reported_as_undeclared_where_it_is_used(policy_copy: PolicyCopy) -> None:
    """A group with a bad description is reported once, not again at every role that is a member of it."""
    directory = policy_copy()
    edit(
        directory / "vocabulary" / "roles.yaml",
        "  operational:\n    description:",
        "  operational:\n    description: 7\n    old_description:",
    )
    findings = findings_of(directory)
    roles = [f for f in findings if f.file == "vocabulary/roles.yaml"]
    assert [f.message for f in roles if "operational" in f.message] == [
        "role 'operational': description must be text",
        "role 'operational': old_description is not a known key (expected one of: description, member_of)",
    ]
    [first_use] = [f for f in findings if f.file == "agencies/health.csv" and f.line == 10]
    entry = (directory / "vocabulary" / "roles.yaml").read_text().splitlines().index("  operational:") + 1
    assert first_use.message == (
        f"role 'operational' cannot be used: its entry at vocabulary/roles.yaml:{entry} has errors"
    )


def test_a_malformed_agency_entry_is_not_echoed_by_its_policy_file_and_categories(policy_copy: PolicyCopy) -> None:
    """A quoted holds_records for police is one finding, not one per police category and policy line."""
    directory = policy_copy()
    agencies = directory / "vocabulary" / "agencies.yaml"
    edit(agencies, "Police\n    holds_records: true", 'Police\n    holds_records: "yes"')
    findings = findings_of(directory)
    assert [f for f in findings if f.file.startswith(("agencies/", "vocabulary/", "agreements.yaml"))] == [
        Finding("vocabulary/agencies.yaml", 7, "agency 'police': holds_records must be true or false")
    ]


def test_purpose_cycle_is_refused(policy_copy: PolicyCopy) -> None:
    """A purpose hierarchy with a cycle cannot be indexed and is refused."""
    directory = policy_copy()
    edit(
        directory / "vocabulary" / "purposes.yaml",
        "  safeguarding:\n    group: true\n",
        "  safeguarding:\n    group: true\n    parent: s47_enquiry\n",
    )
    assert any("cycle" in f.message for f in findings_of(directory))


def test_too_deep_hierarchy_is_refused(policy_copy: PolicyCopy) -> None:
    """Casbin's role manager stops at ten levels, so deeper hierarchies are refused, not mis-indexed."""
    directory = policy_copy()
    chain = "".join(
        f"  g{i}:\n    description: level {i}\n" + (f"    member_of: [g{i + 1}]\n" if i < 11 else "")
        for i in range(12)
    )
    edit(directory / "vocabulary" / "roles.yaml", "groups:\n", "groups:\n" + chain)
    assert any("levels deep" in f.message for f in findings_of(directory))


def test_redaction_errors_stop_the_snapshot(policy_copy: PolicyCopy) -> None:
    """A redaction rule file with an unknown operator is refused with the policy."""
    directory = policy_copy()
    edit(directory / "redaction.yaml", "person.phone: drop", "person.phone: shred")
    findings = findings_of(directory)
    assert any(f.file.endswith("redaction.yaml") for f in findings)


def test_the_open_case_category_is_declared_in_the_vocabulary() -> None:
    """Each open-case check asks the category marked for its subject kind, and the agency that holds it."""
    snapshot = load_snapshot(SHIPPED)
    assert (snapshot.open_case_category, snapshot.open_case_agency) == ("csc.case", "csc")
    assert (snapshot.open_case_category_for("child"), snapshot.open_case_agency_for("child")) == ("csc.case", "csc")
    assert (snapshot.open_case_category_for("adult"), snapshot.open_case_agency_for("adult")) == ("asc.case", "asc")


def test_a_second_open_case_category_is_refused_at_its_line(policy_copy: PolicyCopy) -> None:
    """Only one category may answer the open-case check: a second one is an error where it is declared."""
    directory = policy_copy()
    categories = directory / "vocabulary" / "record_categories.yaml"
    edit(categories, "  csc.cp_plan:\n", "  csc.cp_plan:\n    open_cases: true\n")
    findings = findings_of(directory)
    assert any(f.file == "vocabulary/record_categories.yaml" and "only one category may answer the open-case check"
               in f.message for f in findings)


def test_open_cases_true_means_the_childrens_check_and_each_kind_has_its_own(policy_copy: PolicyCopy) -> None:
    """`open_cases: true` is the children's check (as before adults' MASHes); one child and one adult category may
    both be marked, but a second adult one is an error."""
    directory = policy_copy()
    categories = directory / "vocabulary" / "record_categories.yaml"
    edit(categories, "    open_cases: child\n", "    open_cases: true\n")
    snapshot = load_snapshot(directory)
    assert (snapshot.open_case_category_for("child"), snapshot.open_case_category_for("adult")) == ("csc.case",
                                                                                                    "asc.case")
    edit(categories, "  asc.care_and_support:\n", "  asc.care_and_support:\n    open_cases: adult\n")
    assert any("only one category may answer the open-case check (adult)" in f.message
               for f in findings_of(directory))


def test_an_open_case_category_without_the_screening_fields_is_refused(policy_copy: PolicyCopy) -> None:
    """Screening reads case_status, allocated_team and allocated_worker, so the flagged category must declare them."""
    directory = policy_copy()
    edit(directory / "vocabulary" / "record_categories.yaml", "      allocated_worker: staff.contact\n", "", )
    findings = findings_of(directory)
    assert any("needs the fields" in f.message and "missing: allocated_worker" in f.message for f in findings)
