"""The console's Starlette application: sign-in and sign-out, the home page, role switching, and every area's
routes. Every page that takes an identifier takes it by POST, so none ever appears in a URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.console import views_audit, views_work
from gateway.console.accounts import Accounts
from gateway.console.client import GatewayClient, GatewayTarget
from gateway.console.sessions import SessionStore
from gateway.console.throttle import wait_message
from gateway.console.web import Console, ConsoleSettings, Page, Refused, SecurityHeaders, page

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
    roles = tuple(r for r in account.roles if r in current.console.settings.bound_roles)
    if not roles:
        return current.render("sign_in.html", status=403,
                              error="You hold no role this console may act in. Ask your administrator.")
    current.session = current.console.sessions.sign_in(current.session, account.user, roles)
    return current.redirect("/")


async def sign_out(current: Page) -> Response:
    await current.form()
    current.console.sessions.end(current.session)
    current.session = current.console.sessions.new()
    return current.redirect("/sign-in")


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
        *[get(p, h) for p, h in views_audit.GET.items()],
        *[post(p, h) for p, h in views_audit.POST.items()],
        *[get(p, h) for p, h in views_work.GET.items()],
        *[post(p, h) for p, h in views_work.POST.items()],
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(settings: ConsoleSettings, target: GatewayTarget) -> Starlette:
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
                      gateway=GatewayClient(target))
    holder["console"] = console
    return Starlette(routes=routes(console), middleware=[Middleware(SecurityHeaders)], lifespan=lifespan)
