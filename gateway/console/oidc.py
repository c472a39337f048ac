"""Signing in through the organisation's identity provider: OpenID Connect, authorisation code with PKCE.

The console is a confidential client. Sign-in starts with a CSRF-checked POST; the console keeps the
transaction (state, nonce, PKCE verifier) server-side under a random id in a short-lived cookie limited to
the callback path (SameSite=Lax, so it survives the provider's redirect back, which the Strict session
cookie would not). The callback exchanges the code, checks the ID token's signature against the provider's
keys and its `iss`, `aud`, `exp` and `nonce`, and reads the user id and roles from its claims. No token is
kept after sign-in.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gateway.service.validation import USER_PATTERN

TRANSACTION_SECONDS = 600.0
MAX_TRANSACTIONS = 10_000
SIGNING_ALGORITHMS = ["RS256", "PS256", "ES256"]  # asymmetric only: a shared-secret (HS) token is refused


class OidcError(Exception):
    """The sign-in could not be completed; the message is safe to show (it names no person)."""


@dataclass(frozen=True, slots=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str  # https://<console host>/oidc/callback
    user_claim: str = "preferred_username"
    roles_claim: str = "roles"
    scope: str = "openid profile"


@dataclass(frozen=True, slots=True)
class _Transaction:
    state: str
    nonce: str
    verifier: str
    started: float


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: str
    roles: tuple[str, ...]


class OidcSignIn:
    """The console's side of the authorisation-code flow with PKCE (S256)."""

    def __init__(self, settings: OidcSettings, *, transport: httpx2.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._transport = transport
        self._clock = clock
        self._metadata: dict[str, Any] | None = None
        self._pending: dict[str, _Transaction] = {}

    def _client(self, **extra: Any) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(client_id=self.settings.client_id, client_secret=self.settings.client_secret,
                                 scope=self.settings.scope, redirect_uri=self.settings.redirect_uri,
                                 code_challenge_method="S256", transport=self._transport, timeout=10, **extra)

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, read once; its issuer must be the configured one exactly."""
        if self._metadata is None:
            found = await self._read(self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if found.get("issuer") != self.settings.issuer:
                raise OidcError("The identity provider's configuration names another issuer.")
            self._metadata = found
        return self._metadata

    async def _read(self, url: str) -> dict[str, Any]:
        """A JSON document of the provider's (discovery, keys)."""
        try:
            async with httpx2.AsyncClient(transport=self._transport, timeout=10) as client:
                response = await client.get(url)
            response.raise_for_status()
            found = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise OidcError("The identity provider could not be reached. Try again later.") from exc
        if not isinstance(found, dict):
            raise OidcError("The identity provider sent something other than its configuration.")
        return found

    async def begin(self) -> tuple[str, str]:
        """(transaction id for the cookie, the provider's authorisation URL to send the browser to)."""
        self._sweep()
        meta = await self.metadata()
        transaction = _Transaction(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48),
                                   self._clock())
        async with self._client() as client:
            url, _ = client.create_authorization_url(meta["authorization_endpoint"], state=transaction.state,
                                                     nonce=transaction.nonce, code_verifier=transaction.verifier)
        key = secrets.token_urlsafe(32)
        self._pending[key] = transaction
        return key, url

    async def finish(self, key: str | None, state: str, code: str) -> SignedIn:
        """Check the callback against its transaction (used once), exchange the code, verify the ID token."""
        transaction = self._pending.pop(key or "", None)
        if transaction is None or self._clock() - transaction.started > TRANSACTION_SECONDS:
            raise OidcError("This sign-in has expired or was not started here. Sign in again.")
        if not state or not secrets.compare_digest(state, transaction.state) or not code:
            raise OidcError("The identity provider's answer does not match this sign-in. Sign in again.")
        meta = await self.metadata()
        async with self._client() as client:
            try:
                token = await client.fetch_token(meta["token_endpoint"], code=code,
                                                 code_verifier=transaction.verifier)
            except Exception as exc:  # authlib raises OAuthError; a network failure is httpx2's
                raise OidcError("The identity provider refused the sign-in. Sign in again.") from exc
        id_token = token.get("id_token")
        if not id_token:
            raise OidcError("The identity provider sent no ID token. Sign in again.")
        keys = await self._read(meta["jwks_uri"])
        try:
            verified = jwt.decode(id_token, KeySet.import_key_set(cast(Any, keys)), algorithms=SIGNING_ALGORITHMS)
            claims = verified.claims
            jwt.JWTClaimsRegistry(
                leeway=60, iss={"essential": True, "value": self.settings.issuer},
                aud={"essential": True, "value": self.settings.client_id}, exp={"essential": True},
                nonce={"essential": True, "value": transaction.nonce}).validate(claims)
        except (JoseError, ValueError, KeyError) as exc:
            raise OidcError("The identity provider's ID token did not verify. Sign in again.") from exc
        user = claims.get(self.settings.user_claim)
        if not isinstance(user, str) or not USER_PATTERN.fullmatch(user):
            raise OidcError(f"The ID token's {self.settings.user_claim} is not a user id the gateway accepts.")
        roles = claims.get(self.settings.roles_claim) or []
        if not isinstance(roles, list):
            roles = [roles]
        return SignedIn(user, tuple(str(r) for r in roles))

    def _sweep(self) -> None:
        now = self._clock()
        for key in [k for k, t in self._pending.items() if now - t.started > TRANSACTION_SECONDS]:
            del self._pending[key]
        while len(self._pending) >= MAX_TRANSACTIONS:
            del self._pending[next(iter(self._pending))]
