"""The embedded default's token issuer: an OpenID-Connect-shaped endpoint (discovery,
JWKS, token) that signs JWTs with institution and role claims. Production points
PUNTE_OIDC_ISSUER at a real identity provider instead; the services only read the
discovery document and the JWKS."""
from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import JSONResponse

from punte.accounts import Account, grant_type_of, load_accounts, password_matches
from runtime import http_server
from runtime.limits import throttle
from runtime.signing import SigningKey
from runtime.tokens import TokenIssuer


def basic_credentials(authorization: str) -> tuple[str, str]:
    """Client id and secret from an HTTP Basic header, each form-urlencoded before the
    base64 (RFC 6749 section 2.3.1); ValueError when it is not that."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise ValueError("not HTTP Basic")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("unreadable HTTP Basic credentials") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise ValueError("HTTP Basic credentials without a colon")
    return unquote_plus(client_id), unquote_plus(secret)


async def login_named(request: Request) -> str:
    """The account a token request names (username, client_id, or HTTP Basic's client id),
    for its throttle; "" when it names none or cannot be read."""
    form = await request.form()
    named = form.get("username") or form.get("client_id")
    if not named and request.headers.get("authorization"):
        try:
            named = basic_credentials(request.headers["authorization"])[0]
        except ValueError:
            named = ""
    return str(named or "")[:200]


def oauth_error(error: str, description: str | None = None, status: int = 400,
                headers: dict[str, str] | None = None) -> JSONResponse:
    """An error response of the token endpoint (RFC 6749 section 5.2)."""
    body = {"error": error} | ({"error_description": description} if description else {})
    return JSONResponse(body, status_code=status, headers=headers)


def invalid_client() -> JSONResponse:
    return oauth_error("invalid_client", "Client necunoscut sau secret greșit / unknown client or wrong secret",
                       status=401, headers={"WWW-Authenticate": 'Basic realm="punte"'})


def create_app(issuer: TokenIssuer, accounts: dict[str, Account]) -> FastAPI:
    app = FastAPI(title="Punte identity (embedded default)")

    @app.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        return issuer.discovery()

    @app.get("/jwks.json")
    async def jwks() -> dict[str, Any]:
        return issuer.jwks()

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    # Per client address and account (runtime.limits; PUNTE_RATE_TOKEN_PER_ADDRESS).
    @app.post("/token", dependencies=[Depends(throttle("token", login_named))])
    async def token(request: Request, grant_type: str = Form(...), username: str | None = Form(None),
                    password: str | None = Form(None), client_id: str | None = Form(None),
                    client_secret: str | None = Form(None)) -> JSONResponse:
        # password: people (case managers, auditors, operators); client_credentials:
        # institutions' systems, authenticated by the form or by HTTP Basic.
        if grant_type == "password":
            login, secret = username, password
        elif grant_type == "client_credentials":
            basic = request.headers.get("authorization")
            if basic and (client_id or client_secret):
                return oauth_error("invalid_request", "one client authentication method at a time")
            try:
                login, secret = basic_credentials(basic) if basic else (client_id, client_secret)
            except ValueError:
                return invalid_client()
        else:
            return oauth_error("unsupported_grant_type")
        account = accounts.get(login or "")
        if account is None or not password_matches(account, secret or ""):
            if grant_type == "client_credentials":
                return invalid_client()
            return oauth_error("invalid_grant", "Utilizator sau parolă greșită / wrong user or password")
        # Checked only once the secret matched, so no one learns which accounts are systems.
        if grant_type != grant_type_of(account):
            return oauth_error("unauthorized_client", f"this account signs in with {grant_type_of(account)}")
        access = issuer.issue(account.username, account.institution, account.roles, account.name)
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 3600})

    return app


def main() -> None:
    state = Path(os.environ.get("PUNTE_STATE_DIR", ".punte"))
    port = int(os.environ.get("PUNTE_HTTP_PORT", "8400"))
    issuer_url = os.environ.get("PUNTE_OIDC_ISSUER", f"http://127.0.0.1:{port}")
    issuer = TokenIssuer(issuer_url, SigningKey.load(state / "keys" / "identity.key"))
    app = create_app(issuer, load_accounts(state / "accounts.json"))
    socket_fd = os.environ.get(http_server.SOCKET_FD_VARIABLE)
    http_server.run(app, "127.0.0.1", port, int(socket_fd) if socket_fd else None, log_level="warning")


if __name__ == "__main__":
    main()
