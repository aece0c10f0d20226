"""Tokens for people and systems: JWTs carrying institution and role claims. The embedded
default has its own issuer (punte.identity, EdDSA); the verifier only needs an OpenID
Connect discovery document and its JWKS, so a real identity provider can take its place by
configuration (PUNTE_OIDC_ISSUER, and PUNTE_OIDC_ALGORITHMS for what it signs with)."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contracts.refusals import reason
from runtime.limits import admit
from runtime.log import get_logger
from runtime.signing import SigningKey, b64url

log = get_logger("runtime.tokens")
ALGORITHM = "EdDSA"  # what the embedded issuer signs with
# An unknown key id sends us to the issuer at most this often.
REFRESH_SECONDS = 30.0
# While no key is known at all (the issuer was away at our first request), this often.
RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Principal:
    subject: str
    institution: str | None
    roles: frozenset[str]
    name: str | None = None


class TokenIssuer:
    def __init__(self, issuer: str, key: SigningKey, audience: str = "punte") -> None:
        self.issuer = issuer.rstrip("/")
        self._key = key
        self.audience = audience

    def issue(self, subject: str, institution: str | None, roles: list[str],
              name: str | None = None, ttl_seconds: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": subject, "aud": self.audience, "iat": now,
            "exp": now + ttl_seconds, "jti": str(uuid.uuid4()), "roles": roles,
            "institution": institution, "name": name,
        }
        private: Ed25519PrivateKey = self._key.private
        return jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": self._key.key_id})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": b64url(self._key.public_raw()),
            "kid": self._key.key_id, "alg": ALGORITHM, "use": "sig",
        }]}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks.json",
            "token_endpoint": f"{self.issuer}/token",
            "grant_types_supported": ["password", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "response_types_supported": ["token"], "subject_types_supported": ["public"],
        }


# What a real identity provider signs with (Keycloak: RS256 by default). Never `none`, and
# never HMAC: its key would be a secret shared with every service, and HS* keyed with a
# published public key is the classic forgery.
DEFAULT_ALGORITHMS = ("EdDSA", "RS256", "ES256", "PS256")
REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]
# Clocks of the issuer's host and ours may differ a little (exp, iat, nbf).
LEEWAY_SECONDS = 30
ASYMMETRIC = frozenset({"EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                        "ES256", "ES384", "ES512"})


def pinned_algorithms(names: Iterable[str]) -> tuple[str, ...]:
    """The algorithms tokens may be signed with: ``names`` when each is an asymmetric JWS
    algorithm (RFC 7518); ValueError for `none`, HS* or anything unknown."""
    pinned = tuple(n.strip() for n in names if n.strip())
    refused = [n for n in pinned if n not in ASYMMETRIC]
    if refused or not pinned:
        raise ValueError(f"token algorithms must be among {', '.join(sorted(ASYMMETRIC))}; "
                         f"refused: {', '.join(refused) or '(none given)'}")
    return pinned


def token_refusal(status: int, code: str, detail: str | None = None) -> HTTPException:
    """A refusal of a request's token, in the common shape; 401 says how to authenticate
    (RFC 6750 section 3)."""
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"' if code == "INVALID_TOKEN" else "Bearer"}
    return HTTPException(status, detail=reason(code, detail), headers=headers if status == 401 else None)


class TokenVerifier:
    """Verifies bearer tokens against the issuer's JWKS: fetched on first use, again once
    ``jwks_ttl_seconds`` have passed (so rotated and withdrawn keys are seen), and at once
    for a key id it does not know, at most every ``REFRESH_SECONDS`` (so forged key ids
    cannot turn us against the issuer). Fetching is async (httpx); requests arriving
    together wait for one fetch. When the issuer is away the keys already known answer."""

    def __init__(self, issuer: str, audience: str, jwks: dict[str, Any] | None = None, *,
                 algorithms: Iterable[str] = DEFAULT_ALGORITHMS, jwks_ttl_seconds: float = 300.0,
                 fetch: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.algorithms = pinned_algorithms(algorithms)
        self._ttl = jwks_ttl_seconds
        self._fetch = fetch or self._fetch_from_issuer
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = float("-inf")  # last good fetch (or the JWKS given)
        self._tried_at = float("-inf")  # last attempt, good or not
        self._refreshing = asyncio.Lock()
        if jwks is not None:
            self._load(jwks)
            self._fetched_at = self._tried_at = clock()

    def _load(self, jwks: dict[str, Any]) -> None:
        keys = jwks.get("keys")
        if not isinstance(keys, list):
            raise ValueError("a JWKS holds a list of keys")
        # Signing keys with an id; encryption keys are not ours to use.
        self._keys = {k["kid"]: k for k in keys
                      if isinstance(k, dict) and isinstance(k.get("kid"), str) and k.get("use", "sig") == "sig"}

    async def _fetch_from_issuer(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            discovery = await client.get(f"{self.issuer}/.well-known/openid-configuration")
            discovery.raise_for_status()
            answer = await client.get(discovery.json()["jwks_uri"])
            answer.raise_for_status()
            return answer.json()

    def _due(self, kid: str | None) -> bool:
        """Whether to fetch the JWKS now, for a token signed with ``kid``."""
        now = self._clock()
        since_tried = now - self._tried_at
        if not self._keys:  # nothing to answer with: try again, but not in a tight loop
            return since_tried >= RETRY_SECONDS
        if now - self._fetched_at >= self._ttl:  # stale; while the issuer fails, keep pace
            return since_tried >= min(REFRESH_SECONDS, self._ttl)
        return kid not in self._keys and since_tried >= REFRESH_SECONDS

    async def _refresh(self, kid: str | None) -> None:
        # A fetch under way is waited for: it may bring the key this token needs.
        if self._due(kid) or self._refreshing.locked():
            async with self._refreshing:
                if self._due(kid):  # else another request fetched while this one waited
                    self._tried_at = self._clock()
                    try:
                        self._load(await self._fetch())
                        self._fetched_at = self._clock()
                    except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
                        log.warning("issuer keys not fetched", issuer=self.issuer, error=type(exc).__name__)
        if not self._keys:
            raise token_refusal(503, "ISSUER_UNREACHABLE", "the issuer's keys could not be fetched")

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise token_refusal(401, "INVALID_TOKEN", "not a JWT") from None
        kid, algorithm = header.get("kid"), header.get("alg")
        if algorithm not in self.algorithms:
            raise token_refusal(401, "INVALID_TOKEN", "signature algorithm not accepted")
        await self._refresh(kid if isinstance(kid, str) else None)
        jwk = self._keys.get(kid) if isinstance(kid, str) else None
        if jwk is None:
            raise token_refusal(401, "INVALID_TOKEN", "unknown signing key")
        try:
            # A key that names its algorithm is used with that one only (PyJWT refuses a
            # token whose alg differs); one that does not is used with the token's, which
            # must suit the key's type.
            key = jwt.PyJWK(jwk, None if "alg" in jwk else algorithm)
            claims = jwt.decode(token, key, algorithms=list(self.algorithms), audience=self.audience,
                                issuer=self.issuer, leeway=LEEWAY_SECONDS,
                                options={"require": REQUIRED_CLAIMS})
        except jwt.PyJWTError as exc:
            # PyJWT's messages name claims and checks, never the token's values.
            raise token_refusal(401, "INVALID_TOKEN", str(exc)) from None
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise token_refusal(401, "INVALID_TOKEN", "sub must be a non-empty string")
        roles = claims.get("roles") or []
        return Principal(claims["sub"], claims.get("institution"),
                         frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset(),
                         claims.get("name"))


_bearer = HTTPBearer(auto_error=False)


async def authenticated(request: Request,
                        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """FastAPI dependency: the principal of a valid bearer token, counted against its rates.
    What it may do is runtime.authorization.permit's to say (contracts/reference/access.yaml)."""
    if credentials is None:
        raise token_refusal(401, "MISSING_TOKEN")
    verifier: TokenVerifier = request.app.state.runtime.verifier
    principal = await verifier.verify(credentials.credentials)
    await admit(request, principal)  # per-person and per-institution rates (runtime.limits)
    return principal
