"""Settings files: relative paths, defaults that are safe in production, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    assert set(settings.agency_endpoints) == {"police", "health", "csc", "education", "housing", "probation"}
