"""Intake's case API for case managers, on the real database: need to know, and a
person's decision on a possible duplicate."""
from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest
from fastapi import FastAPI

from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.outbox import OutboxRelay
from runtime.service import Runtime
from runtime.settings import Settings
from runtime.signing import Keyring, PublicKey, SigningKey
from runtime.tokens import TokenIssuer, TokenVerifier
from services.intake.entrypoints.http import router
from tests.integration.helpers import emitted, intake_consumer, message

KEY = SigningKey.generate("isj-bc-1")
KEYRING = Keyring([PublicKey(KEY.key_id, "isj-bc", KEY.public_raw(),
                             datetime(2026, 1, 1, tzinfo=timezone.utc), None)])
ISSUER = TokenIssuer("http://issuer.test", SigningKey.generate("idp-1"))


def named(given: str, family: str) -> CloudEvent:
    return KEY.sign(CloudEvent.new("ro.punte.report.submitted.v2", "/institutions/isj-bc", {
        "reporter": {"institution": "isj-bc", "role": "school-counsellor"}, "channel": "school",
        "child": {"given_name": given, "family_name": family, "birth_date": "2014-05-06",
                  "uat_siruta": 21891, "county": "BC"},
        "risks": [{"category": "bullying"}], "description": "Date sintetice.",
    }))


@pytest.fixture
async def api(infrastructure):
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    await consumer.process([message("punte.ingress.isj-bc", named("Elena", "Probescu"), offset=0),
                            message("punte.ingress.isj-bc", named("Elena", "Probesku"), offset=1)])
    first, second = [d["case_id"] for t, h, d in await emitted(engine) if t == "punte.delivery.isj-bc"]
    app = FastAPI()
    app.include_router(router)
    app.state.runtime = Runtime(
        name="intake", settings=Settings(), engine=engine, sessions=make_sessions(engine), producer=None,
        relay=OutboxRelay(engine, None), verifier=TokenVerifier("http://issuer.test", "punte", ISSUER.jwks()),
        network_key=None, keyring=KEYRING)  # type: ignore[arg-type]
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://intake.test")
    client.engine = engine  # type: ignore[attr-defined]
    yield client, first, second
    await client.aclose()
    await engine.dispose()


def as_manager(institution: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ISSUER.issue(f'cm.{institution}', institution, ['case-manager'])}"}


async def test_the_lead_sees_the_case_without_identity_and_others_do_not(api):
    client, first, second = api
    seen = await client.get(f"/v1/cases/{second}", headers=as_manager("spas-colonesti"))
    assert seen.status_code == 200
    case = seen.json()
    assert case["lead"] == "spas-colonesti" and case["reports"][0]["reporter"] == "isj-bc"
    assert case["possible_duplicates"] == [{"case_id": first, "score": case["possible_duplicates"][0]["score"],
                                            "status": "pending", "decided_by": None}]
    assert "Probesku" not in seen.text and "2014-05-06" not in seen.text
    police = await client.get(f"/v1/cases/{second}", headers=as_manager("ipj-bc"))
    assert police.status_code == 404, "not taking part: the case does not exist for them"
    # The read is on record: who, for which institution, why.
    accesses = [d for t, h, d in await emitted(client.engine) if t == "punte.access"]
    assert [(a["actor"], a["actor_institution"], a["case_id"], a["purpose"]) for a in accesses] == [
        ("cm.spas-colonesti", "spas-colonesti", second, "lucru la caz / case work")]


async def test_only_the_lead_decides_a_possible_duplicate_once(api):
    client, first, second = api
    school = await client.post(f"/v1/cases/{second}/duplicates/{first}", json={"decision": "confirmed"},
                               headers=as_manager("isj-bc"))
    assert school.status_code == 403 and school.json()["detail"]["code"] == "NOT_CASE_LEAD"
    decided = await client.post(f"/v1/cases/{second}/duplicates/{first}", json={"decision": "confirmed"},
                                headers=as_manager("spas-colonesti"))
    again = await client.post(f"/v1/cases/{second}/duplicates/{first}", json={"decision": "dismissed"},
                              headers=as_manager("spas-colonesti"))
    assert decided.status_code == 200 and decided.json()["status"] == "confirmed"
    assert again.status_code == 409 and again.json()["detail"]["code"] == "NOT_PENDING"
    case = (await client.get(f"/v1/cases/{second}", headers=as_manager("spas-colonesti"))).json()
    assert case["possible_duplicates"][0]["status"] == "confirmed"
    assert case["possible_duplicates"][0]["decided_by"] == "cm.spas-colonesti"
