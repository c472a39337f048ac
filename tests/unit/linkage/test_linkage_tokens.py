"""Keyed subject tokens."""

from __future__ import annotations

import hashlib
import re

from hypothesis import given
from hypothesis import strategies as st

from gateway.domain import SubjectIdentifiers
from gateway.keyring import Keyring
from gateway.linkage import SubjectTokeniser, name_text_problem, normalise_name

RING = Keyring("k1", {"k1": b"\x01" * 32})
KAI = SubjectIdentifiers(nhs_number="943 476 5919", given_name="Kai", family_name="Mercer",
                         date_of_birth="2017-05-14")
TOKEN = re.compile(r"(nhs|ndob):k\d:[0-9a-f]{64}")


def test_tokens_cover_each_available_route_with_the_active_key() -> None:
    """A subject with an NHS number and name + date of birth gets one nhs and one ndob token."""
    tokens = SubjectTokeniser(RING).tokens(KAI)
    assert [t.split(":")[0] for t in tokens] == ["nhs", "ndob"]
    assert all(TOKEN.fullmatch(t) and t.split(":")[1] == "k1" for t in tokens)


def test_tokens_skip_missing_or_invalid_identifiers() -> None:
    """Invalid NHS numbers, partial names and bad dates produce no token for their route."""
    tok = SubjectTokeniser(RING)
    assert tok.tokens(SubjectIdentifiers(nhs_number="9434765918", given_name="Kai", family_name="Mercer",
                                         date_of_birth="2017-05-14"))[0].startswith("ndob:")
    assert len(tok.tokens(SubjectIdentifiers(nhs_number="9434765918"))) == 0
    assert tok.tokens(SubjectIdentifiers(given_name="Kai", date_of_birth="2017-05-14")) == ()
    bad_date = SubjectIdentifiers(given_name="Kai", family_name="Mercer", date_of_birth="2017-02-30")
    assert tok.tokens(bad_date) == ()


def test_tokens_are_the_same_for_differently_written_identifiers() -> None:
    """Tokens are computed over normalised values, so formatting differences do not split a person."""
    tok = SubjectTokeniser(RING)
    messy = SubjectIdentifiers(nhs_number="9434765919", given_name="  KAI ", family_name="Mercer.",
                               date_of_birth="14/05/2017")
    assert tok.tokens(messy) == tok.tokens(KAI)


def test_tokens_are_keyed_not_plain_hashes() -> None:
    """A different key gives different tokens, and no token equals a plain SHA-256 of the identifier."""
    other = SubjectTokeniser(Keyring("k1", {"k1": b"\x02" * 32})).tokens(KAI)
    mine = SubjectTokeniser(RING).tokens(KAI)
    assert set(other).isdisjoint(mine)
    plain = {hashlib.sha256(v.encode()).hexdigest() for v in ("9434765919", "kai mercer 2017-05-14")}
    assert not plain & {t.rsplit(":", 1)[1] for t in mine}


def test_routes_are_domain_separated() -> None:
    """Different people never share a token by shuffling text between name fields."""
    tok = SubjectTokeniser(RING)
    a = tok.tokens(SubjectIdentifiers(given_name="Ann Marie", family_name="Lee", date_of_birth="2000-01-01"))
    b = tok.tokens(SubjectIdentifiers(given_name="Ann", family_name="Marie Lee", date_of_birth="2000-01-01"))
    assert a != b


def test_all_tokens_include_every_key_after_rotation() -> None:
    """After rotation, tokens() uses the new key and all_tokens() still includes the old key's tokens."""
    rotated = RING.rotated("k2")
    old = SubjectTokeniser(RING).tokens(KAI)
    new = SubjectTokeniser(rotated)
    assert set(old).isdisjoint(new.tokens(KAI))
    everything = new.all_tokens(KAI)
    assert everything[: len(new.tokens(KAI))] == new.tokens(KAI)
    assert set(old) <= set(everything)
    assert len(everything) == 4


@given(st.text(max_size=20), st.text(max_size=20))
def test_tokens_are_stable_under_renormalisation(given_name: str, family_name: str) -> None:
    """Tokenising already-normalised names gives the same tokens as the raw names; a raw name that cannot
    be trusted to mean what it shows (control or bidi characters, mixed alphabets) gives no name token."""
    tok = SubjectTokeniser(RING)
    raw = SubjectIdentifiers(given_name=given_name, family_name=family_name, date_of_birth="2010-10-10")
    norm = SubjectIdentifiers(given_name=normalise_name(given_name), family_name=normalise_name(family_name),
                              date_of_birth="2010-10-10")
    if name_text_problem(given_name) or name_text_problem(family_name):
        assert tok.tokens(raw) == ()
    else:
        assert tok.tokens(raw) == tok.tokens(norm)
