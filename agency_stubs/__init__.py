"""Simulated agency nodes: six (police, health, csc, education, housing, probation) over a synthetic world,
and any other agency the policy declares from a records file."""

from __future__ import annotations

from agency_stubs import cast
from agency_stubs.catalogue import (
    CATALOGUE,
    CATEGORIES,
    FIELD_CATEGORIES,
    MASH_CONTACTS,
    SIMULATED_AGENCIES,
    CategorySpec,
)
from agency_stubs.dataset import (
    MATCH_BY_NAME_AND_DATE_OF_BIRTH,
    MATCH_BY_NHS_NUMBER,
    AgencyDataset,
    PersonEntry,
    PersonMatchResult,
)
from agency_stubs.holding import policy_dataset
from agency_stubs.node import AgencyNodeServicer, RunningNode, peer_spiffe_ids, serve_node, serve_world
from agency_stubs.records import make_record
from agency_stubs.world import DEFAULT_AS_OF, DEFAULT_SEED, Household, Person, World, build_world

__all__ = [
    "CATALOGUE",
    "CATEGORIES",
    "DEFAULT_AS_OF",
    "DEFAULT_SEED",
    "FIELD_CATEGORIES",
    "MASH_CONTACTS",
    "MATCH_BY_NAME_AND_DATE_OF_BIRTH",
    "MATCH_BY_NHS_NUMBER",
    "SIMULATED_AGENCIES",
    "AgencyDataset",
    "AgencyNodeServicer",
    "CategorySpec",
    "Household",
    "Person",
    "PersonEntry",
    "PersonMatchResult",
    "RunningNode",
    "World",
    "build_world",
    "cast",
    "make_record",
    "peer_spiffe_ids",
    "policy_dataset",
    "serve_node",
    "serve_world",
]
