"""What every page shares: the session cookie, CSRF checks, who may see which area, rendering, and the
security headers and access log of every response."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.console.accounts import Accounts
from gateway.console.client import GatewayClient, metadata
from gateway.console.oidc import OidcSettings, OidcSignIn
from gateway.console.sessions import Session, SessionStore
from gateway.console.throttle import SignInThrottle

COOKIE = "mash_console"
TEMPLATES = Path(__file__).parent / "templates"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}

# Which area of the console each role opens. Reviewer roles come from the settings (the vocabulary marks them).
MASH_ROLES = ("mash_manager", "mash_social_worker")
AREA_TITLES = {"audit": "Audit log", "policy": "Policy", "referrals": "Referrals", "reviews": "Reviews"}

access_log = logging.getLogger("gateway.console.access")


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    accounts_file: Path
    bound_roles: frozenset[str]
    reviewer_roles: frozenset[str] = frozenset({"police_mash_supervisor", "health_designated_professional",
                                                "health_caldicott_guardian"})
    secure_cookies: bool = True
    idle_seconds: float = 30 * 60
    absolute_seconds: float = 8 * 3600
    page_size: int = 25
    scan_limit: int = 20_000
    oidc: OidcSettings | None = None  # sign-in through the organisation's identity provider, beside local accounts

    @property
    def csp(self) -> str:
        """The Content-Security-Policy; with OIDC the sign-in and sign-out forms may redirect to the provider."""
        if self.oidc is None:
            return CSP
        origin = "/".join(self.oidc.issuer.split("/")[:3])
        return CSP.replace("form-action 'self'", f"form-action 'self' {origin}")


@dataclass(slots=True)
class Console:
    """The running console's state: settings, accounts, sessions, the gateway client and the templates."""

    settings: ConsoleSettings
    accounts: Accounts
    sessions: SessionStore
    gateway: GatewayClient
    throttle: SignInThrottle = field(default_factory=SignInThrottle)
    oidc: OidcSignIn | None = None
    env: Environment = field(init=False)

    def __post_init__(self) -> None:
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                               trim_blocks=True, lstrip_blocks=True)

    def areas(self, role: str) -> list[str]:
        """The areas a role opens, in menu order."""
        found = []
        if role == "auditor":
            found.append("audit")
        if role == "policy_admin":
            found.append("policy")
        if role in MASH_ROLES or role.startswith("mash_researcher_"):
            found.append("referrals")
        if role in self.settings.reviewer_roles:
            found.append("reviews")
        return found


class Refused(Exception):
    """A request the console refuses itself (status and a message for the person)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Page:
    """One request's view of the console: its session, and helpers to check, call and render."""

    def __init__(self, console: Console, request: Request) -> None:
        self.console = console
        self.request = request
        existing = console.sessions.get(request.cookies.get(COOKIE))
        self.new_cookie = existing is None
        self.session: Session = existing or console.sessions.new()

    @property
    def meta(self) -> tuple[tuple[str, str], ...]:
        return metadata(self.session.user, self.session.role)

    def require(self, area: str) -> None:
        if not self.session.signed_in:
            raise Refused(401, "Sign in first.")
        if area not in self.console.areas(self.session.role):
            raise Refused(403, f"Your role {self.session.role} does not open the {AREA_TITLES[area]} pages.")

    async def form(self) -> FormData:
        """The posted form, once its CSRF token has been checked (403 otherwise)."""
        form = await self.request.form()
        token = form.get("csrf_token")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.session.csrf.encode()):
            raise Refused(403, "This form has expired or did not come from the console. Reload the page and try again.")
        return form

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        session = self.session
        body = self.console.env.get_template(template).render(
            session=session, csrf=session.csrf, areas=self.console.areas(session.role) if session.signed_in else [],
            area_titles=AREA_TITLES, path=self.request.url.path, oidc=self.console.oidc is not None, **context)
        return self.finish(HTMLResponse(body, status_code=status))

    def redirect(self, to: str) -> Response:
        return self.finish(RedirectResponse(to, status_code=303))

    def finish(self, response: Response) -> Response:
        if self.new_cookie or self.request.cookies.get(COOKIE) != self.session.sid:
            response.set_cookie(COOKIE, self.session.sid, httponly=True, secure=self.console.settings.secure_cookies,
                                samesite="strict", path="/")
        response.headers["cache-control"] = "no-store"
        return response


Handler = Callable[[Page], Awaitable[Response]]


def page(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint around `handler`: refusals and gateway errors become pages, never tracebacks."""

    async def endpoint(request: Request) -> Response:
        current = Page(console, request)
        try:
            return await handler(current)
        except Refused as exc:
            if exc.status == 401:
                return current.redirect("/sign-in")
            return current.render("error.html", status=exc.status, message=exc.message)
        except grpc.aio.AioRpcError as exc:
            return current.render("error.html", status=_http_status(exc.code()),
                                  message=f"The gateway refused: {exc.code().name}. {exc.details() or ''}".strip())

    return endpoint


def _http_status(code: grpc.StatusCode) -> int:
    return {grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.INVALID_ARGUMENT: 400,
            grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.FAILED_PRECONDITION: 409,
            grpc.StatusCode.UNAUTHENTICATED: 403}.get(code, 502)


class SecurityHeaders:
    """Adds the security headers to every response and writes one access-log line per request.

    The line holds the method, the path (never the query string) and the status, so even a mistaken
    link could not put an identifier in the log.
    """

    def __init__(self, app: ASGIApp, csp: str = CSP) -> None:
        self.app = app
        self.headers = {"content-security-policy": csp, **SECURITY_HEADERS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in self.headers.items() if k.encode() not in present]
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            access_log.info("%s %s %d %.0fms", scope["method"], scope["path"], status,
                            (time.perf_counter() - started) * 1000)
