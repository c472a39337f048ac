"""Identifier normalisation: NHS numbers, names, dates and postcodes."""

from __future__ import annotations

import time
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain import SubjectIdentifiers
from gateway.linkage import (
    MAX_NAME_LENGTH,
    is_valid_nhs_number,
    nhs_check_digit,
    normalise_date,
    normalise_name,
    normalise_nhs_number,
    normalise_postcode,
    normalise_subject,
)


def _reference_check_digit(nine: str) -> int | None:
    """Independent statement of the rule: 11 - (sum d_i * (11 - i), i = 1..9) mod 11; 11 -> 0; 10 -> none."""
    total = 0
    for i in range(1, 10):
        total += int(nine[i - 1]) * (11 - i)
    check = 11 - (total % 11)
    return {11: 0, 10: None}.get(check, check)


def test_known_valid_nhs_number_with_spaces_is_accepted() -> None:
    """The documented example 943 476 5919 is valid and normalises to its ten digits."""
    assert is_valid_nhs_number("943 476 5919")
    assert normalise_nhs_number(" 943 476 5919 ") == "9434765919"
    assert normalise_nhs_number("943-476-5919") == "9434765919"


def test_known_invalid_nhs_number_is_rejected_for_its_check_digit() -> None:
    """9434765918 fails the modulus-11 check and the message says so."""
    assert not is_valid_nhs_number("9434765918")
    with pytest.raises(ValueError, match="check digit"):
        normalise_nhs_number("9434765918")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("943476591", "10 digits, not 9"),
        ("94347659190", "10 digits, not 11"),
        ("94347659l9", "only digits"),
        ("９４３４７６５９１９", "only digits"),  # full-width digits are not ASCII digits
    ],
)
def test_malformed_nhs_numbers_get_a_specific_message(text: str, message: str) -> None:
    """Empty, wrong-length and non-digit NHS numbers each raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=message):
        normalise_nhs_number(text)


def test_nhs_number_whose_check_value_is_ten_is_invalid() -> None:
    """Nine digits whose check value computes to 10 cannot form a valid number, whatever the tenth digit."""
    candidates = (f"{n:09d}" for n in range(100_000_000, 100_100_000))
    nine = next(c for c in candidates if _reference_check_digit(c) is None)
    assert nhs_check_digit(nine) is None
    for last in "0123456789":
        with pytest.raises(ValueError, match="check value 10"):
            normalise_nhs_number(nine + last)


def test_nhs_error_messages_do_not_repeat_the_number() -> None:
    """Error messages never echo the NHS number, because they may be logged."""
    for text in ("9434765918", "943476591", "94347659x9"):
        with pytest.raises(ValueError, match="NHS number") as info:
            normalise_nhs_number(text)
        assert text not in str(info.value)
        assert "94347" not in str(info.value)


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_nhs_check_digit_follows_the_modulus_11_rule(nine: str) -> None:
    """For any nine digits, exactly the reference check digit (if any) completes a valid number."""
    expected = _reference_check_digit(nine)
    assert nhs_check_digit(nine) == expected
    valid = [d for d in "0123456789" if is_valid_nhs_number(nine + d)]
    assert valid == ([] if expected is None else [str(expected)])


@given(st.text(alphabet="0123456789 -", max_size=16))
def test_nhs_normalisation_is_idempotent(text: str) -> None:
    """Normalising a normalised NHS number returns it unchanged."""
    try:
        once = normalise_nhs_number(text)
    except ValueError:
        return
    assert normalise_nhs_number(once) == once
    assert len(once) == 10
    assert once.isdigit()


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("  Jodie   MERCER ", "jodie mercer"),
        ("Mrs Jodie Mercer", "jodie mercer"),
        ("Dr. J. Mercer", "j mercer"),
        ("O'Brien", "OBrien"),
        ("O\u2019Brien", "o'brien"),
        ("Smith-Jones", "smith jones"),
        ("Smith\u2013Jones", "Smith Jones"),
        ("Zo\u00eb", "Zoe"),
        ("Zoe\u0308", "zoë"),
        ("Stra\u00dfe", "STRASSE"),
        ("\uff2a\uff4f\uff44\uff49\uff45", "jodie"),  # full-width letters fold under NFKC
        ("Ann\u200bMarie", "annmarie"),
    ],
)
def test_name_variants_normalise_to_the_same_form(left: str, right: str) -> None:
    """Case, spacing, titles, punctuation, apostrophes, hyphens, accents and width do not affect a name."""
    assert normalise_name(left) == normalise_name(right)


def test_a_title_alone_is_kept_as_the_name() -> None:
    """A name that is only a title-like word is not erased (a family name may be Miss or Master)."""
    assert normalise_name("Miss") == "miss"
    assert normalise_name("Mr Master") == "master"


def test_name_of_only_punctuation_is_empty() -> None:
    """A name with no letters normalises to the empty string."""
    assert normalise_name(" -' . ") == ""


def test_names_in_other_scripts_keep_their_marks() -> None:
    """Combining marks outside the Latin script carry meaning and survive normalisation."""
    assert normalise_name("\u0905\u0928\u093f\u0932") == "\u0905\u0928\u093f\u0932"


@given(st.text(max_size=40))
def test_name_normalisation_is_idempotent(text: str) -> None:
    """normalise_name(normalise_name(x)) == normalise_name(x) for any Unicode text."""
    once = normalise_name(text)
    assert normalise_name(once) == once
    assert once == once.strip()
    assert "  " not in once


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2017-05-14", date(2017, 5, 14)), ("14/05/2017", date(2017, 5, 14)), ("4/5/2017", date(2017, 5, 4)),
     (" 2024-02-29 ", date(2024, 2, 29))],
)
def test_dates_in_iso_and_uk_forms_are_accepted(text: str, expected: date) -> None:
    """ISO 8601 and day-first UK dates parse to the same calendar date."""
    assert normalise_date(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("2017/05/14", "YYYY-MM-DD"), ("\uff12\uff10\uff11\uff17-05-14", "YYYY-MM-DD"),
     ("14-05-2017", "YYYY-MM-DD"), ("2017-5-14", "YYYY-MM-DD"),
     ("2023-02-29", "real calendar date"), ("31/04/2020", "real calendar date"), ("2020-13-01", "real")],
)
def test_malformed_or_impossible_dates_are_rejected(text: str, message: str) -> None:
    """Malformed and impossible dates raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=message):
        normalise_date(text)


