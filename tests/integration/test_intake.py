"""Intake's handler against a real database: every report gets an outcome, bad input a
rejection code, and what cannot be trusted lands in the dead-letter topic."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from runtime.cloudevents import CloudEvent
from runtime.inbox import DEAD_LETTER_TOPIC
from runtime.signing import SigningKey
from services.intake.adapters.tables import cases, reports
from tests.integration.helpers import delivered, emitted, intake_consumer, keyring_of, message, on_topic

SCHOOL, DOCTOR = "isj-bc", "dsp-bc"
KEYS = {i: SigningKey.generate(f"{i}-1") for i in (SCHOOL, DOCTOR)}
KEYRING = keyring_of(KEYS)


def report(**child) -> dict:
    return {
        "reporter": {"institution": SCHOOL, "role": "school-counsellor"},
        "channel": "school",
        "child": child or {"cnp": "5150412041230", "uat_siruta": 21891},
        "categories": ["school_absenteeism"],
        "description": "Absențe repetate (date sintetice).",
    }


def signed(data: dict, sender: str = SCHOOL) -> CloudEvent:
    return KEYS[sender].sign(CloudEvent.new("ro.punte.report.submitted.v1",
                                            f"/institutions/{sender}", data))


@pytest.fixture
async def intake(infrastructure):
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    yield consumer, engine
    await engine.dispose()


async def test_a_valid_report_opens_a_routed_case_and_is_answered(intake):
    consumer, engine = intake
    event = signed(report())
    await consumer.process([message(f"punte.ingress.{SCHOOL}", event)])
    out = await emitted(engine)
    opened, answer = on_topic(out, "punte.cases"), delivered(out, SCHOOL)
    assert len(opened) == 1 and len(answer) == 1
    assert opened[0]["lead"] == "spas-colonesti" and opened[0]["urgency"] == "P2"
    assert set(opened[0]["informed"]) == {"cjrae-bc", "isj-bc"}
    assert answer[0] == {"subject_id": event.id, "subject_type": event.type, "status": "accepted",
                         "case_id": opened[0]["case_id"], "urgency": "P2",
                         "informed": ["spas-colonesti", *opened[0]["informed"]]}
    # Internal topics carry the pseudonym, never the CNP.
    assert "5150412041230" not in json.dumps(out)
    assert opened[0]["child_ref"].startswith("ch-")


async def test_the_same_child_gets_the_same_pseudonym_from_different_reporters(intake):
    consumer, engine = intake
    one = signed(report())
    other_data = {**report(), "reporter": {"institution": DOCTOR, "role": "family-doctor"},
                  "channel": "family-doctor", "categories": ["health_risk"]}
    await consumer.process([message(f"punte.ingress.{SCHOOL}", one, offset=0),
                            message(f"punte.ingress.{DOCTOR}", signed(other_data, DOCTOR), offset=1)])
    async with engine.connect() as conn:
        refs = (await conn.execute(sa.select(cases.c.child_ref))).scalars().all()
    assert len(refs) == 2 and refs[0] == refs[1]


BAD_INPUTS = {
    "MISSING_SIGNATURE": lambda: message(f"punte.ingress.{SCHOOL}", CloudEvent.new(
        "ro.punte.report.submitted.v1", f"/institutions/{SCHOOL}", report())),
    "BAD_SIGNATURE": lambda: message(f"punte.ingress.{SCHOOL}", _forged()),
    "SOURCE_MISMATCH": lambda: message(f"punte.ingress.{SCHOOL}", signed(report() | {
        "reporter": {"institution": DOCTOR, "role": "family-doctor"}}, DOCTOR)),
    "MALFORMED_PAYLOAD": lambda: message(f"punte.ingress.{SCHOOL}", value=b"{not json",
                                         headers=signed(report()).headers()),
    "MALFORMED_ENVELOPE": lambda: message(f"punte.ingress.{SCHOOL}", value=b"{}", headers=[]),
    "SCHEMA_VIOLATION": lambda: message(f"punte.ingress.{SCHOOL}", signed({**report(), "categories": []})),
    "UNKNOWN_EVENT_TYPE": lambda: message(f"punte.ingress.{SCHOOL}", KEYS[SCHOOL].sign(
        CloudEvent.new("ro.punte.report.deleted.v1", f"/institutions/{SCHOOL}", {}))),
    "INVALID_CNP": lambda: message(f"punte.ingress.{SCHOOL}", signed(report(cnp="5150412041231", uat_siruta=21891))),
    "UNKNOWN_UAT": lambda: message(f"punte.ingress.{SCHOOL}", signed(report(cnp="5150412041230", uat_siruta=999999))),
    "CHILD_NOT_IDENTIFIABLE": lambda: message(f"punte.ingress.{SCHOOL}", signed(report(given_name="Ana", uat_siruta=21891))),
    "UAT_COUNTY_CONFLICT": lambda: message(f"punte.ingress.{SCHOOL}", KEYS[SCHOOL].sign(CloudEvent.new(
        "ro.punte.report.submitted.v2", f"/institutions/{SCHOOL}", {
            "reporter": {"institution": SCHOOL, "role": "school-counsellor"}, "channel": "school",
            "child": {"cnp": "5150412041230", "uat_siruta": 20297, "county": "NT"},
            "risks": [{"category": "school_absenteeism"}], "description": "Date sintetice."}))),
    # Over PUNTE_INGRESS_MAX_MESSAGE_BYTES (256 KiB), as over HTTP: refused before the body
    # is parsed or its signature computed (these bytes are neither JSON nor signed).
    "TOO_LARGE": lambda: message(f"punte.ingress.{SCHOOL}", value=b"x" * (300 * 1024),
                                 headers=signed(report()).headers()),
    # A reporter in no institutions.csv is unknown; one naming another known institution
    # is a mismatch (issue #16). So is a ce_source naming no institution on a known topic.
    "UNKNOWN_INSTITUTION/reporter": lambda: message(f"punte.ingress.{SCHOOL}", signed(report() | {
        "reporter": {"institution": "nu-exista", "role": "school-counsellor"}})),
    "SOURCE_MISMATCH/reporter": lambda: message(f"punte.ingress.{SCHOOL}", signed(report() | {
        "reporter": {"institution": DOCTOR, "role": "family-doctor"}})),
    "UNKNOWN_INSTITUTION/ce_source": lambda: message(f"punte.ingress.{SCHOOL}", KEYS[SCHOOL].sign(
        CloudEvent.new("ro.punte.report.submitted.v1", "/institutions/nu-exista", report()))),
}
# What cannot be read or trusted also goes to the dead-letter topic.
DEAD_LETTERED = {"MISSING_SIGNATURE", "BAD_SIGNATURE", "SOURCE_MISMATCH", "MALFORMED_PAYLOAD",
                 "MALFORMED_ENVELOPE", "SCHEMA_VIOLATION", "UNKNOWN_EVENT_TYPE",
                 "UNKNOWN_INSTITUTION/ce_source", "TOO_LARGE"}


def _forged() -> CloudEvent:
    genuine = signed(report())
    tampered = {**genuine.data, "categories": ["school_absenteeism", "bullying"]}
    return CloudEvent(genuine.id, genuine.source, genuine.type, genuine.time, tampered,
                      genuine.subject, genuine.extensions)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
async def test_bad_input_is_rejected_with_its_code(intake, case):
    consumer, engine = intake
    code = case.split("/")[0]  # "CODE/what": one more input refused with CODE
    sent = BAD_INPUTS[case]()
    await consumer.process([sent])
    out = await emitted(engine)
    answers = delivered(out, SCHOOL)
    assert len(answers) == 1
    assert answers[0]["status"] == "rejected" and answers[0]["reason"]["code"] == code
    # The answer names what it answers: the ce_id, or for a message without one its
    # position, "@<topic>/<partition>/<offset>" (docs/contracts.md).
    expected = sent.header("ce_id") or f"@{sent.topic}/{sent.partition}/{sent.offset}"
    assert answers[0]["subject_id"] == expected and answers[0]["subject_type"] == sent.header("ce_type")
    if not sent.headers:
        assert answers[0]["subject_id"] == f"@punte.ingress.{SCHOOL}/0/0" and answers[0]["subject_type"] is None
    assert answers[0]["reason"]["message_ro"] and answers[0]["reason"]["message_en"]
    dead = on_topic(out, DEAD_LETTER_TOPIC)
    assert [d["reason"]["code"] for d in dead] == ([code] if case in DEAD_LETTERED else [])
    assert not on_topic(out, "punte.cases")
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(reports))).one()
    assert (row.outcome, row.reason_code) == ("rejected", code)
