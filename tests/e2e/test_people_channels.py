"""People and institutions' systems hear of a case through their channels, on the whole
network: a P0 report reaches the on-call case manager by e-mail (the embedded SMTP
server) and SMS (the file provider), the lead's system by a signed webhook that fails
twice and then gets it, and someone acknowledges it; a P3 report reaches the lead's case
managers by e-mail. Nothing any of them received names the child, gives its CNP or its
address (tests/e2e/conftest.py scans every message again after the last test)."""
from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from punte.mailbox import messages as mailbox_messages
from punte.stack import Stack
from punte.synthetic import synthetic_cnp
from runtime.kafka import make_producer
from runtime.signing import SigningKey
from tests.e2e.conftest import (
    WEBHOOK_INSTITUTION,
    Deliveries,
    WebhookReceiver,
    assert_nothing_identifies_a_child,
    institution_system,
    people_messages,
    sign_in,
    wait_until,
)

# On the session's broker: Tansu, and Apache Kafka with --broker kafka (decision 0031).
pytestmark = [pytest.mark.e2e, pytest.mark.broker]


def report(reporter: str, role: str, channel: str, child: dict, categories: list[str], **more) -> dict:
    return {"reporter": {"institution": reporter, "role": role}, "channel": channel, "child": child,
            "risks": [{"category": c} for c in categories],
            "description": "Copilul locuiește în Strada Exemplului nr. 7, Bacău (date sintetice).", **more}


async def test_a_p0_case_reaches_the_on_call_person_and_the_leads_system(network: Stack,
                                                                         webhook_receiver: WebhookReceiver):
    import random
    from datetime import date

    cnp = synthetic_cnp(random.Random(7), date(2015, 3, 4))
    producer = make_producer(network.kafka_bootstrap)
    await producer.start()
    deliveries = Deliveries(network.kafka_bootstrap)
    await deliveries.start()
    police = institution_system(network, "ipj-bc", producer)
    try:
        sent = police.report(report(
            "ipj-bc", "police-officer", "police-patrol",
            {"cnp": cnp, "given_name": "Sofia", "family_name": "Probescu", "uat_siruta": 20297, "county": "BC"},
            ["trafficking"], immediate_danger=True,
            household={"alleged_abuser_in_household": True}))
        await police.send(sent)

        async def case_opened():
            """the report was answered with its case"""
            return [d["case_id"] for _, d in deliveries.outcome_of(sent.id) if d.get("case_id")]
        # Its own case: other tests on the shared network report P0 trafficking to the DGASPC too.
        [case_id] = await wait_until(case_opened, 60)

        async def referred():
            """the DGASPC was asked to take the case"""
            return [d for who, d in deliveries.notifications("referral-requested") if who == WEBHOOK_INSTITUTION
                    and d["case_id"] == case_id]
        [notice] = await wait_until(referred, 60)
    finally:
        await deliveries.stop()
        await producer.stop()
    notification_id = notice["notification_id"]
    assert notice["do_not_contact"] is True and (notice["urgency"], notice["categories"]) == ("P0", ["trafficking"])

    def mails_about_the_case() -> list:
        return [m for m in mailbox_messages(network.state.maildir) if case_id in str(m["Subject"])]

    async def alerted():
        """the on-call case manager got the alert by e-mail and SMS"""
        sms = [json.loads(line) for line in network.state.sms_file.read_text().splitlines()] \
            if network.state.sms_file.exists() else []
        mails = [m for m in mails_about_the_case() if m["To"] == "caz@dgaspc-bc.example.invalid"]
        texts = [s for s in sms if case_id in s["text"] and s["to"].startswith("+40700")]
        return (mails, texts) if mails and texts else None
    mails, texts = await wait_until(alerted, 60)
    assert mails[0]["Subject"].startswith("[Punte P0] Trimitere nouă / New referral")
    body = mails[0].get_content()
    assert "NU contactați familia" in body and f"{network.url('notification')}/ui#n={notification_id}" in body
    assert "NU contactati familia" in texts[0]["text"]

    async def team_told():
        """the team mailbox is told as well"""
        return any(m["To"] == "echipa@dgaspc-bc.example.invalid" for m in mails_about_the_case())
    await wait_until(team_told, 30)

    # The lead's system: signed CloudEvent over HTTP, 503 twice, then delivered.
    async def hooked():
        """the webhook was delivered after two failures"""
        return [h for h in webhook_receiver.seen if h.headers.get("ce-id") == notification_id and h.answered == 200]
    [hook] = await wait_until(hooked, 60)
    tries = [h for h in webhook_receiver.seen if h.headers.get("ce-id") == notification_id]
    assert {h.headers["punte-delivery-id"] for h in tries} == {hook.headers["punte-delivery-id"]}
    network_key = SigningKey.load(network.state.network_key_file)
    assert hook.headers["ce-keyid"] == network_key.key_id and json.loads(hook.body)["case_id"] == case_id

    # Delivery status per message, then the on-call person acknowledges.
    token = await sign_in(network, "cm.dgaspc-bc")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=network.url("notification"), headers=headers) as client:
        async def recorded():
            """the webhook's delivery is recorded (the receiver answers before the dispatcher commits)"""
            found = (await client.get(f"/inbox/{notification_id}/deliveries")).json()
            return found if all(w["status"] != "pending" for w in found["webhooks"]) else None
        status = await wait_until(recorded, 30)
        assert {(p["person"], p["channel"], p["purpose"], p["status"]) for p in status["people"]} >= {
            ("cm.dgaspc-bc", "email", "alert", "sent"), ("cm.dgaspc-bc", "sms", "alert", "sent"),
            ("team:dgaspc-bc", "email", "notice", "sent")}
        assert [(w["status"], w["attempts"]) for w in status["webhooks"]] == [("delivered", 3)]
        acknowledged = await client.post(f"/inbox/{notification_id}/ack")
        assert acknowledged.status_code == 200
        assert acknowledged.json()["acknowledged_by"] == "cm.dgaspc-bc"
        other = await sign_in(network, "cm.dsp-bc")
        assert (await client.post(f"/inbox/{notification_id}/ack",
                                  headers={"Authorization": f"Bearer {other}"})).status_code == 404

        # Their own preferences, within what the institution allows.
        assert (await client.get("/preferences")).json()["channels"] == ["email"]
        refused = await client.put("/preferences", json={"channels": []})
        assert refused.status_code == 422 and refused.json()["detail"]["code"] == "NO_CHANNEL"
        chosen = await client.put("/preferences", json={"channels": ["email", "sms"], "digest": False})
        assert chosen.status_code == 200 and chosen.json()["own"] is True

    # The operator replays the institution's webhooks: same bytes, same delivery id.
    before = len(webhook_receiver.seen)
    replayed = subprocess.run([sys.executable, "-m", "punte.cli", "webhooks", "replay", WEBHOOK_INSTITUTION,
                               "--id", hook.headers["punte-delivery-id"], "--state-dir", str(network.state_dir)],
                              capture_output=True, text=True, timeout=60)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replayed: 1" in replayed.stdout

    async def replay_arrived():
        """the replayed webhook arrived"""
        return [h for h in webhook_receiver.seen[before:] if h.headers.get("ce-id") == notification_id]
    [again] = await wait_until(replay_arrived, 30)
    assert again.body == hook.body and again.headers["punte-delivery-id"] == hook.headers["punte-delivery-id"]

    assert_nothing_identifies_a_child(people_messages(network, webhook_receiver))


