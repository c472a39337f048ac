"""`mash-gateway referrals …` against a running partnership: tables, --json, and refusals with exit codes."""

from __future__ import annotations

import json

import pytest

from agency_stubs.cast import NOAH_FENWICK
from gateway.cli.main import build_parser
from gateway.cli.referrals_cmd import EXIT_OK, EXIT_REFUSED, run_async
from gateway.demo.partnership import Partnership

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as on a wide terminal, so that cells are not folded across lines."""
    monkeypatch.setenv("COLUMNS", "220")


def _json(out: str) -> dict[str, object]:
    """The command's JSON line (the in-process gateway logs to the same stdout)."""
    return json.loads(next(line for line in out.splitlines() if line.startswith("{")))  # type: ignore[no-any-return]


async def _run(partnership: Partnership, capsys: pytest.CaptureFixture[str], *argv: str,
               user: str = "mash.manager.1", role: str = "mash_manager") -> tuple[int, str, str]:
    action, *rest = argv
    args = build_parser().parse_args(["referrals", action, "--gateway", partnership.address, "--pki-dir",
                                      str(partnership.pki.root), "--user", user, "--role", role, *rest])
    code = await run_async(args)
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_mash_team_works_a_referral_from_the_command_line(partnership: Partnership,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """submit → list → rate → show as JSON and tables; the referral id links them."""
    code, out, _ = await _run(
        partnership, capsys, "submit", "--json", "--nhs-number", NOAH_FENWICK.nhs_number, "--given-name",
        NOAH_FENWICK.given_name, "--family-name", NOAH_FENWICK.family_name, "--date-of-birth",
        NOAH_FENWICK.date_of_birth, "--concern", "Bruising seen at school", "--category", "physical_abuse")
    assert code == EXIT_OK
    referral = _json(out)["referral"]
    assert isinstance(referral, dict)
    rid = referral["referral_id"]
    assert referral["state"] == "REFERRAL_STATE_SCREENED"
    code, out, _ = await _run(partnership, capsys, "list", "--state", "SCREENED")
    assert code == EXIT_OK
    assert rid in out
    assert "1 referral(s)" in out
    code, out, _ = await _run(partnership, capsys, "rate", rid, "amber", "--json")
    assert _json(out)["referral"]["rating"] == "amber"  # type: ignore[index]
    code, out, _ = await _run(partnership, capsys, "show", rid)
    assert code == EXIT_OK
    assert "history" in out
    assert "rating=amber" in out


async def test_a_refusal_prints_the_status_and_field_violations(partnership: Partnership,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Bad input: exit 1, INVALID_ARGUMENT and each bad field on stderr; an invalid step names the state."""
    code, _, err = await _run(partnership, capsys, "submit", "--nhs-number", "123", "--concern", "x",
                              "--category", "neglect")
    assert code == EXIT_REFUSED
    assert "INVALID_ARGUMENT" in err
    assert "subject.nhs_number" in err
    code, out, _ = await _run(partnership, capsys, "submit", "--json", "--nhs-number", NOAH_FENWICK.nhs_number,
                              "--concern", "x", "--category", "neglect")
    rid = _json(out)["referral"]["referral_id"]  # type: ignore[index]
    code, _, err = await _run(partnership, capsys, "close", rid)
    assert code == EXIT_REFUSED
    assert "current_state=SCREENED" in err
