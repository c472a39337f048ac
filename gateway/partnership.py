"""Who is in a partnership, read from its policy directory: agencies, their nodes and the client systems.

Nothing in the gateway names a particular agency; every list of agencies, node certificates and client
systems comes from here, so an agency joins by configuration alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import Finding, GatewayError, PolicyError
from gateway.policy.vocabulary import Agency, Vocabulary, load_vocabulary


class EndpointError(GatewayError):
    """The settings give an endpoint to an agency the policy does not declare as holding records."""


@dataclass(frozen=True, slots=True)
class PartnershipPlan:
    """The declared agencies (in declared order) and the client identities bound in bindings.yaml."""

    agencies: Mapping[str, Agency]
    clients: tuple[str, ...]

    @property
    def record_holders(self) -> tuple[str, ...]:
        """Agencies that answer hub questions and so run a node, in declared order."""
        return tuple(name for name, agency in self.agencies.items() if agency.holds_records)

    @classmethod
    def from_vocabulary(cls, vocabulary: Vocabulary) -> PartnershipPlan:
        return cls(vocabulary.agencies, tuple(vocabulary.bindings))


def load_plan(policy_dir: Path) -> PartnershipPlan:
    """Read the vocabulary of `policy_dir`; PolicyError if it cannot be read or has errors."""
    findings: list[Finding] = []
    vocabulary = load_vocabulary(policy_dir, findings)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise PolicyError(errors, f"the policy vocabulary in {policy_dir} has errors")
    return PartnershipPlan.from_vocabulary(vocabulary)


def missing_endpoints(agencies: Mapping[str, Agency], endpoints: Mapping[str, str]) -> tuple[str, ...]:
    """Record-holding agencies without an endpoint; EndpointError for an endpoint no agency can use.

    An endpoint for an undeclared agency (or one that holds no records) is refused rather than ignored: it
    is most often a misspelt name, which would otherwise leave the real agency silently unasked.
    """
    undeclared = sorted(name for name in endpoints if name not in agencies)
    if undeclared:
        raise EndpointError(
            f"[agencies] names {', '.join(map(repr, undeclared))}, which the policy does not declare "
            "(policies/vocabulary/agencies.yaml)"
        )
    askless = sorted(name for name in endpoints if not agencies[name].holds_records)
    if askless:
        raise EndpointError(
            f"[agencies] gives an endpoint to {', '.join(map(repr, askless))}, which holds no records "
            "(holds_records: false) and is never asked"
        )
    return tuple(name for name, agency in agencies.items() if agency.holds_records and name not in endpoints)
