"""The auditors' web page (Romanian first, English available): sign in, search the trail,
follow a case across institutions, verify the log and download an export for offline
checking. Plain HTML/CSS/JS from ``static/``, no build step and nothing from a CDN.

The page only calls the audit API (http.py) with the auditor's bearer token; the API
enforces the auditor role and records every query as an access event, with the purpose the
auditor chose from the list ``/ui/api/reference`` gives (a code, and optional free text
that stays in the trail). Serving the page
(inside the frame all pages share), its security headers and the sign-in
(``POST /ui/login``) are runtime.web_pages'."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends

from runtime.access import purposes
from runtime.authorization import permit
from runtime.tokens import Principal
from runtime.web_pages import Page, add_login

router = APIRouter(tags=["audit-ui"])
PAGE = Page(Path(__file__).parent / "static", "auditor", title="Jurnal de audit", subtitle="Audit trail",
            login_title="Autentificare auditor",
            login_hint="Doar conturile cu rolul de auditor au acces. Fiecare căutare este înregistrată în "
                       "jurnal, cu scopul declarat.",
            footer="Fiecare interogare este înregistrată (Legea 190/2018, GDPR art. 30).")
PAGE.add_to(router)
add_login(router, summary="Autentificare în pagina auditorilor / sign in to the auditors' page")


@router.get("/ui/api/reference", summary="Listele paginii / the page's lists (the access purposes)")
async def reference(principal: Principal = Depends(permit("reference.read"))) -> dict:
    """The purposes an auditor may state, code -> labels in both languages, in the order of
    contracts/reference/access-purposes.yaml (public reference data)."""
    return {"purposes": {p.code: {"ro": p.label_ro, "en": p.label_en} for p in purposes().values()}}
