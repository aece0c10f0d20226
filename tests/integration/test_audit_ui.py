"""The auditors' web page without a browser: the page and its script are served, sign-in
goes through the identity provider's real token endpoint (punte.identity over ASGI), the
token it hands back works on the audit API for an auditor, and the API refuses others."""
from __future__ import annotations

import io
import json
import socket
import tarfile
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from punte.accounts import new_account
from punte.identity import create_app as identity_app
from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.inbox import InboxConsumer, key_by_position
from runtime.outbox import OutboxRelay
from runtime.service import Runtime
from runtime.settings import Settings
from runtime.signing import Keyring, SigningKey
from runtime.tokens import TokenIssuer, TokenVerifier
from runtime.web_pages import IDENTITY_CLIENT
from services.audit import handlers
from services.audit.entrypoints import http, ui
from tests.integration.helpers import audit_trail, emitted, message, migrated_database

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "audit" / "migrations"
ISSUER_URL = "http://issuer.test"
ISSUER = TokenIssuer(ISSUER_URL, SigningKey.generate("idp-1"))
AUDITOR, AUDITOR_PASSWORD = new_account("aud.ana", None, ["auditor"], "Ana Auditor")
MANAGER, MANAGER_PASSWORD = new_account("cm.ion", "dgaspc-bc", ["case-manager"], "Ion Manager")
IDENTITY = identity_app(ISSUER, {a.username: a for a in (AUDITOR, MANAGER)})
# What the page sends: a code of the purpose list and, optionally, the auditor's own words
# (percent-encoded: headers are ASCII).
PURPOSE_TEXT = "control tematic ISJ, sesizarea nr. 12"
PURPOSE = {"X-Punte-Purpose": f"audit-inspection; {quote(PURPOSE_TEXT)}"}


def case_opened(i: int) -> CloudEvent:
    return CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake",
                          {"case_id": f"case-{i}", "child_ref": f"ch-{i}"})


@pytest.fixture
async def page(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "audit", MIGRATIONS)
    deps = audit_trail()

    async def handle(uow, msg):
        await handlers.append(uow, msg, deps)

    trail = InboxConsumer(service="audit", group_id="t", bootstrap="t", sessions=sessions, handler=handle,
                          message_key=key_by_position, attempts=1)
    await trail.process([message("punte.cases", case_opened(i), offset=i) for i in range(3)])
    async with sessions() as session, session.begin():
        await handlers.integrate(session)
    runtime = Runtime(name="audit", settings=Settings(oidc_issuer=ISSUER_URL), engine=engine,
                      sessions=make_sessions(engine), producer=None,  # type: ignore[arg-type]
                      relay=OutboxRelay(engine, None),  # type: ignore[arg-type]
                      verifier=TokenVerifier(ISSUER_URL, "punte", ISSUER.jwks()),
                      network_key=None, keyring=Keyring([]))
    runtime.extras["audit_log"] = handlers.Log("punte.test/audit", SigningKey.generate("punte.test/audit-1"))
    app = FastAPI()
    app.include_router(http.router)
    app.include_router(ui.router)
    app.state.runtime = runtime
    # The identity provider, reached the way the service reaches it: by discovery, over HTTP.
    setattr(app.state, IDENTITY_CLIENT,
            lambda: httpx.AsyncClient(transport=httpx.ASGITransport(IDENTITY), base_url=ISSUER_URL))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://audit.test")
    client.engine = engine  # type: ignore[attr-defined]
    client.app = app  # type: ignore[attr-defined]
    yield client
    await client.aclose()
    await engine.dispose()


async def sign_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/ui/login", json={"username": username, "password": password})


