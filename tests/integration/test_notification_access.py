"""Who may use the notification service, and what each institution is told, against real
PostgreSQL, a real SMTP server and the file SMS provider (issue #10, items 2 and 10).

- Need to know on every outward path: a police recipient (ipj-bc) of a case with a health
  risk and domestic violence never sees the health risk, whether in its inbox (API and
  stored entries), the web inbox page's referral views, its delivery topic, its webhook,
  its people's e-mails or SMS; an institution the reference does not know sees none.
- Every endpoint asks the one access rule (contracts/reference/access.yaml).
- Limits and ids: out-of-range numbers are 422, ids with control characters 404.
- A case-accessed notice carries the purpose's code and labels, never its free text."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import pytest
import sqlalchemy as sa

from contracts.events import EventType
from contracts.reference import delivery_topic, risk_categories
from runtime.cloudevents import CloudEvent
from runtime.inbox import UnitOfWork
from runtime.outbox import Outbox
from runtime.settings import Settings
from runtime.signing import SigningKey
from services.notification import handlers
from services.notification.adapters.deliveries import webhook_deliveries
from services.notification.adapters.tables import inbox_entries
from services.notification.channels.people import send_due
from services.notification.domain.recipients import Recipients
from services.notification.entrypoints import http, ui
from services.referral.entrypoints import http as referral_http
from tests.integration.helpers import (
    ISSUER,
    NETWORK_KEY,
    TEST_DATA_KEYS,
    bearer,
    emitted,
    message,
    people_channels,
    positions,
    referral_config,
    referral_consumers,
    service_app,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
HEALTH = risk_categories()["health_risk"]
# What would give the health risk away, in either language.
HEALTH_WORDS = ("health_risk", HEALTH.label_ro.lower(), HEALTH.label_en.lower(), "medical", "health")
MAX_INT64 = 2**63 - 1

RECIPIENTS = {
    "institutions": {
        "ipj-bc": {"channels": ["email", "sms"], "webhook": "http://127.0.0.1:9/ipj"},
        "dgaspc-bc": {"channels": ["email"], "webhook": "http://127.0.0.1:9/dgaspc"},
        # Not in the reference data (a typo, or an institution not yet registered).
        "ipj-xx": {"channels": ["email"], "webhook": "http://127.0.0.1:9/ipj-xx"},
    },
    "people": {
        "cm.ipj-bc": {"institution": "ipj-bc", "email": "agent@ipj-bc.example.invalid",
                      "phone": "+40700000011", "channels": ["email", "sms"]},
        "cm.dgaspc-bc": {"institution": "dgaspc-bc", "email": "caz@dgaspc-bc.example.invalid"},
        "cm.ipj-xx": {"institution": "ipj-xx", "email": "agent@ipj-xx.example.invalid"},
    },
}


@pytest.fixture
def config(smtp, tmp_path) -> handlers.Config:
    controller, _ = smtp
    channels = people_channels(controller.port, tmp_path / "sms.jsonl")
    return handlers.Config(labels=risk_categories(), recipients=Recipients.model_validate(RECIPIENTS),
                           channels=channels, network_key=SigningKey.generate("network-test"))


@pytest.fixture
async def referral_api(infrastructure):
    """The real referral API on its own database, holding the case below: what the web
    inbox page's referral views forward to."""
    consumers, engine = await referral_consumers(infrastructure.database_url, referral_config())
    await consumers["cases"].process([message("punte.cases", NETWORK_KEY.sign(case_opened(["ipj-bc"])),
                                              offset=next(positions))])
    yield service_app("referral", engine, referral_http.router)
    await engine.dispose()


@pytest.fixture
async def api(notification_database, config, referral_api):
    engine, _ = notification_database
    app = service_app("notification", engine, http.router, ui.router,
                      settings=Settings(referral_url="http://referral.test"))
    app.state.runtime.extras[http.CONFIG] = config
    app.state.runtime.data_keys = TEST_DATA_KEYS  # webhook secrets are kept sealed
    setattr(app.state, ui.REFERRAL_CLIENT,
            lambda: httpx.AsyncClient(transport=httpx.ASGITransport(referral_api)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                                 base_url="http://notification.test") as client:
        yield client


async def handle(sessions, config, topic: str, event: CloudEvent) -> None:
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session, Outbox(session, None), "/punte/notification", T0)
        await handlers.notify(uow, message(topic, event), config)
        await uow.outbox.flush()


