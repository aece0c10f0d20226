"""Report v3, sealed at the source (issue #11): the child's identity, the household, the
description and the indicators travel as a JWE only intake opens; intake opens it, checks
it belongs to the report, and assesses and routes as for v2. A sealed part it cannot open,
that breaks its schema, or that belongs to another report is refused without repeating it.
Reports in clear stay accepted until the operator ends the transition."""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from joserfc import jwe
from joserfc.jwk import ECKey

from contracts.reference import ingress_topic
from punte.institution import InstitutionSystem, seal, sealed_report
from runtime.cloudevents import CloudEvent
from runtime.kafka import ensure_topics, make_producer
from runtime.settings import Settings
from runtime.signing import SigningKey
from services.intake.adapters.report_keys import ReportKeys, new_key, write_key_file
from services.intake.adapters.tables import cases, identities
from services.intake.adapters.vault import Sealed
from services.intake.entrypoints.http import keys as keys_router
from services.intake.entrypoints.http import router
from tests.integration.helpers import (
    ROOT,
    TEST_REPORT_KEYS,
    TEST_REPORT_KEYS_FILE,
    bearer,
    delivered,
    emitted,
    intake_consumer,
    keyring_of,
    message,
    on_topic,
    positions,
    read_topic,
    service_app,
)

V2, V3 = "ro.punte.report.submitted.v2", "ro.punte.report.submitted.v3"
COLONESTI = 21891
KEYS = {i: SigningKey.generate(f"{i}-1") for i in ("isj-bc", "dsp-bc", "spas-colonesti")}
KEYRING = keyring_of(KEYS)
CHILD_CNP, SIBLING_CNP = "5150412041230", "6170903041234"
DESCRIPTION = "Copilul Sinteticu Andrei lipsește de la școală de trei săptămâni (date sintetice)."
INDICATOR = "nu a venit la ore din 3 martie"
PUBLIC_JWKS = TEST_REPORT_KEYS.public_jwks()
SEAL_SCRIPT = ROOT / "contracts" / "tools" / "seal-report.mjs"


def written_as_v2(sender: str = "isj-bc") -> dict:
    return {
        "reporter": {"institution": sender, "role": "school-counsellor"},
        "channel": "school",
        "child": {"cnp": CHILD_CNP, "given_name": "Andrei", "family_name": "Sinteticu",
                  "uat_siruta": COLONESTI, "county": "BC", "address": "str. Exemplului nr. 1, Colonești"},
        "household": {"siblings": [{"cnp": SIBLING_CNP}]},
        "risks": [{"category": "school_absenteeism", "indicators": [INDICATOR]}],
        "description": DESCRIPTION,
    }


def v3_event(sender: str = "isj-bc", data: dict | None = None, event_id: str | None = None) -> CloudEvent:
    event_id = event_id or str(uuid.uuid4())
    data = data if data is not None else sealed_report(written_as_v2(sender), event_id, PUBLIC_JWKS)
    return KEYS[sender].sign(CloudEvent.new(V3, f"/institutions/{sender}", data, id=event_id))


def with_plaintext(plaintext: dict, sender: str = "isj-bc", event_id: str | None = None,
                   jwks: dict | None = None) -> CloudEvent:
    """A v3 report whose sealed part is ``plaintext`` as given (to break it on purpose)."""
    event_id = event_id or str(uuid.uuid4())
    data = sealed_report(written_as_v2(sender), event_id, PUBLIC_JWKS)
    data["sealed"] = seal(plaintext, jwks or PUBLIC_JWKS)
    return v3_event(sender, data, event_id)


def plaintext_for(event_id: str, sender: str = "isj-bc", **changes) -> dict:
    return {"report": {"id": event_id, "institution": sender},
            "child": {"cnp": CHILD_CNP}, "description": DESCRIPTION, **changes}


@pytest.fixture
async def intake(infrastructure):
    consumer, engine, service = await intake_consumer(infrastructure.database_url, KEYRING)
    yield consumer, engine, service
    await engine.dispose()


async def send(consumer, event: CloudEvent, sender: str = "isj-bc") -> None:
    await consumer.process([message(ingress_topic(sender), event, offset=next(positions))])


