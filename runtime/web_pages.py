"""The people's web pages the services serve at ``/ui`` (the auditors' page, the case
managers' inbox), done one way: one frame (``web_static/page.html``: head, header with the
RO | EN toggle, sign-in form, footer) around each page's own part, the shared script and
style (``web_static/punte.js``, ``punte.css``) before the page's own, a fixed list of files,
the same security headers, and the same sign-in.

``POST /ui/login`` exchanges a username and password at the identity provider's token
endpoint (found through its OpenID Connect discovery document) and hands the token to the
page, which sends it as a bearer token to its service's API; the API checks the roles."""
from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field

from runtime.limits import throttle
from runtime.log import get_logger
from runtime.service import Runtime

log = get_logger("runtime.web_pages")

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
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def refusal(status: int, code: str, ro: str, en: str) -> HTTPException:
    """A machine-readable refusal the pages show in the reader's language."""
    return HTTPException(status, detail={"code": code, "message_ro": ro, "message_en": en})


def client_factory(request: Request, attribute: str) -> Callable[[], httpx.AsyncClient]:
    """The app's factory of HTTP clients for ``attribute`` (tests put one on app.state),
    else plain clients with a timeout."""
    return getattr(request.app.state, attribute, None) or (lambda: httpx.AsyncClient(timeout=TIMEOUT_SECONDS))


# The frame, script and style every page shares.
SHARED = Path(__file__).parent / "web_static"


@dataclass(frozen=True)
class Page:
    """A page: ``static/<name>.html`` (what a signed-in person sees) inside the shared
    frame, with ``static/<name>.js`` and ``<name>.css`` after the shared ``punte.js`` and
    ``punte.css``. The texts fill the frame in Romanian before the script runs; the script
    has them in both languages."""

    static: Path
    name: str
    title: str
    subtitle: str  # the title in English
    login_title: str
    login_hint: str
    footer: str

    def render(self) -> str:
        """The page: its part inside the frame, the texts filled in."""
        texts = {field: html.escape(getattr(self, field), quote=False)
                 for field in ("name", "title", "subtitle", "login_title", "login_hint", "footer")}
        frame = Template((SHARED / "page.html").read_text(encoding="utf-8"))
        return frame.substitute(texts, main=(self.static / f"{self.name}.html").read_text(encoding="utf-8"))

    def files(self) -> dict[str, Path]:
        """The only files served under ``/ui/static/``: a fixed list, so no path from a
        request ever reaches the disk."""
        return {"punte.js": SHARED / "punte.js", "punte.css": SHARED / "punte.css",
                f"{self.name}.js": self.static / f"{self.name}.js",
                f"{self.name}.css": self.static / f"{self.name}.css"}

    def add_to(self, router: APIRouter) -> None:
        """``GET /ui`` (the page, with the security headers) and ``GET /ui/static/{name}``."""
        page_html = self.render()  # once: the files do not change while the service runs
        files = {name: (path, MEDIA_TYPES[path.suffix]) for name, path in self.files().items()}

        @router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
        async def page() -> HTMLResponse:
            return HTMLResponse(page_html, headers=SECURITY_HEADERS)

        @router.get("/ui/static/{name}", include_in_schema=False)
        async def asset(name: str) -> FileResponse:
            if name not in files:
                raise HTTPException(404, detail={"code": "NOT_FOUND", "message_en": "no such file"})
            path, media_type = files[name]
            return FileResponse(path, media_type=media_type,
                                headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


async def _username(request: Request) -> str:
    """The account a sign-in names (for its throttle), whatever the body's shape."""
    try:
        body = await request.json()
    except ValueError:
        return ""
    return str(body.get("username", ""))[:200] if isinstance(body, dict) else ""


class SignedIn(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int | None = None


def add_login(router: APIRouter, summary: str) -> None:
    """``POST /ui/login``: the password grant at the identity provider's token endpoint."""

    # Per client address, so guessing passwords through the page is slow (runtime.limits).
    @router.post("/ui/login", response_model=SignedIn, summary=summary,
                 dependencies=[Depends(throttle("login", _username))])
    async def login(body: Login, request: Request) -> SignedIn:
        """Password grant at the identity provider's token endpoint; the token goes back to
        the page, which sends it as a bearer token to the API (where the roles are checked)."""
        return await exchange(body, request)


async def exchange(body: Login, request: Request) -> SignedIn:
    runtime: Runtime = request.app.state.runtime
    issuer = runtime.settings.oidc_issuer.rstrip("/")
    unreachable = refusal(503, "ISSUER_UNREACHABLE",
                          "Furnizorul de identitate nu răspunde. Încercați din nou.",
                          "The identity provider is not answering. Try again.")
    try:
        async with client_factory(request, IDENTITY_CLIENT)() as client:
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
        raise refusal(401, "INVALID_CREDENTIALS", "Utilizator sau parolă greșită.", "Wrong username or password.")
    if answer.status_code != 200 or not payload.get("access_token"):
        log.warning("identity provider refused the exchange", status=answer.status_code,
                    error=payload.get("error"))
        raise refusal(502, "IDENTITY_ERROR", "Furnizorul de identitate a refuzat autentificarea.",
                      "The identity provider refused the sign-in.")
    expires = payload.get("expires_in")
    return SignedIn(access_token=str(payload["access_token"]),
                    token_type=str(payload.get("token_type") or "Bearer"),
                    expires_in=int(expires) if isinstance(expires, int | float) else None)
