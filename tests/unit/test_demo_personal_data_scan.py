"""The demo's personal-data scan finds whole values and ignores chance matches inside encoded data."""

from __future__ import annotations

from gateway.demo.story import personal_data_in


def test_a_name_stored_as_a_value_is_found_whatever_its_case() -> None:
    """A name or date written into an entry as text is reported."""
    blob = '{"user":"x","reason":"asked about KAI mercer","dob":"2017-05-14"}'
    assert personal_data_in(blob, ["Kai", "Mercer", "2017-05-14", "Ruby"]) == ["Kai", "Mercer", "2017-05-14"]


def test_a_short_name_inside_a_base64_sealed_value_is_not_a_leak() -> None:
    """'kai' occurring by chance inside base64 or hex runs is not reported (it made the demo fail at random)."""
    blob = '{"sealed":"k1:Qm9rAIxyz+/KaiQ==","token":"subject:k1:9fkai0"}'
    assert personal_data_in(blob, ["Kai"]) == []