def refusal(out, sender: str = "isj-bc") -> tuple[str, str]:
    [answer] = delivered(out, sender)
    assert answer["status"] == "rejected"
    return answer["reason"]["code"], answer["reason"]["message_en"]


@pytest.mark.broker
async def test_the_ingress_topic_carries_no_identity_nor_story(infrastructure):
    """What was wrong: a report's CNP, names, address and description were readable by
    anyone who reads the ingress topic. An institution's system now sends them sealed."""
    topic = ingress_topic("isj-bc")
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    try:
        school = InstitutionSystem("isj-bc", KEYS["isj-bc"], producer, intake_keys=PUBLIC_JWKS)
        sent = school.report(written_as_v2())
        await school.send(sent)
    finally:
        await producer.stop()
    [record] = [r for r in await read_topic(infrastructure.kafka_bootstrap, topic, 1000, timeout=5)
                if dict(r.headers).get("ce_id") == sent.id.encode()]
    assert dict(record.headers)["ce_type"] == V3.encode()
    for secret in (CHILD_CNP, SIBLING_CNP, "Sinteticu", "Exemplului", DESCRIPTION[:20], INDICATOR):
        assert secret.encode() not in record.value, secret
    clear = json.loads(record.value)
    assert clear["child"] == {"uat_siruta": COLONESTI, "county": "BC"}
    assert clear["risks"] == [{"category": "school_absenteeism"}]


async def test_a_sealed_report_is_opened_assessed_and_routed(intake):
    consumer, engine, service = intake
    sent = v3_event()
    await send(consumer, sent)
    out = await emitted(engine)
    [answer] = delivered(out, "isj-bc")
    assert answer["status"] == "accepted" and answer["subject_type"] == V3
    [opened] = on_topic(out, "punte.cases")
    assert opened["lead"] == "spas-colonesti" and opened["categories"] == ["school_absenteeism"]
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(identities))).one()
        assert (await conn.scalar(sa.select(sa.func.count()).select_from(cases))) == 1
    identity = service.vault.open(Sealed(row.key_id, row.nonce, row.ciphertext), row.child_ref)
    assert identity["cnp"] == CHILD_CNP and identity["family_name"] == "Sinteticu"
    assert identity["address"].startswith("str. Exemplului")
    assert CHILD_CNP not in str(out) and DESCRIPTION[:20] not in str(out)


async def test_a_report_sealed_to_an_earlier_key_still_opens_during_a_rotation(infrastructure, tmp_path):
    """Several keys: the first is current and published first; the others still open."""
    write_key_file(tmp_path / "keys.jwks", [new_key("intake-enc-2"),
                                            *json.loads(TEST_REPORT_KEYS_FILE.read_text())["keys"]])
    rotated = ReportKeys.load(tmp_path / "keys.jwks")
    assert [k["kid"] for k in rotated.public_jwks()["keys"]] == ["intake-enc-2", "intake-test-1"]
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING, report_keys=rotated)
    try:
        await send(consumer, v3_event())  # sealed to intake-test-1, the earlier key
        [answer] = delivered(await emitted(engine), "isj-bc")
        assert answer["status"] == "accepted"
    finally:
        await engine.dispose()


async def test_a_sealed_part_copied_from_another_institutions_report_is_refused(intake):
    consumer, engine, _ = intake
    theirs = v3_event("dsp-bc", data=None)
    mine = v3_event("isj-bc", data={**theirs.data, "reporter": {"institution": "isj-bc", "role": "x"}})
    await send(consumer, mine)
    assert refusal(await emitted(engine))[0] == "SEALED_MISMATCH"


@pytest.mark.parametrize("reporter, code", [("nu-exista", "UNKNOWN_INSTITUTION"), ("dsp-bc", "SOURCE_MISMATCH")])
async def test_the_clear_reporter_is_checked_before_the_sealed_part_is_opened(intake, reporter, code):
    """A v3 report whose clear reporter is wrong and whose sealed part belongs to another
    report gets the reporter's code: intake opens no sealed part of a report it refuses."""
    consumer, engine, _ = intake
    theirs = v3_event("dsp-bc", data=None)  # SEALED_MISMATCH for isj-bc, were it opened
    mine = v3_event("isj-bc", data={**theirs.data, "reporter": {"institution": reporter, "role": "x"}})
    await send(consumer, mine)
    assert refusal(await emitted(engine))[0] == code