def case_opened(informed: list[str], case_id: str = "case-h") -> CloudEvent:
    return CloudEvent.new(EventType.CASE_OPENED.value, "/punte/intake", {
        "case_id": case_id, "child_ref": "c" * 64, "uat_siruta": 20297,
        "categories": ["health_risk", "domestic_violence"], "urgency": "P1", "lead": "dgaspc-bc",
        "informed": informed, "report_id": "r-1",
        "reporter": {"institution": "spas-colonesti", "role": "social-worker"}, "received_at": T0.isoformat(),
    }, subject=case_id)


def knows_of_health(text: str) -> bool:
    return any(word in text.lower() for word in HEALTH_WORDS)


# ---- need to know, path by path ----------------------------------------------------------------


async def test_the_police_never_see_the_health_risk_on_any_path(notification_database, config, api, smtp,
                                                               tmp_path, referral_api):
    engine, sessions = notification_database
    await handle(sessions, config, "punte.cases", case_opened(["ipj-bc", "dgaspc-bc"]))
    police = bearer("ipj-bc", "cm.ipj-bc")

    # The inbox, as the API shows it and as it is stored.
    [entry] = (await api.get("/inbox", headers=police)).json()["entries"]
    assert entry["categories"] == ["domestic_violence"]
    assert not knows_of_health(entry["summary_ro"] + entry["summary_en"])
    async with sessions() as session:
        stored = (await session.execute(sa.select(inbox_entries).where(
            inbox_entries.c.institution == "ipj-bc"))).mappings().one()
    assert stored["categories"] == ["domestic_violence"]
    assert not knows_of_health(" ".join(str(stored[k]) for k in (
        "summary_ro", "summary_en", "mail_summary_ro", "mail_summary_en")))

    # The delivery topic and the webhook (the same signed event).
    [topic] = [d for t, _, d in await emitted(engine) if t == delivery_topic("ipj-bc")]
    assert topic["categories"] == ["domestic_violence"] and not knows_of_health(json.dumps(topic))
    async with sessions() as session:
        hooks = dict((await session.execute(sa.select(webhook_deliveries.c.institution,
                                                      webhook_deliveries.c.payload))).all())
    assert json.loads(hooks["ipj-bc"])["categories"] == ["domestic_violence"]
    assert not knows_of_health(bytes(hooks["ipj-bc"]).decode())
    assert "health_risk" in json.loads(hooks["dgaspc-bc"])["categories"]  # the lead knows

    # The e-mail and the SMS the police officer gets.
    async with sessions() as session:
        await send_due(session, config.channels, T0)
    _, collector = smtp
    [mail] = [m for _, to, m in collector.received if to == ["agent@ipj-bc.example.invalid"]]
    assert not knows_of_health(str(mail["Subject"]) + mail.get_content())
    [sms] = [json.loads(line) for line in (tmp_path / "sms.jsonl").read_text().splitlines()]
    assert sms["to"] == "+40700000011" and not knows_of_health(sms["text"])

    # The web inbox page's referral views (forwarded from the referral service): the lead
    # asks the police for information on the case, and the police open it from the page.
    lead_token = bearer("dgaspc-bc", "cm.dgaspc-bc")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(referral_api), base_url="http://referral.test") as r:
        asked = await r.post("/v1/referrals", json={"case_id": "case-h", "to": "ipj-bc",
                                                    "kind": "information-request"}, headers=lead_token)
    rid = asked.json()["referral_id"]
    [listed] = (await api.get("/ui/api/referrals/inbox", headers=police)).json()
    one = (await api.get(f"/ui/api/referrals/{rid}", headers=police)).json()
    stepped = (await api.post(f"/ui/api/referrals/{rid}/commands", json={"command": "acknowledge"},
                              headers=police)).json()
    for shown in (listed, one, stepped):
        assert shown["categories"] == ["domestic_violence"], shown
    lead = (await api.get(f"/ui/api/referrals/{rid}", headers=lead_token)).json()
    assert lead["categories"] == ["health_risk", "domestic_violence"]


