"""The case managers' web inbox (Romanian first, English available): sign in, the
institution's inbox with filters and live updates, mark read, acknowledge an alert, and
open a referral to act on it. Plain HTML/CSS/JS from ``static/``, no build step and
nothing from a CDN; serving it, its security headers and the sign-in are
runtime.web_pages'.

The page calls this service's inbox API (http.py) with the person's bearer token. Its
Content-Security-Policy allows the same origin only, so the few referral calls it makes go
through ``/ui/api/referrals/…`` here: each forwards one fixed path of the referral API
with the caller's Authorization header and gives back the status and the JSON body as they
came, refusals included: the referral service applies the access rule and need to know to
what it answers (each call is also checked here, by role). Nothing else is forwarded:
this is not an open proxy."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam

from contracts.reference import institutions, referral_outcomes, referral_reasons, risk_categories
from runtime.authorization import permit
from runtime.log import get_logger
from runtime.service import Runtime
from runtime.tokens import Principal
from runtime.web_pages import Page, add_login, client_factory, refusal
from services.notification.domain.dispatch import ALERT_KINDS

router = APIRouter(tags=["inbox-ui"])
log = get_logger("notification.ui")
PAGE = Page(Path(__file__).parent / "static", "inbox", title="Inbox responsabil de caz",
            subtitle="Case manager's inbox", login_title="Autentificare responsabil de caz",
            login_hint="Pentru responsabilii de caz ai instituțiilor din rețea. Pagina arată doar referința "
                       "cazului, categoriile și urgența: niciodată numele, CNP-ul sau adresa copilului.",
            footer="Fiecare consultare a unui caz este înregistrată în jurnalul de audit.")
PAGE.add_to(router)
add_login(router, summary="Autentificare în inboxul web / sign in to the web inbox")

# app.state attribute holding a zero-argument factory of httpx.AsyncClient for the calls
# to the referral service (tests inject one over httpx.ASGITransport).
REFERRAL_CLIENT = "referral_client_factory"
# What goes on from the caller: who (the token) and why (the purpose of reading a case).
FORWARDED_HEADERS = ("authorization", "x-punte-purpose", "traceparent", "tracestate")
MAX_COMMAND_BYTES = 16_384  # a command is a few fields and a note of at most 4000 characters
REFERRAL_ID = PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_:-]{0,127}$")


async def _forward(request: Request, method: str, path: str, *,
                   params: dict[str, Any] | None = None, body: bytes | None = None) -> Response:
    runtime: Runtime = request.app.state.runtime
    headers = {name: value for name in FORWARDED_HEADERS if (value := request.headers.get(name))}
    headers["accept"] = "application/json"
    if body is not None:
        headers["content-type"] = "application/json"
    url = runtime.settings.referral_url.rstrip("/") + path
    try:
        async with client_factory(request, REFERRAL_CLIENT)() as client:
            answer = await client.request(method, url, params=params, content=body, headers=headers)
    except httpx.HTTPError as exc:
        log.warning("referral service unreachable", error=repr(exc))
        raise refusal(503, "REFERRAL_UNREACHABLE",
                      "Serviciul de trimiteri nu răspunde. Încercați din nou.",
                      "The referral service is not answering. Try again.") from None
    if answer.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        log.warning("referral service answered without JSON", status=answer.status_code)
        raise refusal(502, "REFERRAL_ERROR", "Serviciul de trimiteri a dat un răspuns neașteptat.",
                      "The referral service gave an unexpected answer.")
    return Response(answer.content, status_code=answer.status_code, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


@router.get("/ui/api/referrals/inbox", summary="Inboxul echipei, prin pagină / the team inbox, for the page")
async def team_inbox(request: Request, owner: Literal["all", "mine", "unassigned"] = "all",
                     include_closed: bool = False, limit: int = Query(100, ge=1, le=500),
                     principal: Principal = Depends(permit("referral.list"))) -> Response:
    """Forwards ``GET /v1/referrals/inbox`` of the referral service."""
    return await _forward(request, "GET", "/v1/referrals/inbox",
                          params={"owner": owner, "include_closed": str(include_closed).lower(), "limit": limit})


@router.get("/ui/api/referrals/{referral_id}", summary="O trimitere, prin pagină / one referral, for the page")
async def referral(request: Request, referral_id: str = REFERRAL_ID,
                   principal: Principal = Depends(permit("referral.read"))) -> Response:
    """Forwards ``GET /v1/referrals/{referral_id}`` (the referral service checks the
    caller's relation to it and records the read)."""
    return await _forward(request, "GET", f"/v1/referrals/{quote(referral_id, safe='')}")


@router.post("/ui/api/referrals/{referral_id}/commands",
             summary="Un pas pe o trimitere, prin pagină / a step on a referral, for the page")
async def command(request: Request, referral_id: str = REFERRAL_ID,
                  principal: Principal = Depends(permit("referral.command"))) -> Response:
    """Forwards ``POST /v1/referrals/{referral_id}/commands``; the referral service checks
    the body and answers with the referral or a refusal (code, message_ro, message_en)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_COMMAND_BYTES):
        raise refusal(413, "TOO_LARGE", "Cererea este prea mare.", "The request is too large.")
    body = await request.body()
    try:
        parsed = json.loads(body) if len(body) <= MAX_COMMAND_BYTES else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise refusal(422, "MALFORMED_PAYLOAD", "Comanda trebuie să fie un obiect JSON.",
                      "The command must be a JSON object.")
    return await _forward(request, "POST", f"/v1/referrals/{quote(referral_id, safe='')}/commands", body=body)


@functools.cache
def _labels() -> bytes:
    """Labels of the risk categories, referral outcomes, referral reasons (with the commands
    each is for, and whether it needs a note) and institutions, in both languages, from
    contracts/reference, and which notices are alerts to acknowledge: fixed while the
    service runs, so made once. The page keeps no list of its own."""
    return json.dumps({
        "alerts": {"urgency": ["P0"], "kinds": sorted(ALERT_KINDS)},
        "categories": {c.id: {"ro": c.label_ro, "en": c.label_en} for c in risk_categories().values()},
        "outcomes": {code: {"ro": o["label_ro"], "en": o["label_en"]} for code, o in referral_outcomes().items()},
        "reasons": {code: {"ro": r.label_ro, "en": r.label_en, "commands": sorted(r.commands),
                           "note_required": r.note_required} for code, r in referral_reasons().items()},
        "institutions": {i.id: i.name for i in institutions().values()},
    }, ensure_ascii=False).encode()


@router.get("/ui/api/reference", summary="Etichetele paginii / the page's labels (public reference data)")
async def reference(principal: Principal = Depends(permit("reference.read"))) -> Response:
    """The page's labels (public reference data: no personal data, the same for everyone
    signed in)."""
    return Response(_labels(), media_type="application/json", headers={"Cache-Control": "no-cache"})