async def test_a_sealed_part_of_another_report_of_the_same_sender_is_refused(intake):
    consumer, engine, _ = intake
    earlier = v3_event()
    await send(consumer, v3_event(data=earlier.data))  # same sealed part, a new ce_id
    assert refusal(await emitted(engine))[0] == "SEALED_MISMATCH"


async def test_indicators_for_a_category_the_report_does_not_name_are_refused(intake):
    consumer, engine, _ = intake
    event_id = str(uuid.uuid4())
    await send(consumer, with_plaintext(plaintext_for(event_id, indicators={"sexual_abuse": ["x"]}),
                                        event_id=event_id))
    assert refusal(await emitted(engine))[0] == "SEALED_MISMATCH"


async def test_a_sealed_part_intake_cannot_open_is_refused_without_repeating_it(intake):
    consumer, engine, _ = intake
    stranger = ECKey.generate_key("P-256", parameters={"kid": "intake-test-1", "use": "enc",
                                                        "alg": "ECDH-ES+A256KW"}, private=True)
    intakes = ECKey.import_key(PUBLIC_JWKS["keys"][0])

    def direct_ecdh(body: dict) -> str:  # intake's key, but an algorithm it does not take
        return jwe.encrypt_compact({"alg": "ECDH-ES", "enc": "A256GCM", "kid": "intake-test-1"},
                                   json.dumps(body).encode(), intakes, algorithms=["ECDH-ES", "A256GCM"])

    sealers = [
        lambda body: seal(body, {"keys": [stranger.as_dict(private=False)]}),  # right kid, wrong key
        lambda body: seal(body, {"keys": [{**PUBLIC_JWKS["keys"][0], "kid": "someone-else"}]}),
        direct_ecdh,
        lambda body: "a.b.c.d.e",
    ]
    sent = []
    for sealer in sealers:
        event_id = str(uuid.uuid4())
        sent.append(sealer(plaintext_for(event_id)))
        await send(consumer, v3_event(data={**v3_event(event_id=event_id).data, "sealed": sent[-1]}, event_id=event_id))
    answers = delivered(await emitted(engine), "isj-bc")
    assert [a["reason"]["code"] for a in answers] == ["SEALED_UNREADABLE"] * 4
    for answer, sealed in zip(answers, sent, strict=True):
        assert sealed not in str(answer) and CHILD_CNP not in str(answer)


async def test_a_sealed_part_breaking_its_schema_is_refused_naming_the_rule_not_the_value(intake):
    consumer, engine, _ = intake
    event_id = str(uuid.uuid4())
    await send(consumer, with_plaintext(plaintext_for(event_id, child={"cnp": "12345 Sinteticu"}),
                                        event_id=event_id))
    code, message_en = refusal(await emitted(engine))
    assert code == "SEALED_INVALID" and "child/cnp" in message_en
    assert "Sinteticu" not in message_en


async def test_reports_in_clear_stay_accepted_until_the_operator_ends_the_transition(infrastructure):
    clear = KEYS["isj-bc"].sign(CloudEvent.new(V2, "/institutions/isj-bc", written_as_v2()))
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    try:
        await send(consumer, clear)
        assert delivered(await emitted(engine), "isj-bc")[0]["status"] == "accepted"
    finally:
        await engine.dispose()
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING, accept_clear=False)
    try:
        await send(consumer, clear)
        await send(consumer, v3_event())
        first, second = delivered(await emitted(engine), "isj-bc")
        assert first["reason"]["code"] == "CLEAR_REPORT_RETIRED"
        assert second["status"] == "accepted"
    finally:
        await engine.dispose()


