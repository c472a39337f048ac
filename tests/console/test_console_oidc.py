"""Sign-in through an OpenID Connect provider: authorisation code with PKCE against a minimal provider written
here (discovery, authorise, token, keys), the console driven through its own HTTP interface.

The provider checks what a real one checks (client secret, redirect URI, the S256 PKCE challenge against the
verifier) and signs real RS256 ID tokens; each test can make it misbehave in one way.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.console.accounts import add_user
from gateway.console.app import OIDC_COOKIE, create_app
from gateway.console.client import GatewayTarget
from gateway.console.oidc import OidcSettings
from gateway.console.web import COOKIE, ConsoleSettings

ISSUER = "https://idp.example"
CLIENT_ID = "mash-console"
SECRET = "client-secret-for-tests"
REDIRECT = "http://testserver/oidc/callback"


@dataclass
class Provider:
    """A minimal OpenID provider. `person` is who signs in; the flags make it misbehave."""

    person: dict[str, Any] = field(default_factory=lambda: {"preferred_username": "dpo.ada",
                                                            "roles": ["auditor", "social_worker"]})
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048))
    wrong_nonce: bool = False
    foreign_key: bool = False
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    verifiers_checked: int = 0

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            return JSONResponse({"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/authorize",
                                 "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks",
                                 "end_session_endpoint": f"{ISSUER}/logout"})

        async def authorize(request: Request) -> Response:
            q = request.query_params
            assert q["response_type"] == "code"
            assert (q["client_id"], q["redirect_uri"]) == (CLIENT_ID, REDIRECT)
            assert q["code_challenge_method"] == "S256"
            assert "openid" in q["scope"].split()
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"challenge": q["code_challenge"], "nonce": q["nonce"]}
            return RedirectResponse(f"{REDIRECT}?code={code}&state={q['state']}", status_code=302)

        async def token(request: Request) -> Response:
            form = await request.form()
            basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
            if request.headers.get("authorization") != f"Basic {basic}":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            grant = self.codes.pop(str(form["code"]), None)
            verifier = str(form.get("code_verifier", ""))
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if grant is None or challenge != grant["challenge"] or form.get("redirect_uri") != REDIRECT:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            self.verifiers_checked += 1
            now = int(time.time())
            claims = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "user-1", "iat": now, "exp": now + 300,
                      "nonce": "another" if self.wrong_nonce else grant["nonce"], **self.person}
            signer = RSAKey.generate_key(2048) if self.foreign_key else self.key
            id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, signer)
            return JSONResponse({"access_token": "opaque", "token_type": "Bearer", "expires_in": 300,
                                 "id_token": id_token})

        async def jwks(request: Request) -> Response:
            return JSONResponse({"keys": [{**self.key.as_dict(private=False), "kid": "k1", "use": "sig"}]})

        return Starlette(routes=[Route("/.well-known/openid-configuration", discovery), Route("/authorize", authorize),
                                 Route("/token", token, methods=["POST"]), Route("/jwks", jwks)])


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def console(tmp_path: Path, provider: Provider) -> TestClient:
    """The console (its gateway channel never opened: sign-in needs none) with OIDC to the provider above."""
    accounts = tmp_path / "accounts.json"
    add_user(accounts, "local.lee", "a long enough password", ["auditor"])
    pem = tmp_path / "unused.pem"
    pem.write_bytes(b"")
    settings = ConsoleSettings(accounts_file=accounts, bound_roles=frozenset({"auditor", "policy_admin"}),
                               secure_cookies=False, oidc=OidcSettings(ISSUER, CLIENT_ID, SECRET, REDIRECT))
    app = create_app(settings, GatewayTarget("127.0.0.1:1", pem, pem, pem),
                     oidc_transport=httpx2.ASGITransport(app=provider.app()))
    return TestClient(app, follow_redirects=False)


def csrf(client: TestClient) -> str:
    page = client.get("/sign-in").text
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def start(client: TestClient) -> str:
    """Press "Sign in with your organisation's account": the provider's authorisation URL."""
    response = client.post("/oidc/start", data={"csrf_token": csrf(client)})
    assert response.status_code == 303
    return response.headers["location"]


