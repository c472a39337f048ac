"""Settings files: relative paths, defaults that are safe in production, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.partnership import load_plan
from gateway.settings import Settings, SettingsError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_paths_are_relative_to_the_settings_file_and_reflection_is_off_by_default(tmp_path: Path) -> None:
    """A minimal file gives absolute paths, the SQLite store in the state dir, and no reflection."""
    settings = Settings.from_toml(_write(tmp_path, '[gateway]\nstate_dir = "s"\npolicy_dir = "p"\npki_dir = "k"\n'
                                                   '[agencies]\npolice = "10.0.0.1:7001"\n'))
    assert settings.state_dir == (tmp_path / "s").resolve()
    assert settings.audit_store_url == f"sqlite:///{(tmp_path / 's').resolve() / 'audit.sqlite'}"
    assert settings.reflection is False
    assert dict(settings.agency_endpoints) == {"police": "10.0.0.1:7001"}


def test_an_unknown_setting_is_named(tmp_path: Path) -> None:
    """A typo in a setting name is an error naming it, not a silently ignored line."""
    path = _write(tmp_path, '[gateway]\nstate_dir = "s"\npolicy_dir = "p"\npki_dir = "k"\nrefelction = true\n')
    with pytest.raises(SettingsError, match="refelction"):
        Settings.from_toml(path)


def test_a_missing_required_setting_is_named(tmp_path: Path) -> None:
    """Leaving out the policy directory says which setting is missing."""
    with pytest.raises(SettingsError, match="policy_dir"):
        Settings.from_toml(_write(tmp_path, '[gateway]\nstate_dir = "s"\npki_dir = "k"\n'))


def test_a_malformed_file_is_a_settings_error(tmp_path: Path) -> None:
    """Broken TOML is reported as a settings error with the file name."""
    with pytest.raises(SettingsError, match=r"gateway\.toml"):
        Settings.from_toml(_write(tmp_path, "[gateway\n"))


def test_the_example_settings_file_in_the_docs_loads() -> None:
    """docs/gateway.example.toml stays a valid settings file as settings change."""
    example = Path(__file__).resolve().parents[2] / "docs" / "gateway.example.toml"
    settings = Settings.from_toml(example)
    assert settings.max_timeout == 30.0
    shipped = load_plan(Path(__file__).resolve().parents[2] / "policies")
    assert set(settings.agency_endpoints) == set(shipped.record_holders)  # one per record-holding agency


_REQUIRED = '[gateway]\nstate_dir = "s"\npolicy_dir = "p"\npki_dir = "k"\n'


def test_every_badly_typed_value_is_reported_at_its_line(tmp_path: Path) -> None:
    """A number for a path, a quoted timeout and "yes" for a flag are all named at once, each as file:line."""
    path = _write(
        tmp_path,
        '[gateway]\nstate_dir = "s"\npolicy_dir = 5\npki_dir = "k"\nmax_timeout = "30"\nreflection = "yes"\n',
    )
    with pytest.raises(SettingsError) as caught:
        Settings.from_toml(path)
    message = str(caught.value)
    assert f"{path}:3: [gateway] policy_dir must be text" in message
    assert f"{path}:5: [gateway] max_timeout must be a number" in message
    assert f"{path}:6: [gateway] reflection must be true or false" in message


def test_timeouts_must_be_positive_and_the_log_level_known(tmp_path: Path) -> None:
    """A zero deadline or an unknown log level would break the server later; they are refused up front."""
    path = _write(tmp_path, _REQUIRED + 'default_timeout = 0\nlog_level = "loud"\n')
    with pytest.raises(SettingsError) as caught:
        Settings.from_toml(path)
    assert f"{path}:5: [gateway] default_timeout must be greater than 0" in str(caught.value)
    assert f"{path}:6: [gateway] log_level must be one of" in str(caught.value)


def test_an_unknown_event_loop_is_refused_up_front(tmp_path: Path) -> None:
    path = _write(tmp_path, _REQUIRED + 'event_loop = "trio"\n')
    with pytest.raises(SettingsError) as caught:
        Settings.from_toml(path)
    assert f"{path}:5: [gateway] event_loop must be one of" in str(caught.value)


def test_an_agency_address_that_is_not_text_is_named_at_its_line(tmp_path: Path) -> None:
    """An agency endpoint written as a bare number points at its line in [agencies]."""
    path = _write(tmp_path, _REQUIRED + '[agencies]\npolice = "127.0.0.1:7001"\nhealth = 7002\n')
    with pytest.raises(SettingsError, match=rf"{path}:7: \[agencies\] health must be text"):
        Settings.from_toml(path)


def test_a_misspelt_table_is_an_error_not_silently_ignored(tmp_path: Path) -> None:
    """`[agencis]` would leave the gateway with no agency addresses, so the unknown table is named."""
    path = _write(tmp_path, _REQUIRED + '[agencis]\npolice = "127.0.0.1:7001"\n')
    with pytest.raises(SettingsError, match=rf"{path}:5: unknown table \[agencis\]"):
        Settings.from_toml(path)


def test_whole_numbers_are_accepted_for_seconds_and_zero_turns_the_policy_watcher_off(tmp_path: Path) -> None:
    """`default_timeout = 2` means two seconds; `policy_watch_interval = 0` stays the way to turn watching off."""
    settings = Settings.from_toml(_write(tmp_path, _REQUIRED + "default_timeout = 2\npolicy_watch_interval = 0\n"))
    assert settings.default_timeout == 2.0
    assert settings.policy_watch_interval == 0


def test_hardening_settings_resolve_the_crl_path_and_refuse_negative_limits(tmp_path: Path) -> None:
    """The CRL path is relative to the file, limits default to off, and a negative limit is named with its line."""
    base = '[gateway]\nstate_dir = "s"\npolicy_dir = "p"\npki_dir = "k"\n'
    settings = Settings.from_toml(_write(tmp_path, base + 'crl_file = "k/crl.pem"\n'))
    assert settings.crl_file == (tmp_path / "k" / "crl.pem").resolve()
    assert (settings.identity_rate, settings.user_concurrency) == (0.0, 0)
    with pytest.raises(SettingsError, match=r"gateway\.toml:6: \[gateway\] user_rate"):
        Settings.from_toml(_write(tmp_path, base + "user_concurrency = 3\nuser_rate = -1.0\n"))
