"""The case managers' web inbox without a browser: the page and its assets are served,
sign-in goes through the identity provider's real token endpoint (punte.identity over
ASGI), the token works on the inbox, and the page's referral calls reach the real
referral API (over ASGI, on its own database) through a forwarding that passes statuses
and refusals on unchanged and forwards nothing but the referral paths the page needs."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from contracts.reference import referral_reasons
from punte.accounts import new_account
from punte.identity import create_app as identity_app
from runtime.db import make_sessions
from runtime.inbox import InboxConsumer
from runtime.outbox import OutboxRelay
from runtime.service import Runtime
from runtime.settings import Settings
from runtime.signing import Keyring, SigningKey
from runtime.tokens import TokenIssuer, TokenVerifier
from runtime.web_pages import IDENTITY_CLIENT
from services.notification.adapters.tables import inbox_entries
from services.notification.domain.dispatch import ALERT_KINDS
from services.notification.entrypoints import http, ui
from services.referral import handlers as referral_handlers
from services.referral.entrypoints.http import router as referral_router
from tests.integration.helpers import TEST_DATA_KEYS_SETTING, message, migrated_database
from tests.integration.test_audit_ui import nothing_listening, the_shared_frame_and_assets_are_there
from tests.integration.test_referral import CONFIG, case_opened, positions

ROOT = Path(__file__).resolve().parents[2]
ISSUER_URL = "http://issuer.test"
REFERRAL_URL = "http://referral.test"
ISSUER = TokenIssuer(ISSUER_URL, SigningKey.generate("idp-1"))
ANA, ANA_PASSWORD = new_account("cm.ana", "dgaspc-bc", ["case-manager"], "Ana Manager")
ION, ION_PASSWORD = new_account("cm.ion", "dgaspc-bc", ["case-manager"], "Ion Manager")
POLICE, POLICE_PASSWORD = new_account("cm.police", "ipj-bc", ["case-manager"], "Agent Exemplu")
IDENTITY = identity_app(ISSUER, {a.username: a for a in (ANA, ION, POLICE)})


def runtime_for(name: str, engine, settings: Settings) -> Runtime:
    return Runtime(name=name, settings=settings, engine=engine, sessions=make_sessions(engine),
                   producer=None, relay=OutboxRelay(engine, None),  # type: ignore[arg-type]
                   verifier=TokenVerifier(ISSUER_URL, "punte", ISSUER.jwks()),
                   network_key=None, keyring=Keyring([]))


@pytest.fixture
async def page(infrastructure):
    # The referral service, on its own database, with one referral to DGASPC Bacău.
    referral_engine, referral_sessions = await migrated_database(
        infrastructure.database_url, "referral", ROOT / "services" / "referral" / "migrations")

    async def on_case(uow, msg):
        await referral_handlers.follow_case(uow, msg, CONFIG)
    cases = InboxConsumer(service="referral", group_id="t", bootstrap="t", sessions=referral_sessions,
                          handler=on_case)
    await cases.process([message("punte.cases", case_opened(), offset=next(positions))])
    referral = FastAPI()
    referral.include_router(referral_router)
    referral.state.runtime = runtime_for("referral", referral_engine,
                                              Settings(oidc_issuer=ISSUER_URL, data_keys=TEST_DATA_KEYS_SETTING))
    reached: list[dict] = []  # what arrives at the referral service

    async def recording(scope, receive, send):
        if scope["type"] == "http":
            reached.append({"method": scope["method"], "path": scope["path"],
                            "query": scope["query_string"].decode(),
                            "headers": {k.decode(): v.decode() for k, v in scope["headers"]}})
        await referral(scope, receive, send)

    # The notification service with its inbox API and the page.
    engine, _ = await migrated_database(infrastructure.database_url, "notification",
                                        ROOT / "services" / "notification" / "migrations")
    app = FastAPI()
    app.include_router(http.router)
    app.include_router(ui.router)
    app.state.runtime = runtime_for("notification", engine,
                                    Settings(oidc_issuer=ISSUER_URL, referral_url=REFERRAL_URL))
    setattr(app.state, IDENTITY_CLIENT,
            lambda: httpx.AsyncClient(transport=httpx.ASGITransport(IDENTITY), base_url=ISSUER_URL))
    setattr(app.state, ui.REFERRAL_CLIENT,
            lambda: httpx.AsyncClient(transport=httpx.ASGITransport(recording), base_url=REFERRAL_URL))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://notification.test")
    direct = httpx.AsyncClient(transport=httpx.ASGITransport(referral), base_url=REFERRAL_URL)
    client.app, client.engine, client.reached, client.direct = app, engine, reached, direct  # type: ignore[attr-defined]
    yield client
    await client.aclose()
    await direct.aclose()
    await engine.dispose()
    await referral_engine.dispose()


async def bearer(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    signed = await client.post("/ui/login", json={"username": username, "password": password})
    assert signed.status_code == 200, signed.text
    return {"Authorization": f"Bearer {signed.json()['access_token']}"}


async def test_the_page_and_its_assets_are_served_in_both_languages(page):
    html = await page.get("/ui")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "Inbox responsabil de caz" in html.text and "Case manager's inbox" in html.text
    csp = html.headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert html.headers["x-frame-options"] == "DENY" and html.headers["cache-control"] == "no-store"
    assert "ui/static/inbox.js" in html.text and "ui/static/inbox.css" in html.text
    assert "//" not in html.text.split("<body>")[0].replace("<!doctype html>", ""), "nothing from a CDN"
    assert "<script>" not in html.text and "style=" not in html.text, "no inline script or style"
    script = await page.get("/ui/static/inbox.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    for text in ("NU contactați familia", "Do NOT contact the household", "inbox/stream", "ui/api/referrals/"):
        assert text in script.text
    assert "innerHTML" not in script.text and "EventSource" not in script.text.split("*/", 1)[1]
    style = await page.get("/ui/static/inbox.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    for elsewhere in ("/ui/static/ui.py", "/ui/static/..%2Fui.py", "/ui/static/inbox.html",
                      "/ui/static/auditor.js"):
        assert (await page.get(elsewhere)).status_code == 404
    await the_shared_frame_and_assets_are_there(page, html.text, "inbox")
    for element in ("live", "announce", "referral-view", "ref-message"):  # the inbox's own
        assert html.text.count(f'id="{element}"') == 1, element


async def test_a_case_manager_signs_in_and_the_token_opens_the_inbox(page):
    auth = await bearer(page, "cm.ana", ANA_PASSWORD)
    async with page.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(inbox_entries.insert().values(
            notification_id="n-1", institution="dgaspc-bc", case_id="case-1", referral_id=None,
            kind="case-informed", urgency="P0", categories=["neglect"],
            summary_ro="Caz nou, spre informare (P0): neglijare. Caz case-1",
            summary_en="New case, for information (P0): neglect. Case case-1",
            created_at=datetime.now(timezone.utc), do_not_contact=True))
    inbox = (await page.get("/inbox", headers=auth)).json()
    assert inbox["unread"] == 1 and inbox["entries"][0]["do_not_contact"] is True
    acked = await page.post("/inbox/n-1/ack", headers=auth)
    assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "cm.ana"
    police = await bearer(page, "cm.police", POLICE_PASSWORD)
    assert (await page.post("/inbox/n-1/ack", headers=police)).json()["detail"]["code"] == "NOT_FOUND"
    wrong = await page.post("/ui/login", json={"username": "cm.ana", "password": ANA_PASSWORD + "x"})
    assert wrong.status_code == 401 and wrong.json()["detail"]["code"] == "INVALID_CREDENTIALS"
    assert ANA_PASSWORD not in wrong.text


async def test_the_page_works_a_referral_through_the_forwarding(page):
    ana, ion = await bearer(page, "cm.ana", ANA_PASSWORD), await bearer(page, "cm.ion", ION_PASSWORD)
    [waiting] = (await page.get("/ui/api/referrals/inbox?owner=unassigned", headers=ana)).json()
    rid = waiting["referral_id"]
    assert waiting["do_not_contact"] is True and waiting["state"] == "requested"
    claimed = await page.post(f"/ui/api/referrals/{rid}/commands", json={"command": "claim"}, headers=ana)
    assert claimed.status_code == 200 and claimed.json()["owner"] == "cm.ana"
    assert claimed.headers["cache-control"] == "no-store"
    for body in ({"command": "accept"}, {"command": "note", "note": "Prima vizită programată."}):
        done = await page.post(f"/ui/api/referrals/{rid}/commands", json=body, headers=ana)
        assert done.status_code == 200, done.text
    seen = await page.get(f"/ui/api/referrals/{rid}", headers=ana)
    assert seen.json()["state"] == "accepted"
    assert [h["command"] for h in seen.json()["history"]] == ["claim", "accept", "note"]
    assert seen.json()["history"][-1]["note"] == "Prima vizită programată."
    # The same refusals as the referral API's own, status and body unchanged.
    for who, body in ((ion, {"command": "claim"}), (ana, {"command": "reject"}),
                      (ana, {"command": "complete", "outcome": "nonsense"}), (ana, {"command": "fly"})):
        proxied = await page.post(f"/ui/api/referrals/{rid}/commands", json=body, headers=who)
        direct = await page.direct.post(f"/v1/referrals/{rid}/commands", json=body, headers=who)  # type: ignore[attr-defined]
        assert proxied.status_code == direct.status_code and proxied.json() == direct.json(), body
        assert proxied.status_code in (409, 422)
    taken = await page.post(f"/ui/api/referrals/{rid}/commands", json={"command": "claim"}, headers=ion)
    assert taken.json()["detail"]["code"] == "ALREADY_CLAIMED"
    assert taken.json()["detail"]["message_ro"] and taken.json()["detail"]["message_en"]
    outsider = await page.get(f"/ui/api/referrals/{rid}", headers=await bearer(page, "cm.police", POLICE_PASSWORD))
    assert outsider.status_code == 404 and outsider.json()["detail"]["code"] == "UNKNOWN_REFERRAL"
    anonymous = await page.get(f"/ui/api/referrals/{rid}")
    assert anonymous.status_code == 401 and anonymous.json()["detail"]["code"] == "MISSING_TOKEN"


async def test_only_the_pages_referral_paths_are_forwarded_with_only_the_callers_token(page):
    ana = await bearer(page, "cm.ana", ANA_PASSWORD)
    page.reached.clear()  # type: ignore[attr-defined]
    await page.get("/ui/api/referrals/inbox", params={"owner": "mine", "evil": "1", "limit": 5},
                   headers={**ana, "Cookie": "session=secret", "X-Punte-Purpose": "case-work",
                            "X-Forwarded-Host": "elsewhere.test"})
    [call] = page.reached  # type: ignore[attr-defined]
    assert call["method"] == "GET" and call["path"] == "/v1/referrals/inbox"
    assert dict(p.split("=") for p in call["query"].split("&")) == {
        "owner": "mine", "include_closed": "false", "limit": "5"}
    assert call["headers"]["authorization"] == ana["Authorization"]
    assert call["headers"]["x-punte-purpose"] == "case-work"
    assert "cookie" not in call["headers"] and "x-forwarded-host" not in call["headers"]
    page.reached.clear()  # type: ignore[attr-defined]
    for method, path in (("GET", "/ui/api/referrals/..%2F..%2Fv1%2Fcases%2Fcase-1"),
                         ("GET", "/ui/api/referrals/.."), ("GET", "/ui/api/referrals/a%2Fb"),
                         ("GET", "/ui/api/cases/case-1"), ("GET", "/ui/api/services"),
                         ("POST", "/ui/api/referrals"), ("DELETE", "/ui/api/referrals/ref-1"),
                         ("GET", "/ui/api/referrals/ref-1/commands"),
                         ("POST", "/ui/api/referrals/ref-1/commands/x"),
                         ("GET", "/ui/api/referrals/sent/../../v1/cases/case-1")):
        answer = await page.request(method, path, headers=ana, json={"command": "claim"})
        assert answer.status_code in (404, 405, 422), (method, path, answer.status_code)
    assert page.reached == [], "nothing reached the referral service"  # type: ignore[attr-defined]
    too_big = await page.post("/ui/api/referrals/ref-1/commands", headers=ana,
                              json={"command": "note", "note": "x" * 20_000})
    assert too_big.status_code == 413 and too_big.json()["detail"]["code"] == "TOO_LARGE"
    not_object = await page.post("/ui/api/referrals/ref-1/commands", headers=ana, json=["claim"])
    assert not_object.status_code == 422 and not_object.json()["detail"]["code"] == "MALFORMED_PAYLOAD"
    assert page.reached == []  # type: ignore[attr-defined]


async def test_a_referral_service_that_is_away_or_odd_gives_a_clear_refusal(page, monkeypatch):
    ana = await bearer(page, "cm.ana", ANA_PASSWORD)
    # The service's own HTTP client (no factory on app.state), towards a referral service
    # that is not there.
    monkeypatch.delattr(page.app.state, ui.REFERRAL_CLIENT)  # type: ignore[attr-defined]
    monkeypatch.setattr(page.app.state.runtime.settings, "referral_url", nothing_listening())  # type: ignore[attr-defined]
    away = await page.get("/ui/api/referrals/inbox", headers=ana)
    assert away.status_code == 503 and away.json()["detail"]["code"] == "REFERRAL_UNREACHABLE"
    assert away.json()["detail"]["message_ro"] and away.json()["detail"]["message_en"]
    # One that answers with a page of HTML instead of JSON.
    monkeypatch.setattr(page.app.state, ui.REFERRAL_CLIENT, lambda: httpx.AsyncClient(  # type: ignore[attr-defined]
        transport=httpx.MockTransport(lambda request: httpx.Response(500, text="<html>oops</html>"))), raising=False)
    odd = await page.get("/ui/api/referrals/ref-1", headers=ana)
    assert odd.status_code == 502 and odd.json()["detail"]["code"] == "REFERRAL_ERROR"


async def test_the_labels_come_from_the_reference_data(page):
    # For people signed in (access.yaml, reference.read), as every other call of the page.
    assert (await page.get("/ui/api/reference")).status_code == 401
    labels = (await page.get("/ui/api/reference", headers=await bearer(page, "cm.ana", ANA_PASSWORD))).json()
    assert labels["categories"]["neglect"]["ro"] and labels["categories"]["neglect"]["en"]
    assert labels["outcomes"]["stays-in-family-with-services"]["en"] == "Child stays in the family, with services"
    assert labels["institutions"]["dgaspc-bc"]
    assert labels["alerts"] == {"urgency": ["P0"], "kinds": sorted(ALERT_KINDS)}
    assert "cnp" not in json.dumps(labels).lower()


async def test_the_pages_reasons_are_the_catalogues(page):
    """The reasons the page offers (to reject, ...) are contracts/reference/referral-reasons.yaml,
    served with their labels and commands; the page's script keeps no list of its own."""
    labels = (await page.get("/ui/api/reference", headers=await bearer(page, "cm.ana", ANA_PASSWORD))).json()
    catalogue = referral_reasons()
    assert list(labels["reasons"]) == list(catalogue)
    for code, reason in catalogue.items():
        assert labels["reasons"][code] == {"ro": reason.label_ro, "en": reason.label_en,
                                           "commands": sorted(reason.commands), "note_required": reason.note_required}
    script = (ROOT / "services" / "notification" / "entrypoints" / "static" / "inbox.js").read_text(encoding="utf-8")
    for code, reason in catalogue.items():
        assert f'"{code}"' not in script and reason.label_ro not in script, code