def test_future_dates_are_rejected_when_today_is_given() -> None:
    """A date after `today` is rejected; `today` itself is accepted."""
    today = date(2026, 11, 26)
    assert normalise_date("2026-11-26", today=today) == today
    with pytest.raises(ValueError, match="future"):
        normalise_date("2026-11-27", today=today)


@given(st.dates())
def test_date_normalisation_round_trips(value: date) -> None:
    """Any date written in ISO form parses back to itself, and its UK form to the same date."""
    assert normalise_date(value.isoformat()) == value
    assert normalise_date(value.strftime("%d/%m/") + f"{value.year:04d}") == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [("sw1a1aa", "SW1A 1AA"), (" SW1A  1AA ", "SW1A 1AA"), ("e8 3ab", "E8 3AB"), ("N170AB", "N17 0AB"),
     ("w1a 0ax", "W1A 0AX"), ("CR26XH", "CR2 6XH"), ("gir 0aa", "GIR 0AA"), ("M1 1AE", "M1 1AE")],
)
def test_valid_postcodes_get_canonical_spacing(text: str, expected: str) -> None:
    """UK postcodes are upper-cased and spaced as OUTWARD INWARD."""
    assert normalise_postcode(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("SW1A-1AA", "only letters"), ("SW1", "5 to 7"), ("SW1A1AAA", "5 to 7"),
     ("SW1A 1CA", "inward"), ("QW1 1AA", "outward"), ("1SW 1AA", "outward")],
)
def test_invalid_postcodes_are_rejected(text: str, message: str) -> None:
    """Strings that are not UK postcodes raise ValueError naming the part that is wrong."""
    with pytest.raises(ValueError, match=message):
        normalise_postcode(text)


@given(st.text(alphabet="ABCDEFGHJKLMNPRSTUWXYZ0123456789 abc", max_size=9))
def test_postcode_normalisation_is_idempotent(text: str) -> None:
    """A canonical postcode normalises to itself."""
    try:
        once = normalise_postcode(text)
    except ValueError:
        return
    assert normalise_postcode(once) == once


def test_subject_normalisation_lists_invalid_identifiers_without_failing() -> None:
    """normalise_subject keeps usable identifiers and names the given-but-invalid ones."""
    subject = SubjectIdentifiers(nhs_number="9434765918", given_name="Mr Kai", family_name="MERCER",
                                 date_of_birth="14/05/2017", postcode="not a postcode")
    result = normalise_subject(subject)
    assert result.nhs_number == ""
    assert result.name_and_date_of_birth == ("kai", "mercer", date(2017, 5, 14))
    assert result.invalid == ("nhs_number", "postcode")
    assert result.usable
    assert not normalise_subject(SubjectIdentifiers(given_name="Kai")).usable


def test_an_over_long_name_is_listed_invalid_without_being_normalised() -> None:
    """A name past MAX_NAME_LENGTH (here a million U+FDFA) is invalid at once; the NHS route still works."""
    subject = SubjectIdentifiers(nhs_number="9990000018", given_name="\ufdfa" * 1_000_000, family_name="Mercer")
    started = time.perf_counter()
    result = normalise_subject(subject)
    assert time.perf_counter() - started < 0.1
    assert (result.invalid, result.given_name, result.nhs_number) == (("given_name",), "", "9990000018")
    assert normalise_subject(SubjectIdentifiers(given_name="K" * MAX_NAME_LENGTH)).given_name == "k" * MAX_NAME_LENGTH
