"""Server-side sessions held in memory: a random id in the cookie, everything else here; each expires.

A session exists before sign-in too (it carries the sign-in form's CSRF token); signing in replaces it with
a new id, so an id seen before sign-in is worth nothing after it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Session:
    sid: str
    csrf: str
    created: float
    last_seen: float
    user: str = ""
    roles: tuple[str, ...] = ()
    role: str = ""
    flash: list[str] = field(default_factory=list)
    via_oidc: bool = False  # signed in through the identity provider (sign-out then ends its session too)

    @property
    def signed_in(self) -> bool:
        return bool(self.user and self.role)


class SessionStore:
    """Sessions end after `idle` seconds without a request, and `absolute` seconds after they began."""

    def __init__(self, idle: float, absolute: float, clock: Callable[[], float] = time.monotonic,
                 max_sessions: int = 10_000) -> None:
        self._idle = idle
        self._absolute = absolute
        self._clock = clock
        self._max = max_sessions
        self._sessions: dict[str, Session] = {}

    def new(self) -> Session:
        self._sweep()
        now = self._clock()
        session = Session(sid=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), created=now, last_seen=now)
        self._sessions[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id (its idle clock restarted), or None."""
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self._idle or now - session.created > self._absolute:
            del self._sessions[sid]
            return None
        session.last_seen = now
        return session

    def sign_in(self, old: Session, user: str, roles: tuple[str, ...]) -> Session:
        """A fresh session (new id and CSRF token) for `user`; the pre-sign-in one ends."""
        self.end(old)
        session = self.new()
        session.user, session.roles, session.role = user, roles, roles[0]
        return session

    def end(self, session: Session) -> None:
        self._sessions.pop(session.sid, None)

    def _sweep(self) -> None:
        now = self._clock()
        for sid in [sid for sid, s in self._sessions.items()
                    if now - s.last_seen > self._idle or now - s.created > self._absolute]:
            del self._sessions[sid]
        # Full: end the least recently used anonymous session, so a flood of anonymous requests can neither grow
        # memory nor sign anyone out; a signed-in one goes only when every session is signed in.
        while len(self._sessions) >= self._max:
            anonymous = [sid for sid, s in self._sessions.items() if not s.signed_in]
            del self._sessions[min(anonymous or self._sessions, key=lambda sid: self._sessions[sid].last_seen)]
