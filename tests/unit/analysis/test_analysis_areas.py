"""Boroughs in analysis, in process on a two-borough policy: another borough's agency is asked neither for a
summary nor for a cohort under a borough's own agreement, a partnership-wide one is, the picture has a row per
borough, and the audit entries record the requesting and answering areas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.analysis.service import AnalysisService, PictureCommand, SummaryStatus
from gateway.audit import IdentifierSealer
from gateway.domain import SubjectIdentifiers
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser
from gateway.policy import PolicyHolder
from gateway.service.validation import Caller, QueryCommand
from gateway.testing import FixedClock, RecordingAuditSink
from tests.two_boroughs import CAMDEN_AGREEMENT, add_two_boroughs

SHIPPED = Path(__file__).resolve().parents[3] / "policies"
ANALYSIS_CAMDEN = "spiffe://mash.local/agency/hub_camden/system/analysis-console"
CAMDEN = Caller(ANALYSIS_CAMDEN, "hub_camden", "analyst.camden", "mash_analyst")
SUBJECT = SubjectIdentifiers(nhs_number="9434765919")


class RecordingNodes:
    """Every node offers summaries and knows nobody; each call is recorded as (agency, rpc)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def call(self, agency: str, rpc: str, request: Any, *, timeout: float) -> Any:
        self.calls.append((agency, rpc))
        if rpc == "Summarise":
            return agency_pb.SummariseResponse(agency=agency)
        return agency_pb.SummariseCohortResponse(agency=agency, key_id="k1")

    async def features(self, agency: str, *, timeout: float = 5.0) -> frozenset[int]:
        return frozenset({agency_pb.FEATURE_SUMMARISE})


@pytest.fixture(scope="module")
def boroughs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-borough policy, with an analysis console for Camden's hub and Camden's agreement covering the
    analysis purposes (data only)."""
    directory = add_two_boroughs(SHIPPED, tmp_path_factory.mktemp("areas") / "policies")
    bindings = directory / "bindings.yaml"
    bindings.write_text(bindings.read_text().rstrip("\n") + f"\n  {ANALYSIS_CAMDEN}: [mash_analyst]\n")
    agreements = directory / "agreements.yaml"
    doc = yaml.safe_load(agreements.read_text())
    camden = doc["agreements"][CAMDEN_AGREEMENT]
    camden["purposes"] += ["safeguarding_analysis", "strategic_safeguarding_analysis"]
    agreements.write_text(yaml.safe_dump(doc, sort_keys=False))
    (directory / "tests" / "analysis.yaml").unlink()  # it pins that this agreement does not cover analysis
    return directory


def service(directory: Path) -> tuple[AnalysisService, RecordingNodes, RecordingAuditSink]:
    nodes, sink = RecordingNodes(), RecordingAuditSink()
    keys = {name: Keyring.generate("k1") for name in ("token", "sealing")}
    return AnalysisService(
        policy=PolicyHolder.from_directory(directory, clock=FixedClock()), transport=nodes, audit=sink,
        tokeniser=SubjectTokeniser(keys["token"]), sealer=IdentifierSealer(keys["sealing"]), clock=FixedClock(),
        active_key=lambda: "k1",
    ), nodes, sink


async def test_another_borough_s_agency_is_not_asked_about_a_person_under_a_borough_agreement(
        boroughs: Path) -> None:
    analysis, nodes, sink = service(boroughs)
    view = await analysis.describe_person(CAMDEN, QueryCommand(
        "req-a1", SUBJECT, "safeguarding_analysis", "dpa_2018_sch1_para18", CAMDEN_AGREEMENT, "C-1"), timeout=5)
    hackney = next(p for p in view.agencies if p.agency == "csc_hackney")
    assert hackney.status is SummaryStatus.WITHHELD
    assert hackney.area == "hackney"
    assert ("csc_hackney", "Summarise") not in nodes.calls
    assert ("police", "Summarise") in nodes.calls  # partnership-wide: askable from any borough
    entries = {e.agency: e for e in sink.events}
    assert entries["csc_hackney"].details["area"] == "hackney"
    assert entries["police"].details["area"] == ""
    assert {e.details["requester_area"] for e in sink.events} == {"camden"}


async def test_another_borough_s_agency_is_left_out_of_the_picture_with_the_reason(boroughs: Path) -> None:
    analysis, nodes, _ = service(boroughs)
    picture = await analysis.partnership_picture(CAMDEN, PictureCommand(
        "req-a2", "strategic_safeguarding_analysis", "dpa_2018_sch1_para4", CAMDEN_AGREEMENT, "B-1",
        "2025-01-01", "2025-12-31"), timeout=5)
    left = dict(picture.left_out)
    assert left["csc_hackney"] == "policy allows no counts from this agency for this role, purpose and agreement"
    assert ("csc_hackney", "SummariseCohort") not in nodes.calls
    assert list(picture.areas) == ["camden", "hackney"]
