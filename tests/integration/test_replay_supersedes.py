"""An operator replays a dead letter once its cause is fixed (decision 0022). When the
message was an institution's report or referral command, its sender had been answered
PROCESSING_FAILED; the replay must apply it and give the sender its real outcome, under
an id of its own, replacing the failure in the service's books. What was wrong: intake
and referral answer a message once, so the replay failed ("failed", an IntegrityError)
and the reporter never learnt what became of its report."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from contracts.reference import delivery_topic, ingress_topic
from punte.institution import sealed_report
from runtime.cloudevents import CloudEvent
from runtime.ingress import AlreadyAnswered, keep_answer, key_by_sender
from runtime.signing import SigningKey
from services.intake import handlers as intake_handlers
from services.intake.adapters.tables import reports
from services.referral import handlers as referral_handlers
from services.referral.adapters.tables import commands
from tests.integration.helpers import (
    T0,
    TEST_REPORT_KEYS,
    case_opened,
    emitted,
    intake_consumer,
    keyring_of,
    message,
    of_type,
    positions,
    referral_config,
    referral_consumers,
)

KEYS = {i: SigningKey.generate(f"{i}-1") for i in ("isj-bc", "dgaspc-bc")}
KEYRING = keyring_of(KEYS)


def report(sender: str = "isj-bc") -> CloudEvent:
    event_id = str(uuid.uuid4())
    written = {
        "reporter": {"institution": sender, "role": "school-counsellor"}, "channel": "school",
        "child": {"cnp": "5150412041230", "given_name": "Andrei", "family_name": "Sinteticu",
                  "uat_siruta": 21891, "county": "BC", "address": "str. Exemplului nr. 1 (sintetic)"},
        "risks": [{"category": "school_absenteeism", "indicators": ["absent trei săptămâni"]}],
        "description": "Date sintetice: absențe repetate.",
    }
    data = sealed_report(written, event_id, TEST_REPORT_KEYS.public_jwks())
    return KEYS[sender].sign(CloudEvent.new("ro.punte.report.submitted.v3", f"/institutions/{sender}",
                                            data, id=event_id))


def answers(out, institution: str) -> list[tuple[str, str, str | None]]:
    """(event id, status, reason code) of every outcome told to ``institution``."""
    return [(h["ce_id"], d["status"], (d.get("reason") or {}).get("code")) for t, h, d in out
            if t == delivery_topic(institution) and h.get("ce_type") == "ro.punte.outcome.v1"]


async def broken(*args, **kwargs):
    raise RuntimeError("the store is down (synthetic fault)")


async def test_a_report_answered_processing_failed_gets_its_real_outcome_once_replayed(infrastructure, monkeypatch):
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    event = report()
    sent = message(ingress_topic("isj-bc"), event, offset=next(positions))
    with monkeypatch.context() as patch:
        patch.setattr(intake_handlers.repository, "link_households", broken)
        await consumer.process([sent])
    [(failed_id, status, code)] = answers(await emitted(engine), "isj-bc")
    assert (status, code) == ("rejected", "PROCESSING_FAILED")

    assert await consumer.replay(sent.position) == "replayed"
    out = await emitted(engine)
    assert [(s, c) for _, s, c in answers(out, "isj-bc")] == [("rejected", "PROCESSING_FAILED"), ("accepted", None)]
    real_id = answers(out, "isj-bc")[1][0]
    assert real_id != failed_id, "the real outcome is a new event, not a repeat the sender would drop"
    [opened] = of_type(out, "ro.punte.case.opened.v1")
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(reports).where(reports.c.message_key == key_by_sender(sent)))).one()
    assert (row.outcome, row.reason_code, row.case_id) == ("accepted", None, opened["case_id"])

    # A second replay changes nothing, nor does the report sent again.
    assert await consumer.replay(sent.position) == "already-replayed"
    await consumer.process([message(ingress_topic("isj-bc"), event, offset=next(positions))])
    assert len(answers(await emitted(engine), "isj-bc")) == 2
    await engine.dispose()


async def test_a_referral_command_answered_processing_failed_is_answered_again_once_replayed(infrastructure,
                                                                                          monkeypatch):
    consumer, engine = await referral_consumers(infrastructure.database_url, referral_config(KEYRING))
    await consumer["cases"].process([message("punte.cases", case_opened(), offset=next(positions))])
    rid = of_type(await emitted(engine), "ro.punte.referral.requested.v1")[-1]["referral_id"]
    acknowledge = KEYS["dgaspc-bc"].sign(CloudEvent.new(
        "ro.punte.referral.command.v1", "/institutions/dgaspc-bc", {"referral_id": rid, "command": "acknowledge"}))
    sent = message(ingress_topic("dgaspc-bc"), acknowledge, offset=next(positions))
    with monkeypatch.context() as patch:
        patch.setattr(referral_handlers, "execute", broken)
        await consumer["commands"].process([sent])
    assert [(s, c) for _, s, c in answers(await emitted(engine), "dgaspc-bc")] == [("rejected", "PROCESSING_FAILED")]

    assert await consumer["commands"].replay(sent.position) == "replayed"
    out = await emitted(engine)
    assert [(s, c) for _, s, c in answers(out, "dgaspc-bc")] == [("rejected", "PROCESSING_FAILED"), ("accepted", None)]
    [moved] = [d for d in of_type(out, "ro.punte.referral.transitioned.v1") if d["command"] == "acknowledge"]
    assert moved["to_state"] == "received"
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(commands).where(commands.c.message_key == key_by_sender(sent)))).one()
    assert (row.outcome, row.reason_code) == ("accepted", None)
    await engine.dispose()


async def test_a_replay_never_overwrites_an_answer_that_was_not_a_failure(infrastructure):
    """Only PROCESSING_FAILED is superseded: an answer that stands is never replaced."""
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    sent = message(ingress_topic("isj-bc"), report(), offset=next(positions))
    await consumer.process([sent])
    key = key_by_sender(sent)
    async with consumer._sessions() as session, session.begin():
        with pytest.raises(AlreadyAnswered):
            await keep_answer(session, reports, {"message_key": key, "outcome": "rejected", "received_at": T0,
                                                 "reason_code": "PROCESSING_FAILED", "answer": {}}, replaying=True)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(reports.c.outcome).where(reports.c.message_key == key))).scalar() == "accepted"
    await engine.dispose()
