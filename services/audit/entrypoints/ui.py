"""The auditors' web page (Romanian first, English available): sign in, search the trail,
follow a case across institutions, verify the log and download an export for offline
checking. Plain HTML/CSS/JS from ``static/``, no build step and nothing from a CDN.

The page only calls the audit API (http.py) with the auditor's bearer token; the API
enforces the auditor role and records every query as an access event. Serving the page
(inside the frame all pages share), its security headers and the sign-in
(``POST /ui/login``) are runtime.web_pages'."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from runtime.web_pages import Page, add_login

router = APIRouter(tags=["audit-ui"])
PAGE = Page(Path(__file__).parent / "static", "auditor", title="Jurnal de audit", subtitle="Audit trail",
            login_title="Autentificare auditor",
            login_hint="Doar conturile cu rolul de auditor au acces. Fiecare căutare este înregistrată în "
                       "jurnal, cu scopul declarat.",
            footer="Fiecare interogare este înregistrată (Legea 190/2018, GDPR art. 30).")
PAGE.add_to(router)
add_login(router, summary="Autentificare în pagina auditorilor / sign in to the auditors' page")
