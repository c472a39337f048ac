"""A copy of the shipped policy with one more agency, a youth offending service (`yos`), added as data only.

The service's policy data lives in the product (`agency_stubs.youth_offending`), which the generated pan-London
partnership also uses for every borough's service."""

from __future__ import annotations

from agency_stubs.youth_offending import YOS_CLIENT, add_youth_offending_service

__all__ = ["YOS_CLIENT", "add_youth_offending_service"]
