"""The console's parts that need no browser: password hashes, the accounts file, sessions, the sign-in throttle,
the CLI, charts and deadline counts."""

from __future__ import annotations

import io
import json
import logging
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.console.accounts import AccountError, Accounts, add_user, hash_password, verify_password
from gateway.console.charts import Series, bar_chart, duration, series
from gateway.console.sessions import SessionStore
from gateway.console.throttle import SignInThrottle, wait_message
from gateway.console.views_work import deadline_counts
from gateway.generated.mash.gateway.v1 import audit_service_pb2 as audit_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2 as referral_pb


def test_password_hashes_are_salted_scrypt_and_verify_only_the_right_password() -> None:
    first, second = hash_password("a long enough secret"), hash_password("a long enough secret")
    assert first.startswith("scrypt$")
    assert first != second, "each hash has its own salt"
    assert verify_password("a long enough secret", first)
    assert not verify_password("a long enough secreT", first)
    assert not verify_password("anything", "md5$abc")


def test_the_accounts_file_holds_hashes_not_passwords_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    add_user(path, "dpo.ada", "correct horse battery", ["auditor"])
    add_user(path, "ig.ian", "another long password", ["policy_admin", "auditor"])
    text = path.read_text()
    assert "correct horse battery" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    accounts = Accounts.load(path)
    assert len(accounts) == 2
    assert accounts.authenticate("dpo.ada", "correct horse battery") is not None
    assert accounts.authenticate("dpo.ada", "wrong password here") is None
    assert accounts.authenticate("nobody", "correct horse battery") is None
    assert json.loads(text)["users"]["ig.ian"]["roles"] == ["auditor", "policy_admin"]


@pytest.mark.parametrize(("user", "password", "roles"), [
    ("bad user", "long enough password", ["auditor"]),
    ("ok.user", "short", ["auditor"]),
    ("ok.user", "long enough password", []),
])
def test_an_account_needs_a_valid_user_id_a_long_password_and_a_role(tmp_path: Path, user: str, password: str,
                                                                      roles: list[str]) -> None:
    with pytest.raises(AccountError):
        add_user(tmp_path / "a.json", user, password, roles)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_when_idle_and_after_their_absolute_lifetime() -> None:
    clock = Clock()
    store = SessionStore(idle=60, absolute=300, clock=clock)
    session = store.sign_in(store.new(), "dpo.ada", ("auditor",))
    for _ in range(4):
        clock.now += 59
        assert store.get(session.sid) is session, "activity keeps it alive"
    clock.now += 59  # 295 s since sign-in, still active
    assert store.get(session.sid) is session
    clock.now += 10  # past the absolute lifetime
    assert store.get(session.sid) is None
    idle = store.new()
    clock.now += 61
    assert store.get(idle.sid) is None


def test_signing_in_replaces_the_session_id_and_csrf_token() -> None:
    store = SessionStore(idle=60, absolute=300)
    anonymous = store.new()
    signed = store.sign_in(anonymous, "dpo.ada", ("auditor", "mash_manager"))
    assert signed.sid != anonymous.sid
    assert signed.csrf != anonymous.csrf
    assert store.get(anonymous.sid) is None
    assert signed.role == "auditor"
    assert signed.signed_in


def test_anonymous_sessions_cannot_grow_without_bound() -> None:
    store = SessionStore(idle=60, absolute=300, max_sessions=10)
    for _ in range(50):
        store.new()
    assert len(store._sessions) <= 10


def test_a_flood_of_anonymous_sessions_signs_nobody_out() -> None:
    """At the cap, anonymous sessions make room for each other; a signed-in person keeps their session."""
    store = SessionStore(idle=60, absolute=300, max_sessions=10)
    signed = store.sign_in(store.new(), "dpo.ada", ("auditor",))
    for _ in range(500):
        store.new()
    assert store.get(signed.sid) is signed
    assert len(store._sessions) <= 10


def test_add_user_reads_the_password_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "accounts.json"
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    code = main(["console", "add-user", "--accounts", str(path), "--user", "dpo.ada", "--role", "auditor",
                 "--password-stdin"])
    assert code == 0
    assert "correct horse battery" not in capsys.readouterr().out
    assert Accounts.load(path).authenticate("dpo.ada", "correct horse battery") is not None
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["console", "add-user", "--accounts", str(path), "--user", "x", "--role", "auditor",
                 "--password-stdin"]) == 2


def test_plain_http_cookies_are_refused_off_loopback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["console", "serve", "--listen", "0.0.0.0:8600", "--insecure-http", "--bound-role", "auditor",
                 "--accounts", str(tmp_path / "none.json")])
    assert code == 2
    assert "loopback" in capsys.readouterr().err