def authorise(provider: Provider, url: str) -> str:
    """The browser at the provider, who signs the person in and sends them back: the callback's path and query."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == ISSUER
    with TestClient(provider.app(), base_url=ISSUER, follow_redirects=False) as idp:
        back = idp.get(f"{parts.path}?{parts.query}").headers["location"]
    split = urlsplit(back)
    return f"{split.path}?{split.query}"


def test_a_person_signs_in_through_the_provider_with_pkce_in_the_roles_the_console_may_assert(
        console: TestClient, provider: Provider) -> None:
    url = start(console)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43, "an S256 challenge, never the verifier itself"
    oidc_cookie = console.cookies.get(OIDC_COOKIE)
    assert oidc_cookie
    response = console.get(authorise(provider, url))
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    assert provider.verifiers_checked == 1, "the code was exchanged with the matching PKCE verifier"
    home = console.get("/")
    assert 'id="signed-in-user">dpo.ada<' in home.text
    assert 'id="signed-in-role">auditor<' in home.text, "social_worker is not a role the console may assert"
    assert console.cookies.get(OIDC_COOKIE) is None, "the transaction cookie is gone after the callback"
    replay = console.get(authorise(provider, url))
    assert replay.status_code == 403, "a transaction is used once"


def test_the_transaction_cookie_is_lax_and_only_for_the_callback_and_the_csp_allows_the_provider(
        console: TestClient) -> None:
    response = console.post("/oidc/start", data={"csrf_token": csrf(console)})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{OIDC_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "Path=/oidc/callback" in cookie
    assert "SameSite=lax" in cookie
    assert "form-action 'self' https://idp.example;" in response.headers["content-security-policy"]


def test_starting_a_sign_in_needs_the_csrf_token(console: TestClient) -> None:
    assert console.post("/oidc/start", data={}).status_code == 403


@pytest.mark.parametrize(("flaw", "message"), [
    ("wrong_nonce", "did not verify"),
    ("foreign_key", "did not verify"),
])
def test_an_id_token_with_another_nonce_or_signed_by_another_key_is_refused(
        console: TestClient, provider: Provider, flaw: str, message: str) -> None:
    setattr(provider, flaw, True)
    response = console.get(authorise(provider, start(console)))
    assert response.status_code == 403
    assert message in response.text
    assert 'id="signed-in-user"' not in console.get("/").text


def test_a_callback_with_another_state_or_without_the_transaction_cookie_is_refused(
        console: TestClient, provider: Provider) -> None:
    back = authorise(provider, start(console))
    forged = back.replace("state=", "state=x")
    assert "does not match" in console.get(forged).text
    console.cookies.clear()
    assert "expired or was not started here" in console.get(back).text


def test_a_person_with_no_role_the_console_may_assert_is_refused(console: TestClient, provider: Provider) -> None:
    provider.person = {"preferred_username": "sw.sam", "roles": ["social_worker"]}
    response = console.get(authorise(provider, start(console)))
    assert response.status_code == 403
    assert "no role this console may act in" in response.text
    assert COOKIE not in {c.name for c in console.cookies.jar if c.value and 'signed-in-user' in c.value}
    assert 'id="signed-in-user"' not in console.get("/").text


def test_a_user_id_the_gateway_would_not_accept_is_refused(console: TestClient, provider: Provider) -> None:
    provider.person = {"preferred_username": "Ada Lovelace <ada@example>", "roles": ["auditor"]}
    response = console.get(authorise(provider, start(console)))
    assert response.status_code == 403
    assert "not a user id the gateway accepts" in response.text


def test_signing_out_of_a_provider_session_ends_it_at_the_provider_too(console: TestClient,
                                                                       provider: Provider) -> None:
    console.get(authorise(provider, start(console)))
    token = console.get("/").text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = console.post("/sign-out", data={"csrf_token": token})
    assert response.status_code == 303
    ended = urlsplit(response.headers["location"])
    assert f"{ended.scheme}://{ended.netloc}{ended.path}" == f"{ISSUER}/logout"
    assert parse_qs(ended.query) == {"client_id": [CLIENT_ID], "post_logout_redirect_uri": ["http://testserver/sign-in"]}
    assert 'id="signed-in-user"' not in console.get("/").text


def test_local_accounts_still_sign_in_and_sign_out_locally(console: TestClient) -> None:
    console.post("/sign-in", data={"csrf_token": csrf(console), "user": "local.lee",
                                   "password": "a long enough password"})
    token = console.get("/").text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert console.post("/sign-out", data={"csrf_token": token}).headers["location"] == "/sign-in"
