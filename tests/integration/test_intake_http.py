"""Intake's case API for case managers, on the real database: need to know, and a
person's decision on a possible duplicate."""
from __future__ import annotations

import pytest

from runtime.cloudevents import CloudEvent
from runtime.signing import SigningKey
from services.intake.entrypoints.http import router
from tests.integration.helpers import (
    api_client,
    bearer,
    delivered,
    emitted,
    intake_consumer,
    keyring_of,
    message,
    on_topic,
)

KEY = SigningKey.generate("isj-bc-1")
KEYRING = keyring_of({"isj-bc": KEY})


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
    first, second = [d["case_id"] for d in delivered(await emitted(engine), "isj-bc")]
    client = api_client("intake", router, engine, KEYRING)
    client.engine = engine  # type: ignore[attr-defined]
    yield client, first, second
    await client.aclose()
    await engine.dispose()


def as_manager(institution: str) -> dict[str, str]:
    return bearer(institution, f"cm.{institution}")


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
    accesses = on_topic(await emitted(client.engine), "punte.access")
    assert [(a["actor"], a["actor_institution"], a["case_id"], a["purpose"]) for a in accesses] == [
        ("cm.spas-colonesti", "spas-colonesti", second, "case-work")]  # the default purpose code


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


@pytest.fixture
async def gateway(infrastructure):
    """Intake's HTTP gateway on its database, with no broker: what it refuses never gets
    as far as the gateway topic."""
    _, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    client = api_client("intake", router, engine, KEYRING)
    yield client
    await client.aclose()
    await engine.dispose()


def binary_mode(event: CloudEvent, content_type: str | None) -> dict[str, str]:
    """The event's attributes as ce- headers, its body's media type as given."""
    headers = {k.replace("ce_", "ce-", 1): v.decode() for k, v in event.headers() if k.startswith("ce_")}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return {**headers, **bearer("isj-bc", "sys.isj-bc", "institution-system")}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_binary_mode_refuses_a_body_that_is_not_declared_json(gateway, content_type):
    """The same rule as on Kafka (runtime.cloudevents.decode): the body is application/json."""
    event = named("Elena", "Probescu")
    answer = await gateway.post("/v1/events", content=event.body(), headers=binary_mode(event, content_type))
    assert answer.status_code == 400 and answer.json()["detail"]["code"] == "MALFORMED_ENVELOPE"


async def test_binary_mode_refuses_an_attribute_given_twice(gateway):
    """As on Kafka: which of two ce-id headers counts would depend on the reader."""
    event = named("Elena", "Probescu")
    headers = [*binary_mode(event, "application/json").items(), ("ce-id", "altul")]
    answer = await gateway.post("/v1/events", content=event.body(), headers=headers)
    assert answer.status_code == 400 and answer.json()["detail"]["code"] == "MALFORMED_ENVELOPE"


@pytest.mark.parametrize("source, code", [("/institutions/nu-exista", "UNKNOWN_INSTITUTION"),
                                          ("/institutions/dsp-bc", "SOURCE_MISMATCH")])
async def test_the_gateway_names_an_unknown_source_as_kafka_does(gateway, source, code):
    event = KEY.sign(CloudEvent.new("ro.punte.report.submitted.v2", source, named("Ana", "Probescu").data))
    answer = await gateway.post("/v1/events", content=event.body(), headers=binary_mode(event, "application/json"))
    assert answer.status_code == 403 and answer.json()["detail"]["code"] == code
