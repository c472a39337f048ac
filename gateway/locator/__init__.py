"""The locator: nodes enrol OPRF tokens of the people they hold, so a question goes only to the nodes
that hold its subject (and to nodes that do not enrol). See docs/locator.md."""

from __future__ import annotations

from gateway.locator.core import Locator
from gateway.locator.inputs import IdentifierKind, locator_inputs
from gateway.locator.keys import LocatorKeys
from gateway.locator.limits import EvaluationLimiter, EvaluationLimits
from gateway.locator.store import LocatorStore, LocatorStoreError, open_locator_store

__all__ = [
    "EvaluationLimiter",
    "EvaluationLimits",
    "IdentifierKind",
    "Locator",
    "LocatorKeys",
    "LocatorStore",
    "LocatorStoreError",
    "locator_inputs",
    "open_locator_store",
]
