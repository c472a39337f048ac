"""The public API of the packages other code builds on is pinned: a change here is a deliberate one."""

from __future__ import annotations

import importlib

import pytest

PINNED = {
    "gateway.testing": ["FakeAgencyTransport", "FixedClock", "RecordingAuditSink"],
    "gateway.pki": ["DEFAULT_TRUST_DOMAIN", "CallerIdentity", "IssuedCertificate", "PkiLayout",
                    "identity_from_pem", "init_pki", "issue_certificate", "issue_client", "issue_node", "load_ca",
                    "parse_spiffe_id"],
    "gateway.service.query": ["AgencyOutcome", "Caller", "QueryCommand", "QueryResult", "QueryService",
                              "ScreenOutcome", "ScreenResult"],
}


@pytest.mark.parametrize("module", sorted(PINNED))
def test_public_api_is_what_we_publish(module: str) -> None:
    """Each module's __all__ lists exactly the pinned names, and every one of them exists."""
    loaded = importlib.import_module(module)
    assert sorted(loaded.__all__) == sorted(PINNED[module])
    for name in loaded.__all__:
        assert hasattr(loaded, name), f"{module}.{name} is listed in __all__ but missing"
