"""Redaction operators: the known vectors of the redaction issue and each operator's edge cases."""

from __future__ import annotations

import hashlib
import re
from datetime import date

import pytest

from gateway.domain import AgencyContact
from gateway.keyring import Keyring
from gateway.redaction import (
    DEFAULT_AGE_BANDS,
    REDACTED_DATE,
    REDACTED_POSTCODE,
    AgeBands,
    Pseudonymiser,
    age_on,
    agency_summary,
    drop,
    existence_only,
    generalise_date,
    generalise_postcode,
    keep,
    mask,
    pseudonymise,
    replace,
    verify_pseudonym,
)

KEYS = Keyring("k1", {"k1": bytes(range(32))})
OTHER_KEYS = Keyring("k2", {"k2": bytes(range(1, 33))})


# -- keep, drop, replace, agency summary, existence only ------------------------------------------------


def test_keep_releases_the_value_as_held() -> None:
    """keep returns the held value unchanged."""
    assert keep("Flat 3, 1 High Street") == "Flat 3, 1 High Street"


def test_drop_releases_nothing() -> None:
    """drop returns None, which the redactor lists as withheld."""
    assert drop("anything") is None


def test_replace_releases_the_fixed_text_whatever_the_value() -> None:
    """replace returns its configured text and never the value."""
    assert replace("Riverside Clinic", text="[service withheld]") == "[service withheld]"


def test_agency_summary_releases_the_records_own_summary() -> None:
    """agency_summary returns the record's summary instead of the detail."""
    assert agency_summary("long narrative", summary="Domestic incident, child present") == (
        "Domestic incident, child present"
    )


def test_existence_only_names_the_agency_and_its_contact() -> None:
    """existence_only says the subject is known and whom to call, and nothing else."""
    contact = AgencyContact("health", team="Health MASH nurse", phone="020 7946 0102")
    assert existence_only("health", contact) == (
        "Known to health: yes. Contact: Health MASH nurse, 020 7946 0102."
    )
    assert existence_only("health", None) == "Known to health: yes."


# -- mask ----------------------------------------------------------------------------------------------


def test_mask_keep_last_four_of_an_nhs_number() -> None:
    """The issue's vector: keep_last=4 of 9434765919 is ******5919."""
    assert mask("9434765919", keep_last=4) == "******5919"


@pytest.mark.parametrize("value", ["", "1", "12", "123", "1234"])
def test_mask_hides_values_of_four_or_fewer_characters_completely(value: str) -> None:
    """Values of four or fewer characters are masked whole, whatever is kept."""
    assert mask(value, keep_first=1, keep_last=4) == "*" * len(value)


def test_mask_keeps_first_and_last_characters_with_the_chosen_character() -> None:
    """keep_first and keep_last together frame the masked middle, in the configured character."""
    assert mask("ABCDEFG", keep_first=2, keep_last=2, char="#") == "AB###FG"


def test_mask_never_keeps_the_whole_value() -> None:
    """When the kept characters would cover the value, it is masked whole."""
    assert mask("ABCDEF", keep_first=3, keep_last=3) == "******"


def test_mask_rejects_bad_parameters() -> None:
    """A negative count or a mask 'character' of another length is a ValueError."""
    with pytest.raises(ValueError, match="non-negative"):
        mask("123456", keep_last=-1)
    with pytest.raises(ValueError, match="one character"):
        mask("123456", char="**")


# -- pseudonymise ----------------------------------------------------------------------------------------


def test_pseudonym_is_deterministic_within_a_key_and_domain() -> None:
    """The same value, key and domain give the same pseudonym."""
    first = pseudonymise("Jane Doe", domain="person", keys=KEYS)
    assert pseudonymise("Jane Doe", domain="person", keys=KEYS) == first


def test_pseudonym_differs_with_another_domain_or_key() -> None:
    """Another domain or another key gives another pseudonym for the same value."""
    base = pseudonymise("Jane Doe", domain="person", keys=KEYS)
    assert pseudonymise("Jane Doe", domain="informant", keys=KEYS) != base
    assert pseudonymise("Jane Doe", domain="person", keys=OTHER_KEYS) != base


def test_pseudonym_is_never_an_unkeyed_sha256_of_the_value() -> None:
    """The pseudonym contains no plain SHA-256 of the value, whole or truncated, raw or normalised."""
    token = pseudonymise("Jane Doe", domain="person", keys=KEYS)
    digest = token.rsplit(":", 1)[1]
    for text in ("Jane Doe", "jane doe"):
        plain = hashlib.sha256(text.encode()).hexdigest()
        assert token != plain
        assert digest != plain[: len(digest)]
        assert plain[: len(digest)] not in token


def test_pseudonym_names_its_key_id() -> None:
    """A pseudonym reads pn:<key id>:<hex digest>."""
    assert re.fullmatch(r"pn:k1:[0-9a-f]{32}", pseudonymise("Jane Doe", domain="person", keys=KEYS))


