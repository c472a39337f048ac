"""Locator inputs: the linkage module's normalisation, one domain per identifier kind, and the routing rule."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.domain import DisclosureLevel, SubjectIdentifiers
from gateway.keyring import Keyring
from gateway.linkage import normalise_subject
from gateway.locator import IdentifierKind, LocatorKeys, locator_inputs
from gateway.locator.inputs import DOMAIN, encode
from gateway.service.planning import AgencyPlan, Routing, route_plans


def inputs(**fields: str) -> dict[IdentifierKind, bytes]:
    return dict(locator_inputs(normalise_subject(SubjectIdentifiers(**fields))))


def test_nhs_number_spacing_and_hyphens_give_one_input() -> None:
    """"999 000 6180", "999-000-6180" and "9990006180" are one person to the locator, as to the nodes."""
    forms = [inputs(nhs_number=n)[IdentifierKind.NHS_NUMBER] for n in ("999 000 6180", "999-000-6180", "9990006180")]
    assert len(set(forms)) == 1


@pytest.mark.parametrize(("given", "family", "born"), [
    ("Noah", "Fenwick", "2016-09-30"),
    ("  NOAH ", "fenwick", "30/09/2016"),
    ("Master Noah", "FENWICK", "2016-09-30"),
    ("Nóah", "Fenwick", "2016-09-30"),
])
def test_name_and_date_of_birth_variants_the_linkage_module_folds_give_one_input(given: str, family: str,
                                                                                  born: str) -> None:
    """Case, accents, titles, spacing and date format do not change the name-and-birth-date input."""
    reference = inputs(given_name="Noah", family_name="Fenwick", date_of_birth="2016-09-30")
    variant = inputs(given_name=given, family_name=family, date_of_birth=born)
    assert variant[IdentifierKind.NAME_AND_DATE_OF_BIRTH] == reference[IdentifierKind.NAME_AND_DATE_OF_BIRTH]


def test_a_different_name_or_date_gives_a_different_input() -> None:
    """Normalisation folds presentation, not identity."""
    reference = inputs(given_name="Noah", family_name="Fenwick", date_of_birth="2016-09-30")
    for other in (inputs(given_name="Noah", family_name="Fenwick", date_of_birth="2016-09-29"),
                  inputs(given_name="Noa", family_name="Fenwick", date_of_birth="2016-09-30")):
        assert other[IdentifierKind.NAME_AND_DATE_OF_BIRTH] != reference[IdentifierKind.NAME_AND_DATE_OF_BIRTH]


def test_each_identifier_kind_has_its_own_domain() -> None:
    """Inputs start with the versioned domain and the kind, length-prefixed, so kinds can never collide."""
    nhs = encode(IdentifierKind.NHS_NUMBER, ("9990006180",))
    assert nhs == DOMAIN + (3).to_bytes(4, "big") + b"nhs" + (10).to_bytes(4, "big") + b"9990006180"
    # The same text under the other kind (or split differently) is a different input.
    assert encode(IdentifierKind.NAME_AND_DATE_OF_BIRTH, ("9990006180",)) != nhs
    assert encode(IdentifierKind.NAME_AND_DATE_OF_BIRTH, ("ab", "c", "d")) != encode(
        IdentifierKind.NAME_AND_DATE_OF_BIRTH, ("a", "bc", "d"))


def test_unusable_identifiers_give_no_input() -> None:
    """A name without a birth date, or an invalid NHS number, gives nothing to look up."""
    assert inputs(given_name="Noah", family_name="Fenwick") == {}
    assert inputs(nhs_number="999 000 6181") == {}
    assert set(inputs(nhs_number="9990006180", given_name="Noah", family_name="Fenwick",
                      date_of_birth="2016-09-30")) == set(IdentifierKind)


def test_locator_keys_derive_a_distinct_secret_per_key_id() -> None:
    """Each key id is its own OPRF key; the active one is listed first."""
    ring = Keyring("k2", {"k1": b"\x01" * 32, "k2": b"\x01" * 32})
    keys = LocatorKeys(ring)
    assert keys.key_ids == ("k2", "k1")
    assert keys.secret("k1") != keys.secret("k2")  # same seed, different info string
    assert "k3" not in keys


def _plan(agency: str) -> AgencyPlan:
    return AgencyPlan(agency, {f"{agency}.case": DisclosureLevel.PERTINENT}, (), ())


def test_routing_skips_only_complete_enrolments_without_a_match() -> None:
    """A node is skipped only when its enrolment is complete and none of its tokens matched; nodes that do
    not enrol, and nodes that matched, are asked; skipped plans carry the hold time."""
    plans = [_plan(a) for a in ("police", "health", "csc", "probation")]
    routing = Routing(enrolled=frozenset({"police", "health", "csc"}), matched=frozenset({"health"}),
                      hold={"police": 0.002, "csc": 0.003})
    routed = {p.agency: p for p in route_plans(plans, routing)}
    assert {a for a, p in routed.items() if p.asked} == {"health", "probation"}
    assert (routed["police"].hold, routed["csc"].hold) == (0.002, 0.003)
    assert all(p.asked for p in route_plans(plans, None))


def test_a_node_enrolled_only_partly_is_asked_about_everyone() -> None:
    """Until a node says its enrolment is complete, the index cannot say it does not hold someone."""
    routed = route_plans([_plan("police")], Routing(enrolled=frozenset(), matched=frozenset()))
    assert routed[0].asked


def test_born_dates_are_iso_in_the_input() -> None:
    """The date part is YYYY-MM-DD whatever format the caller used."""
    assert date(2016, 9, 30).isoformat().encode() in inputs(
        given_name="Noah", family_name="Fenwick", date_of_birth="30/09/2016")[IdentifierKind.NAME_AND_DATE_OF_BIRTH]