async def test_an_institution_the_reference_does_not_know_is_told_no_category(notification_database, config,
                                                                              api):
    engine, sessions = notification_database
    await handle(sessions, config, "punte.cases", case_opened(["ipj-xx"]))
    async with sessions() as session:
        stored = (await session.execute(sa.select(inbox_entries))).mappings().one()
        [payload] = (await session.execute(sa.select(webhook_deliveries.c.payload))).scalars()
    assert stored["institution"] == "ipj-xx" and stored["categories"] == []
    assert "risc semnalat" in stored["summary_ro"] and not knows_of_health(stored["summary_ro"])
    assert json.loads(payload)["categories"] == []
    [topic] = [d for t, _, d in await emitted(engine) if t == delivery_topic("ipj-xx")]
    assert topic["categories"] == [] and not knows_of_health(json.dumps(topic))
    [entry] = (await api.get("/inbox", headers=bearer("ipj-xx", "cm.ipj-xx"))).json()["entries"]
    assert entry["categories"] == []


async def test_an_entry_stored_before_the_rule_is_shown_with_only_what_may_be_known(notification_database,
                                                                                    api):
    engine, _ = notification_database
    async with engine.begin() as conn:
        await conn.execute(inbox_entries.insert().values(
            notification_id="n-old", institution="ipj-bc", case_id="case-o", referral_id=None,
            kind="case-informed", urgency="P1", categories=["health_risk", "domestic_violence"],
            summary_ro=f"Caz nou, spre informare (P1): {HEALTH.label_ro.lower()}. Caz case-o",
            summary_en=f"New case, for information (P1): {HEALTH.label_en.lower()}. Case case-o",
            created_at=T0))
    police = bearer("ipj-bc", "cm.ipj-bc")
    [entry] = (await api.get("/inbox", headers=police)).json()["entries"]
    read = (await api.post("/inbox/n-old/read", headers=police)).json()
    for shown in (entry, read):
        assert shown["categories"] == ["domestic_violence"]
        assert not knows_of_health(shown["summary_ro"] + shown["summary_en"])
        assert "case-o" in shown["summary_ro"] and "violență domestică" in shown["summary_ro"]


# ---- the access purpose in notices --------------------------------------------------------------


async def test_a_case_accessed_notice_carries_the_purpose_code_never_its_free_text(notification_database,
                                                                                   config, api, smtp):
    engine, sessions = notification_database
    await handle(sessions, config, "punte.cases", case_opened(["ipj-bc"]))
    free_text = "sesizarea vecinei Ionescu-Test, str. Exemplului 3"
    access = CloudEvent.new(EventType.ACCESS.value, "/punte/intake", {
        "actor": "cm.ipj-bc", "actor_institution": "ipj-bc", "roles": ["case-manager"],
        "purpose": "verification", "purpose_text": free_text, "service": "intake",
        "resource": "/v1/cases/case-h", "case_id": "case-h", "query": {}, "at": T0.isoformat(),
    }, subject="case-h")
    await handle(sessions, config, "punte.access", access)
    [entry] = (await api.get("/inbox", params={"kind": "case-accessed"},
                             headers=bearer("dgaspc-bc", "cm.dgaspc-bc"))).json()["entries"]
    assert "Verificarea unei sesizări" in entry["summary_ro"] and "Verifying a report" in entry["summary_en"]
    async with sessions() as session:
        await send_due(session, config.channels, T0)
        hooks = (await session.execute(sa.select(webhook_deliveries.c.payload))).scalars().all()
    _, collector = smtp
    everything = [json.dumps(entry), *(bytes(h).decode() for h in hooks),
                  *(json.dumps(d) for _, _, d in await emitted(engine)),
                  *(str(m["Subject"]) + m.get_content() for _, _, m in collector.received)]
    assert any("verification" in text or "Verificarea" in text for text in everything)
    for text in everything:
        assert "Ionescu" not in text and "Exemplului" not in text