def test_pseudonym_ignores_case_spacing_and_unicode_form() -> None:
    """Names written with other case, spacing or Unicode composition get the same pseudonym."""
    base = pseudonymise("Zoë Smith", domain="person", keys=KEYS)
    assert pseudonymise("  ZOË   smith ", domain="person", keys=KEYS) == base
    assert pseudonymise("Zoe\u0308 Smith", domain="person", keys=KEYS) == base


def test_old_pseudonyms_still_verify_after_key_rotation() -> None:
    """A pseudonym made before rotation verifies against the rotated ring; new ones use the new key id."""
    ring = Keyring("2025", {"2025": b"a" * 32})
    old = pseudonymise("Jane Doe", domain="person", keys=ring)
    rotated = ring.rotated("2026")
    new = pseudonymise("Jane Doe", domain="person", keys=rotated)
    assert new.startswith("pn:2026:")
    assert new != old
    assert verify_pseudonym(old, "Jane Doe", "person", rotated)
    assert verify_pseudonym(new, "jane doe", "person", rotated)


@pytest.mark.parametrize(
    ("token_value", "value", "domain"),
    [
        ("Jane Doe", "John Doe", "person"),  # another value
        ("Jane Doe", "Jane Doe", "informant"),  # another domain
    ],
)
def test_verify_pseudonym_rejects_another_value_or_domain(token_value: str, value: str, domain: str) -> None:
    """verify_pseudonym is False for any value or domain other than the one pseudonymised."""
    token = pseudonymise(token_value, domain="person", keys=KEYS)
    assert not verify_pseudonym(token, value, domain, KEYS)


@pytest.mark.parametrize("token", ["", "pn:", "pn:k9:00", "xx:k1:00", "pn:k1:zz", "Jane Doe"])
def test_verify_pseudonym_rejects_malformed_tokens_and_unknown_key_ids(token: str) -> None:
    """Garbled tokens and unknown key ids never verify (and never raise)."""
    assert not verify_pseudonym(token, "Jane Doe", "person", KEYS)


@pytest.mark.parametrize("key", [b"", b"k", bytes(range(32)), bytes(64), bytes(range(65)), b"x" * 200])
@pytest.mark.parametrize("value", ["Jane Doe", "  ZOË smith ", ""])
def test_the_prepared_pseudonymiser_agrees_with_pseudonymise(key: bytes, value: str) -> None:
    """The prepared pseudonymiser gives exactly the reference HMAC pseudonym, whatever the key length."""
    ring = Keyring("kx", {"kx": key})
    fast = Pseudonymiser(ring).pseudonym(value, "person")
    assert fast == pseudonymise(value, domain="person", keys=ring)
    assert verify_pseudonym(fast, value, "person", ring)


def test_pseudonyms_keep_their_published_values() -> None:
    """A known value gives the same pseudonym as every earlier release, so stored pseudonyms still match."""
    ring = Keyring("k1", {"k1": bytes(range(32))})
    pseudonyms = Pseudonymiser(ring)
    assert pseudonyms.pseudonym("Darren Example", "person") == "pn:k1:4db44a3a6087bb7b653389954c567ae7"
    assert pseudonyms.scoped("req-1").pseudonym("Darren Example", "person") == (
        "pn:k1:e71cc7155d2708ad65880d00b7ed1fc3"
    )


def test_the_prepared_pseudonymiser_rejects_a_malformed_domain() -> None:
    """The fast pseudonymiser validates domains like pseudonymise does."""
    with pytest.raises(ValueError, match="domain"):
        Pseudonymiser(KEYS).pseudonym("x", "Has Spaces")


def test_pseudonymise_rejects_a_malformed_domain() -> None:
    """A domain that is not a short lower-case name is a ValueError."""
    with pytest.raises(ValueError, match="domain"):
        pseudonymise("x", domain="Has Spaces", keys=KEYS)


# -- generalise date -------------------------------------------------------------------------------------

ON = date(2026, 11, 26)


def test_generalise_date_to_year_and_month() -> None:
    """year keeps YYYY and month keeps YYYY-MM, from a date or an RFC 3339 timestamp."""
    assert generalise_date("2014-03-05", to="year", on=ON) == "2014"
    assert generalise_date("2014-03-05", to="month", on=ON) == "2014-03"
    assert generalise_date("2014-03-05T23:10:00Z", to="month", on=ON) == "2014-03"


def test_a_date_of_birth_exactly_on_a_band_edge_falls_in_the_higher_band() -> None:
    """On the fifth birthday a child is in the 5-10 band; the day before, still in 1-4."""
    assert generalise_date("2021-11-26", to="age_band", on=ON) == "age 5-10"
    assert generalise_date("2021-11-27", to="age_band", on=ON) == "age 1-4"


