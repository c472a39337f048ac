"""The area rule in analysis planning: one borough's requester reaches another borough's agency only under a
cross-area agreement; partnership-wide agencies and same-borough agencies are unaffected."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.analysis.service import within_areas
from gateway.domain import DisclosureLevel
from gateway.policy.snapshot import PolicySnapshot, load_snapshot
from gateway.service.planning import AgencyPlan
from gateway.service.validation import Caller
from tests.two_boroughs import CAMDEN_AGREEMENT, PAN_AGREEMENT, add_two_boroughs

SHIPPED = Path(__file__).resolve().parents[3] / "policies"
CAMDEN = Caller("spiffe://mash.local/agency/hub_camden/system/mash-console", "hub_camden", "u", "mash_manager")


@pytest.fixture(scope="module")
def boroughs(tmp_path_factory: pytest.TempPathFactory) -> PolicySnapshot:
    return load_snapshot(add_two_boroughs(SHIPPED, tmp_path_factory.mktemp("areas") / "policies"))


def plan(agency: str) -> AgencyPlan:
    return AgencyPlan(agency, {f"{agency}.x": DisclosureLevel.PERTINENT}, (), ())


def test_another_borough_s_agency_is_withheld_with_the_reason_under_a_local_agreement(
        boroughs: PolicySnapshot) -> None:
    planned = dict((p.agency, (p, why)) for p, why in within_areas(
        boroughs, CAMDEN, CAMDEN_AGREEMENT, [plan("csc_hackney"), plan("police"), plan("csc")]))
    hackney, why = planned["csc_hackney"]
    assert hackney.level is DisclosureLevel.NONE
    assert not hackney.asked
    assert why == (f"agreement {CAMDEN_AGREEMENT} is not a cross-area agreement: "
                   "hub_camden (camden) may not ask csc_hackney (hackney) under it")
    assert planned["police"][1] == ""
    assert planned["police"][0].level is DisclosureLevel.PERTINENT  # partnership-wide: askable from any area
    assert planned["csc"][1] == ""  # Camden's own


def test_a_cross_area_agreement_reaches_every_borough(boroughs: PolicySnapshot) -> None:
    assert all(why == "" for _, why in within_areas(boroughs, CAMDEN, PAN_AGREEMENT, [plan("csc_hackney")]))
