"""Sign-in rate limiting: failed sign-ins per account and per client address, with a lockout that doubles.

After `allowed` failures within `window` seconds a key is locked for `base` seconds, doubling with every
further failure up to `cap`. While it is locked no password is even checked. A success clears the account's
failures (not the address's: one good account must not reset guessing at others from the same place).
The console's log says that a lockout began, for which kind of key and how long, with a fingerprint that
is keyed by a secret that lives only as long as the process: it links lines of one run, never a person.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("gateway.console.signin")


@dataclass(frozen=True, slots=True)
class Limits:
    allowed: int  # failures within the window before the first lockout
    window: float = 15 * 60
    base: float = 30.0
    cap: float = 15 * 60


ACCOUNT_LIMITS = Limits(allowed=5)
ADDRESS_LIMITS = Limits(allowed=20)


@dataclass(slots=True)
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class SignInThrottle:
    """Counts failed sign-ins per account and per client address, in memory, at most `max_keys` of each."""

    def __init__(self, account: Limits = ACCOUNT_LIMITS, address: Limits = ADDRESS_LIMITS,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self._limits = {"account": account, "address": address}
        self._records: dict[str, OrderedDict[str, _Record]] = {"account": OrderedDict(), "address": OrderedDict()}
        self._clock = clock
        self._max = max_keys
        self._secret = secrets.token_bytes(32)

    def wait(self, user: str, address: str) -> float:
        """Seconds until a sign-in for this account from this address may be tried; 0 when it may now."""
        now = self._clock()
        return max(self._remaining("account", user, now), self._remaining("address", address, now))

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        for kind, key in (("account", user), ("address", address)):
            self._fail(kind, key, now)

    def succeeded(self, user: str) -> None:
        self._records["account"].pop(user, None)

    def _remaining(self, kind: str, key: str, now: float) -> float:
        record = self._records[kind].get(key)
        return max(0.0, record.locked_until - now) if record is not None else 0.0

    def _fail(self, kind: str, key: str, now: float) -> None:
        limits, records = self._limits[kind], self._records[kind]
        record = records.pop(key, None) or _Record()
        records[key] = record  # most recently failed last
        while len(records) > self._max:
            records.popitem(last=False)
        record.failures = [t for t in record.failures if now - t < limits.window] + [now]
        over = len(record.failures) - limits.allowed
        if over >= 0:
            lock = min(limits.cap, limits.base * 2 ** over)
            record.locked_until = now + lock
            log.warning("sign-in locked: %s %s after %d failures in %d min, for %d s", kind, self._fingerprint(key),
                        len(record.failures), limits.window // 60, lock)

    def _fingerprint(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()[:8]


def wait_message(seconds: float) -> str:
    """What the person is told: how long to wait, rounded up to a minute (or seconds under one)."""
    if seconds < 60:
        return f"Too many failed sign-ins. Try again in {max(1, int(seconds + 0.999))} seconds."
    minutes = int(seconds // 60) + (1 if seconds % 60 else 0)
    return f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
