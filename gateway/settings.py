"""Gateway settings: one immutable object, read from a TOML file and flags, passed to `build_server`."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout


class SettingsError(GatewayError):
    """The configuration file is missing, unreadable or has a bad value."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a gateway process needs to know; no process-wide globals."""

    state_dir: Path
    policy_dir: Path
    pki_dir: Path
    listen: str = "127.0.0.1:0"
    audit_store: str = ""  # default: sqlite:///<state_dir>/audit.sqlite
    agency_endpoints: Mapping[str, str] = field(default_factory=dict)
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    default_timeout: float = 5.0  # seconds, when the caller sets no deadline
    max_timeout: float = 30.0  # seconds; longer caller deadlines are cut to this
    audit_margin: float = 0.1  # seconds kept back from the caller's deadline to audit and reply
    audit_append_timeout: float = 5.0  # a stalled audit store fails closed after this many seconds
    reflection: bool = False  # gRPC server reflection; on in development only
    checkpoint_interval: float = 60.0  # seconds between signed checkpoints, also when idle
    policy_watch_interval: float | None = 2.0  # seconds between policy directory checks; None = off
    require_all_agencies: bool = False  # HubService health NOT_SERVING while a record holder has no endpoint
    log_level: str = "info"

    @property
    def pki(self) -> PkiLayout:
        return PkiLayout(self.pki_dir)

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def audit_store_url(self) -> str:
        return self.audit_store or f"sqlite:///{self.state_dir / 'audit.sqlite'}"

    @classmethod
    def from_toml(cls, path: Path, **overrides: Any) -> Settings:
        """Read `[gateway]` and `[agencies]` tables; relative paths are relative to the file."""
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
        base = path.parent
        section = dict(doc.get("gateway", {}))
        known = {f.name for f in fields(cls)}
        unknown = set(section) - known
        if unknown:
            raise SettingsError(f"{path}: unknown setting(s) in [gateway]: {', '.join(sorted(unknown))}")
        for key in ("state_dir", "policy_dir", "pki_dir"):
            if key not in section:
                raise SettingsError(f"{path}: [gateway] {key} is required")
            section[key] = (base / section[key]).resolve()
        section["agency_endpoints"] = {str(k): str(v) for k, v in doc.get("agencies", {}).items()}
        try:
            settings = cls(**section)
        except TypeError as exc:
            raise SettingsError(f"{path}: {exc}") from exc
        return replace(settings, **overrides) if overrides else settings
