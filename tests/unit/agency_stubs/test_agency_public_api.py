"""The public surface of agency_stubs that the gateway, demo and tests build on."""

from __future__ import annotations

import agency_stubs
from agency_stubs import cast


def test_public_api_is_pinned() -> None:
    """agency_stubs exports exactly these names; changing them is a deliberate, reviewed act."""
    assert sorted(agency_stubs.__all__) == sorted([
        "CATALOGUE", "CATEGORIES", "DEFAULT_AS_OF", "DEFAULT_SEED", "FIELD_CATEGORIES", "MASH_CONTACTS",
        "MATCH_BY_NAME_AND_DATE_OF_BIRTH", "MATCH_BY_NHS_NUMBER", "SIMULATED_AGENCIES", "AgencyDataset",
        "AgencyNodeServicer", "CategorySpec", "Household", "Person", "PersonEntry", "PersonMatchResult",
        "RunningNode", "World", "build_world", "cast", "make_record", "peer_spiffe_ids", "policy_dataset",
        "serve_node", "serve_world",
    ])
    assert all(hasattr(agency_stubs, name) for name in agency_stubs.__all__)


def test_cast_constants_are_exposed() -> None:
    """The cast module exposes each named person and the whole cast."""
    assert {m.full_name for m in cast.CAST} == {
        "Kai Mercer", "Jodie Mercer", "Dean Ashby", "Ruby Mercer", "Noah Fenwick",
    }
    assert cast.KAI_MERCER.date_of_birth == "2017-05-14"