async def test_an_auditor_opening_a_sealed_value_of_the_case_is_told_to_its_lead(notification_database,
                                                                                 config, api):
    """Break-glass in the audit trail (decision 0016): the lead's inbox says who opened a
    sealed value of its case, when and why; an auditor's plain search tells nobody."""
    engine, sessions = notification_database
    await handle(sessions, config, "punte.cases", case_opened(["ipj-bc"]))
    opened = {"actor": "aud.ana", "actor_institution": None, "roles": ["auditor"], "purpose": "court-request",
              "purpose_text": "dosar Ionescu-Test", "service": "audit", "resource": "/entries/7/value",
              "case_id": "case-h", "query": {"seq": "7"}, "at": T0.isoformat()}
    await handle(sessions, config, "punte.access", CloudEvent.new(
        EventType.ACCESS.value, "/punte/audit", {**opened, "resource": "/entries"}, subject="case-h"))
    await handle(sessions, config, "punte.access", CloudEvent.new(
        EventType.ACCESS.value, "/punte/audit", {**opened, "break_glass": True}, subject="case-h"))
    [entry] = (await api.get("/inbox", params={"kind": "case-accessed"},
                             headers=bearer("dgaspc-bc", "cm.dgaspc-bc"))).json()["entries"]
    assert "aud.ana" in entry["summary_ro"] and "Solicitarea instanței" in entry["summary_ro"]
    assert "Ionescu" not in json.dumps(entry)


# ---- every endpoint asks the access rule ----------------------------------------------------------


async def test_every_endpoint_asks_the_access_rule(notification_database, api):
    engine, _ = notification_database
    async with engine.begin() as conn:
        await conn.execute(webhook_deliveries.insert().values(
            notification_id="n-1", institution="ipj-bc", url="http://127.0.0.1:9/ipj", payload=b"{}",
            headers={}, status="failed", attempts=1, next_attempt_at=T0, created_at=T0))
    manager = bearer("ipj-bc", "cm.ipj-bc", "case-manager")
    supervisor = bearer("ipj-bc", "sup.ipj-bc", "supervisor")
    system = bearer("ipj-bc", "sys.ipj-bc", "institution-system")
    other_supervisor = bearer("dgaspc-bc", "sup.dgaspc-bc", "supervisor")
    operator = {"Authorization": f"Bearer {ISSUER.issue('operator', None, ['operator'])}"}
    auditor = {"Authorization": f"Bearer {ISSUER.issue('aud.ana', None, ['auditor'])}"}

    async def code(method: str, path: str, who: dict | None, **kwargs) -> tuple[int, str | None]:
        answer = await api.request(method, path, headers=who or {}, **kwargs)
        detail = answer.json().get("detail") if answer.headers.get("content-type") == "application/json" else None
        return answer.status_code, detail.get("code") if isinstance(detail, dict) else None

    forbidden = (403, "FORBIDDEN")
    # Auditors and operators have no inbox and no preferences; systems do not act on entries.
    for who in (auditor, operator):
        assert await code("GET", "/inbox", who) == forbidden
        assert await code("GET", "/inbox/n-1/deliveries", who) == forbidden
        assert await code("GET", "/preferences", who) == forbidden
        assert await code("GET", "/ui/api/referrals/inbox", who) == forbidden
    assert await code("GET", "/inbox", system) == (200, None)
    assert await code("POST", "/inbox/n-1/ack", system) == forbidden
    assert await code("POST", "/inbox/n-1/read", system) == forbidden
    assert await code("PUT", "/preferences", system, json={"channels": ["email"]}) == forbidden
    assert await code("GET", "/inbox", None) == (401, "MISSING_TOKEN")

    # The webhook log and its replay: the own institution's, for supervisors and systems;
    # any, for the operator; not for a case manager.
    assert await code("GET", "/webhooks/deliveries", manager) == forbidden
    assert await code("POST", "/webhooks/deliveries/replay", manager, json={"status": "failed"}) == forbidden
    for who in (supervisor, system):
        log = await api.get("/webhooks/deliveries", headers=who)
        assert log.status_code == 200 and [d["notification_id"] for d in log.json()] == ["n-1"]
        assert await code("GET", "/webhooks/deliveries", who, params={"institution": "dgaspc-bc"}) == forbidden
    assert (await api.get("/webhooks/deliveries", headers=other_supervisor)).json() == []
    replay = await api.post("/webhooks/deliveries/replay", json={"ids": [1]}, headers=other_supervisor)
    assert replay.json() == {"replayed": 0}  # another institution's ids match nothing
    log = await api.get("/webhooks/deliveries", params={"institution": "ipj-bc"}, headers=operator)
    assert [d["notification_id"] for d in log.json()] == ["n-1"]
    assert await code("GET", "/webhooks/deliveries", operator) == (422, "INSTITUTION_REQUIRED")
    replayed = await api.post("/webhooks/deliveries/replay", json={"institution": "ipj-bc"}, headers=operator)
    assert replayed.json() == {"replayed": 1}

    # The webhook secret (Standard Webhooks "v1"): made or rotated by the same people, shown
    # once; its status (never the secret) read as the log is. Before it: v1a only.
    status = await api.get("/webhooks/secret", headers=supervisor)
    assert status.json() == {"institution": "ipj-bc", "webhook": True, "secret_created_at": None,
                             "signatures": ["v1a"]}
    assert await code("POST", "/webhooks/secret", manager, json={}) == forbidden
    assert await code("POST", "/webhooks/secret", other_supervisor, json={"institution": "ipj-bc"}) == forbidden
    assert await code("POST", "/webhooks/secret", operator, json={}) == (422, "INSTITUTION_REQUIRED")
    assert await code("POST", "/webhooks/secret", operator, json={"institution": "ipj-xx"}) == (
        422, "UNKNOWN_INSTITUTION")
    first = await api.post("/webhooks/secret", json={}, headers=system)
    assert first.status_code == 201 and first.json()["secret"].startswith("whsec_")
    assert first.json()["signatures"] == ["v1", "v1a"]
    rotated = await api.post("/webhooks/secret", json={"institution": "ipj-bc"}, headers=operator)
    assert rotated.json()["secret"] != first.json()["secret"]
    status = await api.get("/webhooks/secret", params={"institution": "ipj-bc"}, headers=operator)
    assert status.json()["signatures"] == ["v1", "v1a"] and "secret" not in status.json()
    assert status.json()["secret_created_at"] == rotated.json()["secret_created_at"]
    assert await code("GET", "/webhooks/secret", manager) == forbidden

    # The page's labels are for people signed in.
    assert await code("GET", "/ui/api/reference", None) == (401, "MISSING_TOKEN")
    assert await code("GET", "/ui/api/reference", operator) == forbidden
    assert (await api.get("/ui/api/reference", headers=manager)).status_code == 200


