"""Research under a referral: the research deadline cuts the time agencies are given; bad links are refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from test_referral_use_cases import KAI, MANAGER, MONDAY, POLICE, RESEARCHER, Rig, _submit, rig  # noqa: F401

from gateway.errors import InvalidRequest
from gateway.service.validation import QueryCommand
from gateway.workflow.research import MIN_AGENCY_TIMEOUT, ResearchLink

COMMAND = QueryCommand(request_id="", subject=KAI, purpose="safeguarding_screening",
                       legal_basis="dpa_2018_sch1_para18", agreement="mash-isa-2026", case_reference="")


async def test_the_research_deadline_cuts_the_agency_timeout(rig: Rig) -> None:  # noqa: F811
    """Four working hours left: the caller's 30 s stand; 10 s left: 10 s; overdue: the one-second floor."""
    referral = await rig.workflow.submit(POLICE, _submit())
    await rig.workflow.rate(MANAGER, referral.referral_id, "red")
    link = ResearchLink(rig.workflow, rig.clock)
    command, timeout = await link.begin(RESEARCHER, referral.referral_id, COMMAND, 30.0)
    assert (command.case_reference, timeout) == (referral.referral_id, 30.0)
    rig.clock.current = MONDAY + timedelta(hours=4) - timedelta(seconds=10)
    assert (await link.begin(RESEARCHER, referral.referral_id, COMMAND, 30.0))[1] == pytest.approx(10.0)
    assert (await link.begin(RESEARCHER, referral.referral_id, COMMAND, None))[1] == pytest.approx(10.0)
    rig.clock.current = MONDAY + timedelta(hours=5)
    assert (await link.begin(RESEARCHER, referral.referral_id, COMMAND, 30.0))[1] == MIN_AGENCY_TIMEOUT


async def test_a_link_needs_a_workflow_and_a_matching_case_reference(rig: Rig) -> None:  # noqa: F811
    """No workflow: referral_id is invalid; another case reference than the referral id is invalid too."""
    with pytest.raises(InvalidRequest) as caught:
        await ResearchLink(None, rig.clock).begin(RESEARCHER, "ref-" + "0" * 32, COMMAND, 5.0)
    assert [v.field for v in caught.value.violations] == ["referral_id"]
    referral = await rig.workflow.submit(POLICE, _submit())
    await rig.workflow.rate(MANAGER, referral.referral_id, "amber")
    other = replace(COMMAND, case_reference="OTHER-1")
    with pytest.raises(InvalidRequest) as caught:
        await ResearchLink(rig.workflow, rig.clock).begin(RESEARCHER, referral.referral_id, other, 5.0)
    assert [v.field for v in caught.value.violations] == ["case_reference"]