def test_oidc_needs_its_client_id_secret_file_and_redirect_uri(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = ["console", "serve", "--bound-role", "auditor", "--accounts", str(tmp_path / "none.json"),
            "--oidc-issuer", "https://idp.example"]
    assert main(base) == 2
    assert "--oidc-client-id" in capsys.readouterr().err
    assert main([*base, "--oidc-client-id", "c", "--oidc-redirect-uri", "https://console.example/oidc/callback",
                 "--oidc-client-secret-file", str(tmp_path / "missing")]) == 2
    assert "cannot read the OIDC client secret" in capsys.readouterr().err


def _entry(agency: str, day: date) -> audit_pb.AuditEntry:
    e = audit_pb.AuditEntry(agency=agency)
    e.occurred_at.FromDatetime(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
    return e


def test_chart_series_count_disclosures_and_refusals_per_group_and_day() -> None:
    d1 = date(2026, 11, 1)
    data = series([_entry("health", d1), _entry("health", d1), _entry("police", d1 + timedelta(days=2))],
                  [_entry("health", d1 + timedelta(days=2))], lambda e: e.agency)
    assert data.days == [d1, d1 + timedelta(days=1), d1 + timedelta(days=2)]
    assert data.total("health") == (2, 1)
    assert data.total("police") == (1, 0)


def test_chart_text_is_escaped_and_the_svg_has_a_title() -> None:
    data = Series([date(2026, 11, 1)], ["<script>x</script>"], {("<script>x</script>", date(2026, 11, 1)): (1, 0)})
    svg = str(bar_chart(data, "Chart & title"))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "<title" in svg
    assert "style=" not in svg, "the Content-Security-Policy forbids inline style"


def test_durations_read_as_people_say_them() -> None:
    assert duration(timedelta(seconds=45)) == "45 s"
    assert duration(timedelta(minutes=200)) == "3 h 20 min"
    assert duration(timedelta(days=2, hours=3)) == "2 d 3 h"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_account_is_locked_after_five_failures_and_each_further_failure_doubles_the_lockout() -> None:
    clock = FakeClock()
    throttle = SignInThrottle(clock=clock)
    for _ in range(4):
        throttle.failed("dpo.ada", "10.0.0.1")
        assert throttle.wait("dpo.ada", "10.0.0.1") == 0, "four failures lock nothing"
    throttle.failed("dpo.ada", "10.0.0.1")
    assert throttle.wait("dpo.ada", "10.0.0.2") == 30, "the account is locked from any address"
    assert throttle.wait("ig.ian", "10.0.0.1") == 0, "another account from the same address is not"
    clock.now += 30
    assert throttle.wait("dpo.ada", "10.0.0.1") == 0
    throttle.failed("dpo.ada", "10.0.0.1")
    assert throttle.wait("dpo.ada", "10.0.0.1") == 60
    for _ in range(10):
        throttle.failed("dpo.ada", "10.0.0.1")
    assert throttle.wait("dpo.ada", "10.0.0.1") == 15 * 60, "the lockout is capped at 15 minutes"


def test_a_success_clears_the_accounts_failures_and_old_failures_fall_out_of_the_window() -> None:
    clock = FakeClock()
    throttle = SignInThrottle(clock=clock)
    for _ in range(4):
        throttle.failed("dpo.ada", "10.0.0.1")
    throttle.succeeded("dpo.ada")
    throttle.failed("dpo.ada", "10.0.0.1")
    assert throttle.wait("dpo.ada", "10.0.0.1") == 0
    for _ in range(3):
        throttle.failed("dpo.ada", "10.0.0.1")
    clock.now += 16 * 60  # the window is 15 minutes
    throttle.failed("dpo.ada", "10.0.0.1")
    assert throttle.wait("dpo.ada", "10.0.0.1") == 0


def test_one_address_guessing_many_accounts_is_locked_and_a_success_does_not_unlock_it() -> None:
    clock = FakeClock()
    throttle = SignInThrottle(clock=clock)
    for n in range(20):
        throttle.failed(f"user{n}", "10.0.0.9")
    throttle.succeeded("user0")
    assert throttle.wait("somebody.else", "10.0.0.9") == 30
    assert throttle.wait("somebody.else", "10.0.0.8") == 0


def test_the_lockout_log_line_names_no_account_or_address(caplog: pytest.LogCaptureFixture) -> None:
    throttle = SignInThrottle(clock=FakeClock())
    with caplog.at_level(logging.WARNING, logger="gateway.console.signin"):
        for _ in range(5):
            throttle.failed("dpo.ada", "192.0.2.77")
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("sign-in locked: account ")
    assert "dpo.ada" not in line
    assert "192.0.2.77" not in line


def test_the_throttle_remembers_a_bounded_number_of_keys() -> None:
    throttle = SignInThrottle(clock=FakeClock(), max_keys=3)
    for n in range(10):
        throttle.failed(f"user{n}", f"10.0.0.{n}")
    assert all(len(records) <= 3 for records in throttle._records.values())


def test_the_wait_is_said_in_seconds_then_whole_minutes() -> None:
    assert wait_message(12.2) == "Too many failed sign-ins. Try again in 13 seconds."
    assert wait_message(60) == "Too many failed sign-ins. Try again in 1 minute."
    assert wait_message(61) == "Too many failed sign-ins. Try again in 2 minutes."


def _referral(rating: str, due: datetime | None, done: datetime | None) -> referral_pb.Referral:
    r = referral_pb.Referral(rating=rating)
    if due is not None:
        r.decision_due.FromDatetime(due)
    if done is not None:
        r.decided_at.FromDatetime(done)
    return r


def test_decision_deadlines_are_counted_met_missed_and_running_per_rating() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    hour = timedelta(hours=1)
    referrals = [
        _referral("red", now - hour, now - 2 * hour),  # decided before its deadline
        _referral("red", now - 2 * hour, now - hour),  # decided after it
        _referral("red", now - hour, None),  # not decided, deadline passed
        _referral("green", now + hour, None),  # still running
        _referral("amber", None, None),  # no deadline yet: left out
        _referral("", now, now),  # unrated: left out
    ]
    assert deadline_counts(referrals, now, "decision") == [("red", (1, 2, 0)), ("green", (0, 0, 1))]
    assert deadline_counts(referrals, now, "research") == [], "research deadlines are read from their own fields"
