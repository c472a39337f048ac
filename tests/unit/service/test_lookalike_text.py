"""Text that looks alike: validation, subject tokens and node matching treat it the same way."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agency_stubs.dataset import AgencyDataset
from agency_stubs.node import validate_lookup
from gateway.api.convert import lookup_to_proto
from gateway.domain import SubjectIdentifiers
from gateway.errors import InvalidRequest
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser, name_text_problem, normalise_name, normalise_subject
from gateway.policy import PolicyHolder
from gateway.service.ports import LookupCommand
from gateway.service.validation import Caller, QueryCommand, check_request

TODAY = date(2026, 11, 28)
CALLER = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "r.1", "mash_researcher_police")
BASE = QueryCommand("req-t", SubjectIdentifiers(given_name="Kai", family_name="Mercer", date_of_birth="2017-05-14"),
                    "safeguarding_screening", "dpa_2018_sch1_para18", "mash-isa-2026", "MASH-1")
TOKENS = SubjectTokeniser(Keyring("k1", {"k1": b"\x02" * 32}))
NAMES = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu")), min_size=1, max_size=20).filter(
    lambda s: name_text_problem(s) is None and normalise_name(s) != "")
ZERO_WIDTH = st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"])
DISPLAY_TRICKS = st.sampled_from(
    ["\u202e", "\u202d", "\u202a", "\u202b", "\u202c", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f",
     "\u061c", "\x85", "\x9b", "\x80", "\x9f", "\x7f", "\x00", "\x1b", "\ue000"])
# Latin letters and a look-alike from the Cyrillic or Greek alphabet.
LOOK_ALIKES = {"a": "\u0430", "e": "\u0435", "o": "\u03bf", "c": "\u0441", "p": "\u0440", "i": "\u0456",
               "K": "\u039a", "M": "\u041c", "A": "\u0391"}
SPOOFABLE = st.text(alphabet="".join(LOOK_ALIKES), min_size=2, max_size=20)


def insert(text: str, extra: str, where: int) -> str:
    at = where % (len(text) + 1)
    return text[:at] + extra + text[at:]


def refused_fields(holder: PolicyHolder, given_name: str) -> set[str]:
    command = replace(BASE, subject=replace(BASE.subject, given_name=given_name))
    try:
        check_request(holder.current, CALLER, command, TODAY)
    except InvalidRequest as exc:
        return {v.field for v in exc.violations}
    return set()


def node_problems(given_name: str) -> list[str]:
    """What the stub agency node (which matches with the gateway's normalisation) says of the subject."""
    subject = replace(BASE.subject, given_name=given_name)
    request = lookup_to_proto(LookupCommand("req-t", subject, ("police.crime",), (), "p", "b"))
    return validate_lookup(AgencyDataset("police", ()), request)


@pytest.fixture(scope="module")
def checked(holder: PolicyHolder) -> PolicyHolder:
    return holder


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, extra=ZERO_WIDTH, where=st.integers(min_value=0))
def test_zero_width_characters_are_dropped_the_same_way_in_names_tokens_and_node_matching(
    checked: PolicyHolder, name: str, extra: str, where: int
) -> None:
    """A zero-width character anywhere in a name changes neither validation, the token, nor the match key."""
    hidden = insert(name, extra, where)
    assert normalise_name(hidden) == normalise_name(name)
    subject, plain = (replace(BASE.subject, given_name=n) for n in (hidden, name))
    assert TOKENS.tokens(subject) == TOKENS.tokens(plain) != ()
    assert refused_fields(checked, hidden) == refused_fields(checked, name) == set()
    assert node_problems(hidden) == node_problems(name) == []


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, extra=DISPLAY_TRICKS, where=st.integers(min_value=0))
def test_control_bidi_and_private_use_characters_are_refused_everywhere(
    checked: PolicyHolder, name: str, extra: str, where: int
) -> None:
    """C0/C1 controls, bidi overrides, isolates and marks, and private-use characters refuse the name in
    validation, give no name token, and the node does not match on it."""
    tricked = insert(name, extra, where)
    assert name_text_problem(tricked) is not None
    assert refused_fields(checked, tricked) == {"subject.given_name"}
    subject = replace(BASE.subject, given_name=tricked)
    assert "given_name" in normalise_subject(subject).invalid
    assert TOKENS.tokens(subject) == ()
    assert node_problems(tricked) != []


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=SPOOFABLE, where=st.integers(min_value=0))
def test_a_name_mixing_latin_with_a_cyrillic_or_greek_look_alike_is_refused_everywhere(
    checked: PolicyHolder, name: str, where: int
) -> None:
    """Swapping one Latin letter for its Cyrillic or Greek look-alike refuses the name in every layer."""
    at = where % len(name)
    spoofed = name[:at] + LOOK_ALIKES[name[at]] + name[at + 1:]
    assert refused_fields(checked, spoofed) == {"subject.given_name"}
    subject = replace(BASE.subject, given_name=spoofed)
    assert TOKENS.tokens(subject) == ()
    assert node_problems(spoofed) != []


@pytest.mark.parametrize("name", ["Анна", "Αλέξανδρος", "Zoë", "Nguyễn", "محمد", "O'Brien-Smith"])
def test_names_written_in_one_alphabet_are_accepted(checked: PolicyHolder, name: str) -> None:
    """A name wholly in Cyrillic, Greek, Arabic or accented Latin is an ordinary name and is accepted."""
    assert name_text_problem(name) is None
    assert refused_fields(checked, name) == set()
    assert TOKENS.tokens(replace(BASE.subject, given_name=name)) != ()


def test_full_width_and_mathematical_letters_give_the_same_token_as_plain_ones() -> None:
    """Compatibility forms (full-width, mathematical bold) normalise to the plain letters they show."""
    plain = TOKENS.tokens(BASE.subject)
    for lookalike in ("\uff2b\uff41\uff49", "\U0001d40a\U0001d41a\U0001d422"):
        assert name_text_problem(lookalike) is None
        assert TOKENS.tokens(replace(BASE.subject, given_name=lookalike)) == plain
