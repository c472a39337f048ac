"""The console's Starlette application: sign-in and sign-out, the home page, role switching, and every area's
routes. Every page that takes an identifier takes it by POST, so none ever appears in a URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.console import views_audit, views_work
from gateway.console.accounts import Accounts
from gateway.console.client import GatewayClient, GatewayTarget
from gateway.console.oidc import TRANSACTION_SECONDS, OidcError, OidcSignIn
from gateway.console.sessions import SessionStore
from gateway.console.throttle import wait_message
from gateway.console.web import Console, ConsoleSettings, Page, Refused, SecurityHeaders, page

OIDC_COOKIE = "mash_console_oidc"

STATIC = Path(__file__).parent / "static"


async def sign_in_form(current: Page) -> Response:
    if current.session.signed_in:
        return current.redirect("/")
    return current.render("sign_in.html")


async def sign_in(current: Page) -> Response:
    form = await current.form()
    user, password = str(form.get("user", "")), str(form.get("password", ""))
    throttle = current.console.throttle
    address = current.request.client.host if current.request.client else ""
    wait = throttle.wait(user, address)
    if wait:  # no password is checked while locked, so guessing gains nothing
        return current.render("sign_in.html", status=429, error=wait_message(wait))
    account = current.console.accounts.authenticate(user, password)
    if account is None:
        throttle.failed(user, address)
        return current.render("sign_in.html", status=401, error="The user id or password is wrong.")
    throttle.succeeded(user)
    return _start_session(current, account.user, account.roles)


def _start_session(current: Page, user: str, held: tuple[str, ...], *, via_oidc: bool = False) -> Response:
    """A new session for a person, in the roles they hold that the console's certificate is bound to."""
    roles = tuple(r for r in held if r in current.console.settings.bound_roles)
    if not roles:
        current.session = current.console.sessions.new()  # an OIDC callback has no sign-in session to keep
        return current.render("sign_in.html", status=403,
                              error="You hold no role this console may act in. Ask your administrator.")
    current.session = current.console.sessions.sign_in(current.session, user, roles)
    current.session.via_oidc = via_oidc
    return current.redirect("/")


async def sign_out(current: Page) -> Response:
    await current.form()
    via_oidc = current.session.via_oidc
    current.console.sessions.end(current.session)
    current.session = current.console.sessions.new()
    oidc = current.console.oidc
    if via_oidc and oidc is not None:
        end = (await oidc.metadata()).get("end_session_endpoint")
        if end:
            back = oidc.settings.redirect_uri.rsplit("/oidc/", 1)[0] + "/sign-in"
            return current.redirect(str(httpx2.URL(end, params={"client_id": oidc.settings.client_id,
                                                               "post_logout_redirect_uri": back})))
    return current.redirect("/sign-in")


async def oidc_start(current: Page) -> Response:
    """Send the browser to the identity provider; the transaction waits under a callback-only cookie."""
    await current.form()
    oidc = current.console.oidc
    if oidc is None:
        raise Refused(404, "This console signs people in with local accounts only.")
    try:
        key, url = await oidc.begin()
    except OidcError as exc:
        return current.render("sign_in.html", status=502, error=str(exc))
    response = current.redirect(url)
    response.set_cookie(OIDC_COOKIE, key, max_age=int(TRANSACTION_SECONDS), httponly=True,
                        secure=current.console.settings.secure_cookies, samesite="lax", path="/oidc/callback")
    return response


async def oidc_callback(current: Page) -> Response:
    """The provider's redirect back: code and state are checked, the ID token verified, the person signed in."""
    oidc = current.console.oidc
    if oidc is None:
        raise Refused(404, "This console signs people in with local accounts only.")
    query = current.request.query_params
    try:
        if query.get("error"):
            raise OidcError("The identity provider did not sign you in. Sign in again.")
        person = await oidc.finish(current.request.cookies.get(OIDC_COOKIE), query.get("state", ""),
                                   query.get("code", ""))
    except OidcError as exc:
        response = current.render("sign_in.html", status=403, error=str(exc))
    else:
        response = _start_session(current, person.user, person.roles, via_oidc=True)
    response.delete_cookie(OIDC_COOKIE, path="/oidc/callback")
    return response


async def switch_role(current: Page) -> Response:
    form = await current.form()
    if not current.session.signed_in:
        raise Refused(401, "Sign in first.")
    role = str(form.get("role", ""))
    if role not in current.session.roles:
        raise Refused(403, "You do not hold that role.")
    current.session.role = role
    return current.redirect("/")


async def home(current: Page) -> Response:
    if not current.session.signed_in:
        return current.redirect("/sign-in")
    return current.render("home.html")


def routes(console: Console) -> list[BaseRoute]:
    def get(path: str, handler: views_audit.Handler) -> Route:
        return Route(path, page(console, handler), methods=["GET"])

    def post(path: str, handler: views_audit.Handler) -> Route:
        return Route(path, page(console, handler), methods=["POST"])

    return [
        get("/", home),
        get("/sign-in", sign_in_form),
        post("/sign-in", sign_in),
        post("/sign-out", sign_out),
        post("/role", switch_role),
        post("/oidc/start", oidc_start),
        get("/oidc/callback", oidc_callback),
        *[get(p, h) for p, h in views_audit.GET.items()],
        *[post(p, h) for p, h in views_audit.POST.items()],
        *[get(p, h) for p, h in views_work.GET.items()],
        *[post(p, h) for p, h in views_work.POST.items()],
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(settings: ConsoleSettings, target: GatewayTarget,
               oidc_transport: httpx2.AsyncBaseTransport | None = None) -> Starlette:
    """The console application; the gateway channel opens at start-up and closes at shutdown."""
    holder: dict[str, Console] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        console = holder["console"]
        console.gateway.open()
        yield
        await console.gateway.close()

    console = Console(settings=settings, accounts=Accounts.load(settings.accounts_file),
                      sessions=SessionStore(settings.idle_seconds, settings.absolute_seconds),
                      gateway=GatewayClient(target),
                      oidc=OidcSignIn(settings.oidc, transport=oidc_transport) if settings.oidc else None)
    holder["console"] = console
    return Starlette(routes=routes(console), middleware=[Middleware(SecurityHeaders, csp=settings.csp)],
                     lifespan=lifespan)