# ---- limits and ids ----------------------------------------------------------------------------


async def test_out_of_range_limits_are_422_and_odd_ids_are_not_found(api):
    manager = bearer("ipj-bc", "cm.ipj-bc")
    operator = {"Authorization": f"Bearer {ISSUER.issue('operator', None, ['operator'])}"}
    for path in ("/inbox", "/webhooks/deliveries", "/ui/api/referrals/inbox"):
        who = operator if path.startswith("/webhooks") else manager
        for limit in (-1, 0, 2**63, 2**64 + 5):
            answer = await api.get(path, params={"limit": limit, "institution": "ipj-bc"}, headers=who)
            assert answer.status_code == 422, (path, limit, answer.text)
    for ids in ([2**63], [-1], [1] * 5000):
        answer = await api.post("/webhooks/deliveries/replay", json={"ids": ids, "institution": "ipj-bc"},
                                headers=operator)
        assert answer.status_code == 422, (ids[:2], answer.text)
    for odd in ("n%00", "a%00b", "n%0A1", "%7F"):
        for method, path in (("POST", f"/inbox/{odd}/read"), ("POST", f"/inbox/{odd}/ack"),
                             ("GET", f"/inbox/{odd}/deliveries")):
            answer = await api.request(method, path, headers=manager)
            assert answer.status_code == 404 and answer.json()["detail"]["code"] == "NOT_FOUND", (path, answer.text)
    for institution in ("ipj-bc\x00", "a\nb"):
        answer = await api.get("/webhooks/deliveries", params={"institution": institution}, headers=operator)
        assert answer.status_code == 422 and answer.json()["detail"]["code"] == "INVALID_CHARACTERS"
        replay = await api.post("/webhooks/deliveries/replay", json={"institution": institution}, headers=operator)
        assert replay.status_code == 422 and replay.json()["detail"]["code"] == "INVALID_CHARACTERS"