def test_age_bands_are_configurable() -> None:
    """Custom edges give their own labels; the 18th birthday is in the adult band."""
    bands = AgeBands.from_edges([0, 18])
    assert generalise_date("2008-11-26", to="age_band", on=ON, bands=bands) == "age 18+"
    assert generalise_date("2008-11-27", to="age_band", on=ON, bands=bands) == "age 0-17"


def test_default_age_bands_follow_safeguarding_thresholds() -> None:
    """The default bands are infant, 1-4, 5-10, 11-15, 16-17, 18-24 and 25+."""
    assert DEFAULT_AGE_BANDS.labels == (
        "age 0", "age 1-4", "age 5-10", "age 11-15", "age 16-17", "age 18-24", "age 25+",
    )


def test_a_29_february_birthday_counts_from_1_march_in_other_years() -> None:
    """Someone born on 29 February turns 18 on 1 March in a non-leap year, not on 28 February."""
    assert age_on(date(2012, 2, 29), date(2030, 2, 28)) == 17
    assert age_on(date(2012, 2, 29), date(2030, 3, 1)) == 18


@pytest.mark.parametrize("value", ["", "not a date", "2014-13-01", "05/03/2014", "2025-autumn"])
def test_an_unreadable_date_becomes_the_redacted_marker(value: str) -> None:
    """A value that is not an ISO date or timestamp is never released; the marker stands in."""
    for to in ("year", "month", "age_band"):
        assert generalise_date(value, to=to, on=ON) == REDACTED_DATE


def test_a_date_of_birth_after_the_disclosure_date_becomes_the_redacted_marker() -> None:
    """A date of birth in the future gives no age band."""
    assert generalise_date("2027-01-01", to="age_band", on=ON) == REDACTED_DATE


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ([], "at least one"),
        ([1, 5], "start at 0"),
        ([0, 5, 5], "strictly increasing"),
        ([0, 10, 5], "strictly increasing"),
        ([0, 1.5], "whole numbers"),
        ([0, True], "whole numbers"),
        ([0, 200], "at most 150"),
    ],
)
def test_malformed_age_bands_are_rejected(edges: list[object], message: str) -> None:
    """Age band edges must start at 0, be whole years and strictly increase."""
    with pytest.raises(ValueError, match=message):
        AgeBands.from_edges(edges)  # type: ignore[arg-type]


# -- generalise postcode ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "to", "expected"),
    [
        ("SW1A 1AA", "district", "SW1A"),
        ("SW1A 1AA", "sector", "SW1A 1"),
        ("SW1A 1AA", "area", "SW"),
        ("sw1a1aa", "district", "SW1A"),
        ("M1 1AE", "area", "M"),
        ("M1 1AE", "sector", "M1 1"),
        ("  B33 8TH ", "district", "B33"),
        ("CR2 6XH", "district", "CR2"),
    ],
)
def test_generalise_postcode(value: str, to: str, expected: str) -> None:
    """Area, district and sector of valid postcodes, whatever their case and spacing."""
    assert generalise_postcode(value, to=to) == expected


@pytest.mark.parametrize("value", ["", "SW1A", "NOT A POSTCODE", "SW1A 1A", "12345", "SW1A 1AA X"])
def test_an_invalid_postcode_becomes_the_redacted_marker(value: str) -> None:
    """A value that is not a postcode is never released, at any granularity."""
    for to in ("area", "district", "sector"):
        assert generalise_postcode(value, to=to) == REDACTED_POSTCODE


def test_the_public_api_is_pinned() -> None:
    """The names the policy and service layers build on stay exported."""
    import gateway.redaction as redaction

    assert {"load_rules", "parse_rules", "RedactionRules", "RedactionContext", "RedactionResult", "Redactor",
            "verify_pseudonym", "pseudonymise", "Pseudonymiser"} <= set(redaction.__all__)
    assert all(hasattr(redaction, name) for name in redaction.__all__)


def test_scoped_pseudonyms_agree_within_a_scope_and_differ_across_scopes() -> None:
    """Scoped (per-request) pseudonyms link a person within one answer but not across answers."""
    from gateway.keyring import Keyring
    from gateway.redaction import Pseudonymiser, pseudonymise, verify_pseudonym

    keys = Keyring.generate("k1")
    one = pseudonymise("Dean Ashby", domain="person", keys=keys, scope="req-1")
    assert one == pseudonymise("dean  ASHBY", domain="person", keys=keys, scope="req-1")
    assert one != pseudonymise("Dean Ashby", domain="person", keys=keys, scope="req-2")
    assert one != pseudonymise("Dean Ashby", domain="person", keys=keys)
    assert Pseudonymiser(keys).scoped("req-1").pseudonym("Dean Ashby", "person") == one
    assert Pseudonymiser(keys).scoped("").pseudonym("Dean Ashby", "person") == pseudonymise(
        "Dean Ashby", domain="person", keys=keys)
    assert verify_pseudonym(one, "Dean Ashby", "person", keys, scope="req-1")
    assert not verify_pseudonym(one, "Dean Ashby", "person", keys)
