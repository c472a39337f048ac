"""The Casbin model that defines what policy lines mean, and building a real Casbin enforcer from it."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import casbin
from casbin import persist

from gateway.domain import DisclosureLevel
from gateway.errors import Finding

MODEL_FILE = "model.conf"

# The sections of the one model the decision index implements. A policy directory whose model.conf
# says anything else is refused, because the index would then disagree with Casbin.
CANONICAL_MODEL: dict[tuple[str, str], str] = {
    ("r", "r"): "role, agency, cat, purpose, level",
    ("p", "p"): "role, agency, cat, purpose, level, eft",
    ("g", "g"): "_, _",
    ("g", "g2"): "_, _",
    ("g", "g3"): "_, _",
    ("g", "g4"): "_, _",
    ("e", "e"): "some(where (p_eft == allow)) && !some(where (p_eft == deny))",
    ("m", "m"): (
        '(p_role == "role:*" || g(r_role, p_role)) && r_agency == p_agency && g3(r_cat, p_cat) && '
        '(p_purpose == "purpose:*" || g2(r_purpose, p_purpose)) && '
        '((p_eft == "allow" && g4(p_level, r_level)) || (p_eft == "deny" && g4(r_level, p_level)))'
    ),
}

ROLE, AGENCY, CATEGORY, PURPOSE = "role:", "agency:", "cat:", "purpose:"
ANY_ROLE, ANY_PURPOSE = ROLE + "*", PURPOSE + "*"


def _normalise(text: str) -> str:
    return " ".join(text.split())


def check_model(directory: Path) -> list[Finding]:
    """Findings if `directory`'s model.conf is missing, unparsable or not the model the gateway implements."""
    path = directory / MODEL_FILE
    if not path.is_file():
        return [Finding(MODEL_FILE, 0, "file is missing")]
    try:
        model = casbin.Enforcer.new_model(text=path.read_text(encoding="utf-8"))
    except Exception as exc:
        return [Finding(MODEL_FILE, 0, f"Casbin cannot parse the model: {exc}")]
    found: dict[tuple[str, str], str] = {}
    for sec in ("r", "p", "g", "e", "m"):
        for key, assertion in model.model.get(sec, {}).items():
            found[(sec, key)] = _normalise(assertion.value)
    if found != {k: _normalise(v) for k, v in CANONICAL_MODEL.items()}:
        differing = sorted(
            f"{s}.{k}"
            for s, k in set(found) | set(CANONICAL_MODEL)
            if found.get((s, k)) != _normalise(CANONICAL_MODEL.get((s, k), ""))
        )
        return [
            Finding(
                MODEL_FILE,
                1,
                "the model differs from the one this gateway implements "
                f"(sections {', '.join(differing)}); the decision index would not match Casbin",
            )
        ]
    return []


def ladder() -> list[list[str]]:
    """The g4 lines: each level inherits the one below it, so g4(a, b) means a >= b."""
    levels = sorted(DisclosureLevel)
    return [[high.name, low.name] for low, high in itertools.pairwise(levels)]


class _RowsAdapter(persist.Adapter):  # type: ignore[misc]  # casbin is untyped
    """A read-only Casbin adapter over rows already parsed (and line-numbered) by the loader."""

    def __init__(self, rows: dict[str, Sequence[Sequence[str]]]) -> None:
        self._rows = rows

    def load_policy(self, model: Any) -> None:
        for ptype, rows in self._rows.items():
            sec = ptype[0]
            model.model[sec][ptype].policy.extend(list(r) for r in rows)


def build_enforcer(
    model_text: str,
    policy_rows: Iterable[Sequence[str]],
    role_links: Iterable[tuple[str, str]],
    purpose_links: Iterable[tuple[str, str]],
    category_links: Iterable[tuple[str, str]],
) -> casbin.Enforcer:
    """A real Casbin enforcer over prefixed rows ("role:x", "agency:y", ...) and child -> parent links."""
    model = casbin.Enforcer.new_model(text=model_text)
    rows: dict[str, Sequence[Sequence[str]]] = {
        "p": [list(r) for r in policy_rows],
        "g": [[ROLE + a, ROLE + b] for a, b in role_links],
        "g2": [[PURPOSE + a, PURPOSE + b] for a, b in purpose_links],
        "g3": [[CATEGORY + a, CATEGORY + b] for a, b in category_links],
        "g4": ladder(),
    }
    return casbin.Enforcer(model, _RowsAdapter(rows))


def enforce_level(
    enforcer: casbin.Enforcer,
    role: str,
    purpose: str,
    agency: str,
    category: str,
) -> DisclosureLevel:
    """The highest level Casbin allows: the definition the decision index must agree with."""
    granted = DisclosureLevel.NONE
    for level in sorted(DisclosureLevel):
        if level is DisclosureLevel.NONE:
            continue
        if enforcer.enforce(ROLE + role, AGENCY + agency, CATEGORY + category, PURPOSE + purpose, level.name):
            granted = level
    return granted