async def test_the_page_and_its_assets_are_served_in_both_languages(page):
    html = await page.get("/ui")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "Jurnal de audit" in html.text and "Audit trail" in html.text
    assert "frame-ancestors 'none'" in html.headers["content-security-policy"]
    assert "ui/static/auditor.js" in html.text and "ui/static/auditor.css" in html.text
    assert "//" not in html.text.split("<body>")[0].replace("<!doctype html>", ""), "nothing from a CDN"
    script = await page.get("/ui/static/auditor.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "X-Punte-Purpose" in script.text and "Audit trail" in script.text and "Jurnal de audit" in script.text
    assert "ui/api/reference" in script.text  # the purposes to choose from
    style = await page.get("/ui/static/auditor.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    for elsewhere in ("/ui/static/ui.py", "/ui/static/..%2Fui.py", "/ui/static/auditor.html",
                      "/ui/static/page.html", "/ui/static/inbox.js"):
        assert (await page.get(elsewhere)).status_code == 404
    await the_shared_frame_and_assets_are_there(page, html.text, "auditor")


async def the_shared_frame_and_assets_are_there(client: httpx.AsyncClient, html: str, name: str) -> None:
    """What every page shares (runtime/web_pages): the frame with the elements punte.js
    works on, and punte.js and punte.css served before the page's own."""
    for element in ("lang", "logout", "login-form", "username", "password", "login-message", "whoami",
                    "app-view", "app-message"):
        assert html.count(f'id="{element}"') == 1, element
    assert html.index("ui/static/punte.css") < html.index(f"ui/static/{name}.css")
    assert html.index("ui/static/punte.js") < html.index(f"ui/static/{name}.js"), "the shared script first"
    assert html.count("<script") == 2 and "<script>" not in html and "style=" not in html
    script = await client.get("/ui/static/punte.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "ui/login" in script.text and "sessionStorage" in script.text and "innerHTML" not in script.text
    style = await client.get("/ui/static/punte.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")


async def test_an_auditor_signs_in_and_searches_with_a_purpose_on_record(page):
    signed = await sign_in(page, "aud.ana", AUDITOR_PASSWORD)
    assert signed.status_code == 200, signed.text
    token = signed.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    found = await page.get("/entries", params={"case_id": "case-1"}, headers={**bearer, **PURPOSE})
    assert found.status_code == 200
    assert [(e["case_id"], e["child_ref"]) for e in found.json()["entries"]] == [("case-1", "ch-1")]
    timeline = await page.get("/cases/case-2/timeline", headers={**bearer, **PURPOSE})
    assert [s["event_type"] for s in timeline.json()] == ["ro.punte.case.opened.v1"]
    assert (await page.get("/verify", headers=bearer)).json()["entries"] == 3
    # Each query is on record, with the purpose the page sends: the code and the free text.
    accesses = [d for t, h, d in await emitted(page.engine) if t == "punte.access"]
    assert [(a["actor"], a["purpose"], a["purpose_text"], a["case_id"]) for a in accesses] == [
        ("aud.ana", "audit-inspection", PURPOSE_TEXT, "case-1"), ("aud.ana", "audit-inspection", PURPOSE_TEXT, "case-2")]
    # The page's list of purposes comes from the reference data.
    listed = (await page.get("/ui/api/reference", headers=bearer)).json()["purposes"]
    assert listed["audit-inspection"] == {"ro": "Control sau inspecție", "en": "Audit or inspection"}


async def test_a_wrong_password_is_refused_clearly(page):
    wrong = await sign_in(page, "aud.ana", AUDITOR_PASSWORD + "x")
    unknown = await sign_in(page, "nobody", "secret")
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        detail = answer.json()["detail"]
        assert detail["code"] == "INVALID_CREDENTIALS"
        assert detail["message_ro"] and detail["message_en"]
    assert AUDITOR_PASSWORD not in wrong.text
    assert (await page.post("/ui/login", json={"username": "aud.ana"})).status_code == 422


async def test_a_case_manager_signs_in_but_the_trail_is_closed_to_them(page):
    signed = await sign_in(page, "cm.ion", MANAGER_PASSWORD)
    assert signed.status_code == 200
    bearer = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    refused = await page.get("/entries", headers={**bearer, **PURPOSE})
    assert refused.status_code == 403 and refused.json()["detail"]["code"] == "FORBIDDEN"
    assert (await page.get("/entries", headers=PURPOSE)).status_code == 401
    assert not [t for t, h, d in await emitted(page.engine) if t == "punte.access"]


async def test_the_export_downloads_once_a_checkpoint_exists(page):
    token = (await sign_in(page, "aud.ana", AUDITOR_PASSWORD)).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}", **PURPOSE}
    assert (await page.post("/checkpoints", headers=bearer)).status_code == 200
    exported = await page.get("/export", params={"format": "tar"}, headers=bearer)
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(exported.content)) as archive:
        names = archive.getnames()
        header = json.loads(archive.extractfile("punte-audit/punte/export.json").read())  # type: ignore[union-attr]
    assert {"punte-audit/checkpoint", "punte-audit/tile/0/000.p/3", "punte-audit/tile/entries/000.p/3"} <= set(names)
    assert header["size"] == 3
    key = (await page.get("/log-key", headers=bearer)).json()["verifier_key"]
    assert key.startswith("punte.test/audit+")


def nothing_listening() -> str:
    """The URL of a local port where nothing listens (a connection there is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


async def test_an_unreachable_identity_provider_is_a_clear_503(page, monkeypatch):
    # The service's own HTTP client (no factory on app.state), towards a provider that is not there.
    monkeypatch.delattr(page.app.state, IDENTITY_CLIENT)
    monkeypatch.setattr(page.app.state.runtime.settings, "oidc_issuer", nothing_listening())
    answer = await sign_in(page, "aud.ana", AUDITOR_PASSWORD)
    assert answer.status_code == 503 and answer.json()["detail"]["code"] == "ISSUER_UNREACHABLE"
