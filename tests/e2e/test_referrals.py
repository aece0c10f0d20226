"""Closed-loop referrals end to end through Kafka: a P1 case taken to a completed outcome
with the referrer seeing the feedback, and a P0 referral left unanswered until it
escalates and comes back."""
from __future__ import annotations

import json

import httpx
import pytest

from contracts.events import EventType
from punte.stack import Stack
from runtime.kafka import make_producer
from tests.e2e.conftest import Deliveries, institution_system, sign_in, wait_until
from tests.e2e.test_network import cases_opened

pytestmark = pytest.mark.e2e


def report(reporter: str, categories: list[str], danger: bool = False) -> dict:
    return {
        "reporter": {"institution": reporter, "role": "school-counsellor"}, "channel": "school",
        "child": {"cnp": "6140318041237", "uat_siruta": 21891, "county": "BC"},
        "risks": [{"category": c} for c in categories], "description": "Date sintetice.",
        "immediate_danger": danger,
    }


# On the session's broker: Tansu, and Apache Kafka with --broker kafka (decision 0031). The
# escalation test below runs a network of its own on its own embedded broker: Tansu only.
@pytest.mark.broker
async def test_a_p1_case_goes_from_report_to_a_completed_outcome_the_referrer_sees(network: Stack):
    producer = make_producer(network.kafka_bootstrap)
    await producer.start()
    deliveries = Deliveries(network.kafka_bootstrap)
    await deliveries.start()
    school, dgaspc = (institution_system(network, i, producer)
                      for i in ("isj-bc", "dgaspc-bc"))
    try:
        sent = school.report(report("isj-bc", ["emotional_abuse"]))
        await school.send(sent)

        # The school takes no part in the case: its outcome names none; the network's topic does.
        opened = (await cases_opened(network.kafka_bootstrap, {sent.id}))[sent.id]

        async def referred():
            """the lead received the referral"""
            return [n for w, n in deliveries.notifications("referral-requested")
                    if w == "dgaspc-bc" and n["case_id"] == opened]
        [requested] = await wait_until(referred)
        rid, case_id = requested["referral_id"], requested["case_id"]
        assert requested["urgency"] == "P1"

        steps = [("claim", {"actor": {"person": "cm.dgaspc.ana", "roles": ["case-manager"]}}),
                 ("acknowledge", {}), ("accept", {}), ("start", {}),
                 ("note", {"note": "Evaluare inițială făcută; familia colaborează."}),
                 ("complete", {"outcome": "stays-in-family-with-services"})]
        for name, fields in steps:
            await dgaspc.send(dgaspc.event(EventType.REFERRAL_COMMAND.value,
                                           {"referral_id": rid, "command": name, **fields}))

        def told_to_school():
            return [n for w, n in deliveries.notifications() if w == "isj-bc" and n.get("referral_id") == rid]

        async def completed():
            """the referrer heard of the completed outcome"""
            return [n for n in told_to_school() if n.get("state") == "completed"]
        [done] = await wait_until(completed)
        assert done["outcome"] == "stays-in-family-with-services"
        kinds = [(n["kind"], n.get("state")) for n in told_to_school()]
        assert ("referral-accepted", "accepted") in kinds
        # Told that a note was added, never what it says: the note stays in the case file.
        noted = [n for n in told_to_school() if n.get("note_id")]
        assert noted and all(n.get("note") is None for n in told_to_school())
        assert "familia colaborează" not in json.dumps(told_to_school(), ensure_ascii=False)
        # Every command got its outcome on the lead's delivery topic.
        answered = [e.data for w, e in deliveries.events if w == "dgaspc-bc"
                    and e.type == EventType.OUTCOME.value and e.data.get("referral_id") == rid]
        assert [a["status"] for a in answered] == ["accepted"] * len(steps)

        # The school's case manager sees the same story in the referrals it sent.
        token = await sign_in(network, "cm.isj-bc")
        async with httpx.AsyncClient(base_url=network.url("referral")) as client:
            mine = (await client.get("/v1/referrals/sent", headers={"Authorization": f"Bearer {token}"})).json()
            one = (await client.get(f"/v1/referrals/{rid}", headers={"Authorization": f"Bearer {token}"})).json()
            plan = (await client.get(f"/v1/cases/{case_id}",
                                     headers={"Authorization": f"Bearer {await sign_in(network, 'cm.dgaspc-bc')}"}))
        [ours] = [r for r in mine if r["referral_id"] == rid]
        # The school reported and referred but takes no part in the case: it sees how its
        # referral ended (a summary), not who worked it; the lead sees the whole plan.
        assert (ours["view"], ours["state"], ours["outcome"]) == ("summary", "completed", "stays-in-family-with-services")
        assert ours["owner"] is None and ours["history"] == []
        # It learns that a note exists in the case file, not what the note says.
        assert {n["note_id"] for n in one["notes"]} == {n["note_id"] for n in noted}
        assert all(n["text"] is None for n in one["notes"])
        assert plan.json()["plan"][0]["state"] == "completed"
    finally:
        await deliveries.stop()
        await producer.stop()


FAST = {
    "version": 1,
    "levels": {level: {"clock": "24/7", "acknowledge": "PT2S", "decide": "PT4S", "first_contact": "PT60S",
                       "outcome": "PT120S", "return_after": "PT7S",
                       "escalate_to_coordinator": level in ("P0", "P1")}
               for level in ("P0", "P1", "P2", "P3")},
    "information_request": {"clock": "24/7", "decide": "PT60S", "outcome": "PT60S"},
}


@pytest.fixture(scope="module")
def fast_network(infrastructure, tmp_path_factory):
    """A network of its own (its broker, its databases) whose deadlines run in seconds."""
    root = tmp_path_factory.mktemp("fast")
    (root / "deadlines.json").write_text(json.dumps(FAST))
    stack = Stack(root / "state", database_url=infrastructure.database_url, extra_env={
        "PUNTE_DATABASE_PREFIX": "fast", "PUNTE_REFERRAL_DEADLINES_FILE": str(root / "deadlines.json"),
        "PUNTE_TIMER_POLL_SECONDS": "0.2"})
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


async def test_an_unanswered_p0_referral_escalates_and_returns_to_the_referrer(fast_network: Stack):
    network = fast_network
    producer = make_producer(network.kafka_bootstrap)
    await producer.start()
    deliveries = Deliveries(network.kafka_bootstrap)
    await deliveries.start()
    school = institution_system(network, "isj-bc", producer)
    try:
        sent = school.report(report("isj-bc", ["school_absenteeism"], danger=True))
        await school.send(sent)

        async def returned():
            """the referral came back to the school unanswered"""
            return [n for w, n in deliveries.notifications("referral-returned") if w == "isj-bc"]
        [back] = await wait_until(returned, timeout=60)
        assert back["urgency"] == "P0" and back["state"] == "failed"
        late = [(w, n["referral_id"]) for w, n in deliveries.notifications("referral-overdue")]
        assert ("spas-colonesti", back["referral_id"]) in late, "the lead's supervisor, at level 1"
        assert ("dgaspc-bc", back["referral_id"]) in late, "the county coordinator, at level 2"
    finally:
        await deliveries.stop()
        await producer.stop()