async def test_the_http_gateway_refuses_reports_in_clear_once_the_transition_ended(infrastructure, intake):
    _, engine, _ = intake
    app = service_app("intake", engine, router, keyring=KEYRING, settings=Settings(accept_clear_reports=False))
    clear = KEYS["isj-bc"].sign(CloudEvent.new(V2, "/institutions/isj-bc", written_as_v2()))
    headers = {f"ce-{k.removeprefix('ce_')}": v.decode() for k, v in clear.headers() if k.startswith("ce_")}
    headers["Content-Type"] = "application/json"

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://intake.test") as client:
        answer = await client.post("/v1/events", content=clear.body(),
                                   headers={**headers, **bearer("isj-bc", "sys.isj-bc", "institution-system")})
    assert answer.status_code == 422 and answer.json()["detail"]["code"] == "CLEAR_REPORT_RETIRED"


async def test_intake_publishes_its_public_keys_to_anyone(intake):
    """What was wrong: intake had no key an institution could seal a report to."""
    _, engine, _ = intake
    app = service_app("intake", engine, keys_router, keyring=KEYRING)
    app.state.runtime.extras["report_keys"] = TEST_REPORT_KEYS

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://intake.test") as client:
        answer = await client.get("/.well-known/jwks.json")  # no token
    assert answer.status_code == 200
    [key] = answer.json()["keys"]
    assert (key["kid"], key["use"], key["alg"], key["kty"], key["crv"]) == (
        "intake-test-1", "enc", "ECDH-ES+A256KW", "EC", "P-256")
    assert "d" not in key


@pytest.mark.skipif(shutil.which("node") is None, reason="node is required")
@pytest.mark.broker
async def test_a_report_sealed_by_the_npm_jose_package_is_opened_and_routed(infrastructure, intake, tmp_path):
    """An independent JOSE implementation (the `jose` npm package) seals at test time; the
    signed v3 report goes over the real broker and intake opens and routes it."""
    if not (ROOT / "contracts" / "tools" / "node_modules" / "jose").is_dir():
        pytest.skip("contracts/tools/node_modules/jose is missing: cd contracts/tools && npm install")
    consumer, engine, _ = intake
    event_id = str(uuid.uuid4())
    plaintext = {"report": {"id": event_id, "institution": "spas-colonesti"},
                 "child": {"given_name": "Ioana", "family_name": "Exemplu", "birth_date": "2016-05-14",
                           "sex": "F"},
                 "description": "Părinții sunt plecați în străinătate (date sintetice).",
                 "indicators": {"parents_abroad": ["locuiește cu bunica"]}}
    (tmp_path / "jwks.json").write_text(json.dumps(PUBLIC_JWKS))
    sealed = subprocess.run(["node", str(SEAL_SCRIPT), str(tmp_path / "jwks.json")], check=True,
                            input=json.dumps(plaintext).encode(), capture_output=True, timeout=60).stdout.decode().strip()
    data = {"reporter": {"institution": "spas-colonesti", "role": "social-worker"}, "channel": "social-worker",
            "child": {"uat_siruta": COLONESTI, "county": "BC"}, "risks": [{"category": "parents_abroad"}],
            "sealed": sealed}
    sent = KEYS["spas-colonesti"].sign(CloudEvent.new(V3, "/institutions/spas-colonesti", data, id=event_id))
    topic = ingress_topic("spas-colonesti")
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    try:
        await InstitutionSystem("spas-colonesti", KEYS["spas-colonesti"], producer).send(sent)
    finally:
        await producer.stop()
    [record] = [r for r in await read_topic(infrastructure.kafka_bootstrap, topic, 1000, timeout=5)
                if dict(r.headers).get("ce_id") == event_id.encode()]
    await consumer.process([message(topic, value=record.value, headers=list(record.headers),
                                    offset=record.offset)])
    out = await emitted(engine)
    [answer] = delivered(out, "spas-colonesti")
    assert answer["status"] == "accepted", answer
    [opened] = on_topic(out, "punte.cases")
    assert opened["lead"] == "spas-colonesti" and opened["categories"] == ["parents_abroad"]


def test_report_keys_file_is_where_the_settings_say() -> None:
    assert Settings(state_dir=Path("/s")).resolved_intake_encryption_keys_file() == Path(
        "/s/keys/intake-encryption.jwks")
