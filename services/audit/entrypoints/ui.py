"""The auditors' web page (Romanian first, English available): sign in, search the trail,
follow a case across institutions, verify the log and download an export for offline
checking. Plain HTML/CSS/JS from ``static/``, no build step and nothing from a CDN.

The page only calls the audit API (http.py) with the auditor's bearer token; the API
enforces the auditor role and records every query as an access event. ``POST /ui/login``
exchanges a username and password at the identity provider's token endpoint (found
through its OpenID Connect discovery document) and hands the token to the page."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field

from runtime.log import get_logger
from runtime.service import Runtime

router = APIRouter(tags=["audit-ui"])
log = get_logger("audit.ui")

STATIC = Path(__file__).parent / "static"
# The only files served under /ui/static/: a fixed list, so no path ever reaches the disk.
ASSETS = {
    "auditor.js": "text/javascript; charset=utf-8",
    "auditor.css": "text/css; charset=utf-8",
}
# app.state attribute holding a zero-argument factory of httpx.AsyncClient for the calls
# to the identity provider (tests inject one over httpx.ASGITransport).
IDENTITY_CLIENT = "identity_client_factory"
TIMEOUT_SECONDS = 10.0

# Same origin only, no inline script or style, never framed (clickjacking), no referrer.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _default_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT_SECONDS)


def _client_factory(request: Request) -> Callable[[], httpx.AsyncClient]:
    return getattr(request.app.state, IDENTITY_CLIENT, None) or _default_client


def _error(status: int, code: str, ro: str, en: str) -> HTTPException:
    return HTTPException(status, detail={"code": code, "message_ro": ro, "message_en": en})


@router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse((STATIC / "auditor.html").read_text(encoding="utf-8"), headers=SECURITY_HEADERS)


@router.get("/ui/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, detail={"code": "NOT_FOUND", "message_en": "no such file"})
    return FileResponse(STATIC / name, media_type=media_type,
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class SignedIn(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int | None = None


@router.post("/ui/login", response_model=SignedIn,
             summary="Autentificare în pagina auditorilor / sign in to the auditors' page")
async def login(body: Login, request: Request) -> SignedIn:
    """Password grant at the identity provider's token endpoint; the token goes back to the
    page, which sends it as a bearer token to the API (where the auditor role is checked)."""
    runtime: Runtime = request.app.state.runtime
    issuer = runtime.settings.oidc_issuer.rstrip("/")
    unreachable = _error(503, "ISSUER_UNREACHABLE",
                         "Furnizorul de identitate nu răspunde. Încercați din nou.",
                         "The identity provider is not answering. Try again.")
    try:
        async with _client_factory(request)() as client:
            discovery = await client.get(f"{issuer}/.well-known/openid-configuration")
            discovery.raise_for_status()
            token_endpoint = discovery.json()["token_endpoint"]
            answer = await client.post(token_endpoint, data={
                "grant_type": "password", "username": body.username, "password": body.password,
            }, headers={"Accept": "application/json"})
    except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
        log.warning("identity provider unreachable", error=repr(exc))
        raise unreachable from None

    try:
        payload = answer.json()
    except ValueError:
        payload = None
    payload = payload if isinstance(payload, dict) else {}
    # RFC 6749 §5.2: a wrong password is 400 invalid_grant (some providers answer 401).
    if answer.status_code in (400, 401) and payload.get("error") in ("invalid_grant", "invalid_client", None):
        raise _error(401, "INVALID_CREDENTIALS",
                     "Utilizator sau parolă greșită.", "Wrong username or password.")
    if answer.status_code != 200 or not payload.get("access_token"):
        log.warning("identity provider refused the exchange", status=answer.status_code,
                    error=payload.get("error"))
        raise _error(502, "IDENTITY_ERROR",
                     "Furnizorul de identitate a refuzat autentificarea.",
                     "The identity provider refused the sign-in.")
    expires = payload.get("expires_in")
    return SignedIn(access_token=str(payload["access_token"]),
                    token_type=str(payload.get("token_type") or "Bearer"),
                    expires_in=int(expires) if isinstance(expires, int | float) else None)
