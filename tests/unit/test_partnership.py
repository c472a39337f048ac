"""The partnership is read from the policy: which agencies hold records, which clients exist, which endpoints fit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.errors import PolicyError
from gateway.partnership import EndpointError, load_plan, missing_endpoints
from gateway.policy.vocabulary import Agency

AGENCIES = {
    "police": Agency("police", "Police", True),
    "yos": Agency("yos", "Youth offending service", True),
    "hub": Agency("hub", "The hub", False),
}


def test_the_shipped_policy_declares_seven_record_holders_in_order_and_its_bound_clients(policy_dir: Path) -> None:
    """Record holders come in declared order without the hub; clients are the identities bound in bindings.yaml."""
    plan = load_plan(policy_dir)
    assert plan.record_holders == ("police", "health", "csc", "education", "housing", "probation", "asc")
    assert "spiffe://mash.local/agency/hub/system/audit-console" in plan.clients
    assert "spiffe://mash.local/agency/asc/system/case-system" in plan.clients
    assert len(plan.clients) == 14  # with the review consoles, adult social care, the web and analysis consoles


def test_a_policy_whose_vocabulary_has_errors_is_refused(tmp_path: Path, policy_dir: Path) -> None:
    """A broken vocabulary raises PolicyError naming file and line rather than giving a partial partnership."""
    shutil.copytree(policy_dir, tmp_path / "p")
    agencies = tmp_path / "p" / "vocabulary" / "agencies.yaml"
    agencies.write_text(agencies.read_text().replace("    title: Police\n", "", 1))
    with pytest.raises(PolicyError, match=r"agencies\.yaml:\d+"):
        load_plan(tmp_path / "p")


def test_a_missing_policy_directory_is_refused(tmp_path: Path) -> None:
    """No vocabulary at all is an error, not an empty partnership."""
    with pytest.raises(PolicyError):
        load_plan(tmp_path / "missing")


def test_record_holders_without_an_endpoint_are_reported_in_declared_order() -> None:
    """Every record-holding agency without an endpoint is named; the hub, which holds none, never is."""
    assert missing_endpoints(AGENCIES, {}) == ("police", "yos")
    assert missing_endpoints(AGENCIES, {"yos": "127.0.0.1:1"}) == ("police",)
    assert missing_endpoints(AGENCIES, {"police": "a:1", "yos": "b:2"}) == ()


def test_an_endpoint_for_an_undeclared_agency_is_refused() -> None:
    """A misspelt or unknown agency under [agencies] is an error that names it."""
    with pytest.raises(EndpointError, match="'yot'"):
        missing_endpoints(AGENCIES, {"police": "a:1", "yot": "b:2"})


def test_an_endpoint_for_an_agency_that_holds_no_records_is_refused() -> None:
    """The hub is never asked, so an endpoint for it is a configuration mistake."""
    with pytest.raises(EndpointError, match=r"'hub'.*holds no records"):
        missing_endpoints(AGENCIES, {"hub": "a:1"})
