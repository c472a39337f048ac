"""Gateway settings: one immutable object, read from a TOML file and flags, passed to `build_server`."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from dataclasses import Field as Field_
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model
from typing_extensions import TypedDict  # pydantic needs this one on Python 3.11

from gateway.audit.note import NoteError
from gateway.errors import GatewayError
from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout
from gateway.schema import KeyPath, problems, toml_key_lines
from gateway.witness.client import WitnessConfig, WitnessError


class SettingsError(GatewayError):
    """The configuration file is missing, unreadable or has a bad value."""


Seconds = Annotated[float, Field(gt=0)]
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error", "critical"],
    BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v),  # logging itself ignores case
]
Rate = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
_PATHS = ("state_dir", "policy_dir", "pki_dir", "policy_releases", "policy_signers", "crl_file")


class WitnessEndpoint(TypedDict):
    """A witness the gateway submits each checkpoint to: its URL prefix and its cosigner verifier key."""

    url: str
    vkey: str


def _check_witness(value: WitnessEndpoint) -> WitnessEndpoint:
    try:
        WitnessConfig(value["url"], value["vkey"])
    except (WitnessError, NoteError) as exc:
        raise ValueError(str(exc)) from exc
    return value


def _check_tracing_endpoint(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL of an OTLP/HTTP traces endpoint "
                         "(for example http://127.0.0.1:4318/v1/traces), or empty for no tracing")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a gateway process needs to know; no process-wide globals."""

    state_dir: Path
    policy_dir: Path
    pki_dir: Path
    listen: str = "127.0.0.1:0"
    audit_store: str = ""  # default: sqlite:///<state_dir>/audit.sqlite
    referral_store: str = ""  # default: sqlite:///<state_dir>/referrals.sqlite
    review_store: str = ""  # default: sqlite:///<state_dir>/reviews.sqlite
    breach_sweep_interval: float | None = 60.0  # seconds between referral deadline-breach sweeps; None = off
    agency_endpoints: Mapping[str, str] = field(default_factory=dict)
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    default_timeout: Seconds = 5.0  # seconds, when the caller sets no deadline
    max_timeout: Seconds = 30.0  # seconds; longer caller deadlines are cut to this
    audit_margin: Annotated[float, Field(ge=0)] = 0.1  # seconds kept back from the caller's deadline to audit and reply
    audit_append_timeout: Seconds = 5.0  # a stalled audit store fails closed after this many seconds
    reflection: bool = False  # gRPC server reflection; on in development only
    checkpoint_interval: Seconds = 60.0  # seconds between signed checkpoints, also when idle
    policy_watch_interval: Annotated[float, Field(ge=0)] | None = 2.0  # seconds between policy checks; 0 or None = off
    # "production": activate only signed, approved releases from `policy_releases` (the watcher is off);
    # "development": activate `policy_dir` as it is, watched for changes.
    policy_mode: Literal["development", "production"] = "development"
    policy_releases: Path | None = None  # the release store (`policy propose|approve|release`)
    policy_signers: Path | None = None  # JSON file of the policy administrators' and IG officers' public keys
    require_all_agencies: bool = False  # HubService health NOT_SERVING while a record holder has no endpoint
    log_level: LogLevel = "info"
    # "auto": uvloop where it is installed (a dependency on Linux and macOS), else asyncio's own loop
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # Witnesses asked to cosign every checkpoint: [{ url = "http://…", vkey = "name+id+key" }, …]
    witnesses: Sequence[Annotated[WitnessEndpoint, AfterValidator(_check_witness)]] = ()
    metrics_listen: str = ""  # host:port for the Prometheus /metrics endpoint; empty = no metrics
    # OTLP/HTTP traces endpoint (http://collector:4318/v1/traces): a span per RPC and per agency call; empty = off
    tracing_endpoint: Annotated[str, AfterValidator(_check_tracing_endpoint)] = ""
    crl_file: Path | None = None  # revocation list (PEM or DER) of the CA, reread when it changes
    identity_rate: Rate = 0.0  # calls per second per client certificate; 0 = no limit
    identity_burst: Count = 0  # calls a certificate may make at once above its rate (at least 1)
    identity_concurrency: Count = 0  # calls in flight per client certificate; 0 = no limit
    user_rate: Rate = 0.0  # calls per second per practitioner (certificate and user id); 0 = no limit
    user_burst: Count = 0
    user_concurrency: Count = 0
    limit_audit_window: Seconds = 60.0  # at most one audit entry per caller and limit in this many seconds
    request_id_window: Seconds = 600.0  # a request id names one request, and a retry gets its answer, this long
    agency_max_answer_bytes: Annotated[int, Field(gt=0)] = 4 * 1024 * 1024  # larger node answers are refused
    # The locator (docs/locator.md): on when keys/locator.json exists. Evaluations are per node: a sustained
    # rate, a burst, and a cap per day.
    locator: bool = True  # false: ask every node, as before the locator (LocatorService is not served)
    locator_store: str = ""  # default: sqlite:///<state_dir>/locator.sqlite
    locator_evaluation_rate: Rate = 5_000.0
    locator_evaluation_burst: Count = 250_000
    locator_evaluation_cap: Count = 1_000_000
    locator_hold_skipped: bool = True  # hold a skipped agency's answer as long as a recent lookup took

    @property
    def pki(self) -> PkiLayout:
        return PkiLayout(self.pki_dir)

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def audit_store_url(self) -> str:
        return self.audit_store or f"sqlite:///{self.state_dir / 'audit.sqlite'}"

    @property
    def referral_store_url(self) -> str:
        return self.referral_store or f"sqlite:///{self.state_dir / 'referrals.sqlite'}"

    @property
    def review_store_url(self) -> str:
        return self.review_store or f"sqlite:///{self.state_dir / 'reviews.sqlite'}"

    @property
    def locator_store_url(self) -> str:
        return self.locator_store or f"sqlite:///{self.state_dir / 'locator.sqlite'}"

    @classmethod
    def from_toml(cls, path: Path, **overrides: Any) -> Settings:
        """Read `[gateway]` and `[agencies]` tables; relative paths are relative to the file.

        SettingsError lists every bad value at once, each as file:line.
        """
        try:
            text = path.read_text(encoding="utf-8")
            doc = tomllib.loads(text)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
        gateway, agencies = doc.get("gateway", {}), doc.get("agencies", {})
        lines = toml_key_lines(text)
        bad = [
            f"{path}:{lines.get((t, ''), 0)}: [{t}] must be a table"
            for t, value in (("gateway", gateway), ("agencies", agencies))
            if not isinstance(value, dict)
        ]
        bad += [
            f"{path}:{lines.get((t, ''), lines.get(('', t), 0))}: unknown table [{t}]"
            for t in doc
            if t not in ("gateway", "agencies")
        ]
        if isinstance(gateway, dict) and "agency_endpoints" in gateway:
            line = lines.get(("gateway", "agency_endpoints"), 0)
            bad.append(f"{path}:{line}: [gateway] agency_endpoints: agency addresses go in the [agencies] table")
        if bad:
            raise SettingsError("; ".join(bad))
        section = {**gateway, "agency_endpoints": agencies}
        for key in _PATHS:
            if isinstance(section.get(key), str):
                section[key] = (path.parent / section[key]).resolve()

        def line_of(loc: KeyPath) -> int:
            table, key = ("agencies", loc[1:2]) if loc[:1] == ("agency_endpoints",) else ("gateway", loc[:1])
            return lines.get((table, str(key[0])) if key else (table, ""), lines.get((table, ""), 0))

        try:
            settings = cls(**dict(_schema().model_validate(section)))
        except ValidationError as exc:
            found = sorted(problems(exc, line_of), key=lambda p: p.line)
            raise SettingsError("; ".join(f"{path}:{p.line}: {_table_key(p.key)} {p.message}" for p in found)) from exc
        return replace(settings, **overrides) if overrides else settings


def _table_key(key: str) -> str:
    if key.startswith("agency_endpoints"):
        return f"[agencies] {key.partition('.')[2]}".rstrip()
    return f"[gateway] {key}"


@cache
def _schema() -> type[BaseModel]:
    """The `[gateway]` table's schema, derived from the Settings fields so that a new field is checked too.

    Strict: TOML gives real types, so a quoted number or "yes" for true is a mistake worth reporting.
    """
    hints = get_type_hints(Settings, include_extras=True)
    fields_: dict[str, Any] = {
        f.name: (hints[f.name], ... if f.default is MISSING and f.default_factory is MISSING else _default(f))
        for f in fields(Settings)
    }
    return create_model("gateway", __config__=ConfigDict(strict=True, extra="forbid"), **fields_)


def _default(f: Field_[Any]) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default
