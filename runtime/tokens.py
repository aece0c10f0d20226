"""Tokens for people and systems: JWTs carrying institution and role claims, signed with
EdDSA. The embedded default has its own issuer (punte.identity); the verifier only needs
an OpenID Connect discovery document and its JWKS, so a real identity provider can take
its place by configuration (PUNTE_OIDC_ISSUER)."""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runtime.limits import admit
from runtime.signing import SigningKey, b64url

ALGORITHM = "EdDSA"
REFRESH_SECONDS = 30.0


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
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "response_types_supported": ["token"], "subject_types_supported": ["public"],
        }


class TokenVerifier:
    """Verifies bearer tokens against the issuer's JWKS, fetched once on first use."""

    def __init__(self, issuer: str, audience: str, jwks: dict[str, Any] | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        # Requests arriving together with a new key id wait for one fetch, not a refusal.
        self._refreshing = asyncio.Lock()
        if jwks is not None:
            self._load(jwks)

    def _load(self, jwks: dict[str, Any]) -> None:
        self._keys = {k["kid"]: jwt.PyJWK(k) for k in jwks["keys"]}

    async def _refresh(self) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            config = (await client.get(f"{self.issuer}/.well-known/openid-configuration")).json()
            self._load((await client.get(config["jwks_uri"])).json())

    async def verify(self, token: str) -> Principal:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise HTTPException(401, detail={"code": "INVALID_TOKEN", "message": str(exc)}) from None
        # An unknown key id may mean the issuer rotated; look again, but at most every
        # REFRESH_SECONDS, so forged tokens cannot turn us against the issuer.
        if kid not in self._keys:
            async with self._refreshing:
                if kid not in self._keys and time.monotonic() - self._fetched_at > REFRESH_SECONDS:
                    try:
                        await self._refresh()
                    except (httpx.HTTPError, KeyError, ValueError) as exc:
                        raise HTTPException(503, detail={"code": "ISSUER_UNREACHABLE",
                                                         "message": repr(exc)}) from None
                    finally:
                        self._fetched_at = time.monotonic()
        key = self._keys.get(kid)
        if key is None:
            raise HTTPException(401, detail={"code": "INVALID_TOKEN", "message": "unknown key"})
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=self.audience,
                                issuer=self.issuer)
        except jwt.PyJWTError as exc:
            raise HTTPException(401, detail={"code": "INVALID_TOKEN", "message": str(exc)}) from None
        return Principal(claims["sub"], claims.get("institution"),
                         frozenset(claims.get("roles") or []), claims.get("name"))


_bearer = HTTPBearer(auto_error=False)


def require_role(*roles: str):
    """FastAPI dependency: a valid token holding at least one of ``roles`` (any if none)."""

    async def dependency(request: Request,
                         credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        if credentials is None:
            raise HTTPException(401, detail={"code": "MISSING_TOKEN",
                                             "message": "Autentificare necesară / Authentication required"})
        verifier: TokenVerifier = request.app.state.runtime.verifier
        principal = await verifier.verify(credentials.credentials)
        await admit(request, principal)  # per-person and per-institution rates (runtime.limits)
        if roles and not principal.roles.intersection(roles):
            raise HTTPException(403, detail={"code": "FORBIDDEN",
                                             "message": f"Rol necesar / role required: {', '.join(roles)}"})
        return principal

    return dependency
