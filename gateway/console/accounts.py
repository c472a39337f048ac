"""The console's local accounts: salted scrypt hashes and the roles each person holds, in one JSON file.

For development and the demo; production signs people in through the organisation's identity provider
(docs/console.md). The file never holds a password, only `scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from gateway.service.validation import USER_PATTERN

# RFC 7914 parameters: 2^14 * 8 * 128 bytes = 16 MiB of memory per hash.
_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024
_DKLEN = 32
MIN_PASSWORD = 10


class AccountError(ValueError):
    """An account cannot be created or the accounts file cannot be read."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A self-describing salted scrypt hash of `password`."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM, dklen=_DKLEN)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` hashes to `stored`; compared in constant time."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                                maxmem=_MAXMEM, dklen=len(expected) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), expected)


# Checked against when a name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = hash_password("not a password", salt=b"\x00" * 16)


@dataclass(frozen=True, slots=True)
class Account:
    user: str
    password_hash: str
    roles: tuple[str, ...]


class Accounts:
    """The accounts file, read once at start."""

    def __init__(self, accounts: dict[str, Account]) -> None:
        self._accounts = accounts

    @classmethod
    def load(cls, path: Path) -> Accounts:
        try:
            raw = json.loads(path.read_text())
            return cls({name: Account(name, str(entry["password_hash"]), tuple(str(r) for r in entry["roles"]))
                        for name, entry in raw["users"].items()})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AccountError(f"cannot read the accounts file {path}: {type(exc).__name__}") from exc

    def __len__(self) -> int:
        return len(self._accounts)

    def all(self) -> list[Account]:
        return [self._accounts[name] for name in sorted(self._accounts)]

    def authenticate(self, user: str, password: str) -> Account | None:
        """The account when the password is right; None otherwise (in about the same time either way)."""
        account = self._accounts.get(user)
        if account is None:
            verify_password(password, _DUMMY_HASH)
            return None
        return account if verify_password(password, account.password_hash) else None


def add_user(path: Path, user: str, password: str, roles: list[str]) -> None:
    """Create or replace one account in the accounts file (created 0600 if missing)."""
    if not USER_PATTERN.fullmatch(user):
        raise AccountError("a user id is letters, digits and @._- (at most 128 characters)")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password has at least {MIN_PASSWORD} characters")
    if not roles:
        raise AccountError("give the person at least one role")
    users: dict[str, object] = {}
    if path.exists():
        try:
            users = dict(json.loads(path.read_text())["users"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AccountError(f"cannot read the accounts file {path}: {type(exc).__name__}") from exc
    users[user] = {"password_hash": hash_password(password), "roles": sorted(set(roles))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"users": users}, out, indent=2, sort_keys=True)
        out.write("\n")
    tmp.replace(path)
