"""The referral API for case managers on the real database: the team inbox, claiming
and acting by HTTP with the same rules as Kafka, the case's plan and closure, and the
service directory proposing free places first."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from runtime.db import make_sessions
from runtime.inbox import InboxConsumer
from runtime.outbox import OutboxRelay
from runtime.service import Runtime
from runtime.settings import Settings
from runtime.signing import Keyring, SigningKey
from runtime.tokens import TokenIssuer, TokenVerifier
from services.referral import handlers
from services.referral.entrypoints.http import router
from tests.integration.helpers import migrated_database
from tests.integration.test_referral import CONFIG, case_opened, message, positions

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "referral" / "migrations"
ISSUER = TokenIssuer("http://issuer.test", SigningKey.generate("idp-1"))


def as_person(institution: str, person: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ISSUER.issue(person, institution, list(roles) or ['case-manager'])}"}


@pytest.fixture
async def api(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "referral", MIGRATIONS)
    async with sessions() as session, session.begin():
        await handlers.seed_directory(session, datetime.now(timezone.utc))

    async def on_case(uow, msg):
        await handlers.follow_case(uow, msg, CONFIG)
    cases = InboxConsumer(service="referral", group_id="t", bootstrap="t", sessions=sessions, handler=on_case)
    await cases.process([message("punte.cases", case_opened(), offset=next(positions))])
    runtime = Runtime(name="referral", settings=Settings(), engine=engine, sessions=make_sessions(engine),
                      producer=None, relay=OutboxRelay(engine, None),  # type: ignore[arg-type]
                      verifier=TokenVerifier("http://issuer.test", "punte", ISSUER.jwks()),
                      network_key=None, keyring=Keyring([]))
    app = FastAPI()
    app.include_router(router)
    app.state.runtime = runtime
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://referral.test")
    yield client
    await client.aclose()
    await engine.dispose()


async def test_a_team_works_a_referral_from_its_inbox(api):
    client = api
    ana, ion = as_person("dgaspc-bc", "cm.ana"), as_person("dgaspc-bc", "cm.ion")
    [waiting] = (await client.get("/v1/referrals/inbox?owner=unassigned", headers=ana)).json()
    rid = waiting["referral_id"]
    claimed = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "claim"}, headers=ana)
    taken = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "claim"}, headers=ion)
    assert claimed.status_code == 200 and claimed.json()["owner"] == "cm.ana"
    assert taken.status_code == 409 and taken.json()["detail"]["code"] == "ALREADY_CLAIMED"
    boss = as_person("dgaspc-bc", "sup.maria", "supervisor")
    moved = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "assign", "assignee": "cm.ion"},
                              headers=boss)
    assert moved.json()["owner"] == "cm.ion"
    assert [r["referral_id"] for r in (await client.get("/v1/referrals/inbox?owner=mine", headers=ion)).json()] == [rid]
    early = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "complete"}, headers=ion)
    assert early.status_code == 409 and early.json()["detail"]["code"] == "ILLEGAL_TRANSITION"
    for body in ({"command": "accept"}, {"command": "start"},
                 {"command": "complete", "outcome": "services-provided-legal"}):
        assert (await client.post(f"/v1/referrals/{rid}/commands", json=body, headers=ion)).status_code == 200
    referrer = as_person("isj-bc", "cm.school")
    seen = (await client.get(f"/v1/referrals/{rid}", headers=referrer)).json()
    assert seen["state"] == "completed"
    assert [(h["command"], h["owner"]) for h in seen["history"]][:2] == [("claim", "cm.ana"), ("assign", "cm.ion")]
    outsider = await client.get(f"/v1/referrals/{rid}", headers=as_person("ipj-bc", "cm.police"))
    assert outsider.status_code == 404


async def test_a_case_closes_only_when_its_plan_is_done_and_only_by_its_lead(api):
    client = api
    lead = as_person("dgaspc-bc", "cm.ana")
    not_lead = await client.post("/v1/cases/case-1/close", headers=as_person("spas-colonesti", "cm.x"))
    assert not_lead.status_code == 403 and not_lead.json()["detail"]["code"] == "NOT_CASE_LEAD"
    too_soon = await client.post("/v1/cases/case-1/close", headers=lead)
    assert too_soon.status_code == 409 and too_soon.json()["detail"]["code"] == "CASE_HAS_OPEN_REFERRALS"
    [plan] = (await client.get("/v1/cases/case-1", headers=lead)).json()["plan"]
    await client.post(f"/v1/referrals/{plan['referral_id']}/commands",
                      json={"command": "reject", "reason": "nu este de competența noastră"}, headers=lead)
    closed = await client.post("/v1/cases/case-1/close", headers=lead)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    reopened = await client.post("/v1/cases/case-1/reopen", headers=lead)
    assert reopened.json()["status"] == "open"


async def test_the_directory_proposes_free_places_first_and_says_so(api):
    client = api
    found = (await client.get("/v1/services?category=neglect", headers=as_person("isj-bc", "cm.school"))).json()
    assert found, "services for neglect exist in the directory"
    proposals = [s["proposal"] for s in found]
    order = {"locuri libere / free places": 0, "capacitate necunoscută / capacity unknown": 1}
    ranks = [order.get(p, 2) for p in proposals]
    assert ranks == sorted(ranks)
    assert all("neglect" in s["categories"] for s in found)