async def test_a_p3_case_reaches_the_leads_case_managers_by_email(network: Stack):
    producer = make_producer(network.kafka_bootstrap)
    await producer.start()
    school = institution_system(network, "isj-bc", producer)
    try:
        sent = school.report(report(
            "isj-bc", "school-counsellor", "school",
            {"given_name": "Matei", "family_name": "Exemplu", "birth_date": "2014-05-05",
             "uat_siruta": 21891, "county": "BC"}, ["school_absenteeism"]))
        await school.send(sent)
    finally:
        await producer.stop()

    async def mailed():
        """the lead's case manager got an e-mail about a new P3 or P2 referral"""
        return [m for m in mailbox_messages(network.state.maildir)
                if m["To"] == "caz@spas-colonesti.example.invalid" and "Trimitere nouă" in str(m["Subject"])]
    found = await wait_until(mailed, 60)
    assert "[Punte P" in str(found[-1]["Subject"])
    assert_nothing_identifies_a_child(people_messages(network))



@pytest.mark.parametrize("leak", [
    "Caz nou: copilul 5150412041230.", "Copilul Sofia, Probescu.", "Adresa: Strada Exemplului nr. 7."])
def test_the_scan_finds_a_cnp_a_name_or_an_address(leak):
    assert_nothing_identifies_a_child([("email", "Caz case-0123456789012345, P0.")])  # a case id is not a CNP
    # nor thirteen digits inside a trace id (what failed a run: a webhook's traceparent header)
    assert_nothing_identifies_a_child([("webhook", "traceparent: 00-ab4561347809518cd0f1e2d3c4b5a697-0123456789abcdef-01")])
    with pytest.raises(AssertionError):
        assert_nothing_identifies_a_child([("sms", leak)])
