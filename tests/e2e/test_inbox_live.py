"""A case manager's inbox updates live: a report sent by a school appears on the lead's
open event stream within seconds."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from punte.stack import Stack
from runtime.kafka import make_producer
from tests.e2e.conftest import institution_system, sign_in

# On the session's broker: Tansu, and Apache Kafka with --broker kafka (decision 0031).
pytestmark = [pytest.mark.e2e, pytest.mark.broker]


async def test_a_new_referral_appears_on_the_leads_live_inbox(network: Stack):
    token = await sign_in(network, "cm.spas-colonesti")
    producer = make_producer(network.kafka_bootstrap)
    await producer.start()
    school = institution_system(network, "isj-bc", producer)
    report = school.report({
        "reporter": {"institution": "isj-bc", "role": "school-counsellor"}, "channel": "school",
        "child": {"given_name": "Luca", "family_name": "Sinteticu", "birth_date": "2016-09-09",
                  "uat_siruta": 21891, "county": "BC"},
        "risks": [{"category": "school_absenteeism"}], "description": "Date sintetice.",
    })
    received: list[dict] = []

    async def listen() -> None:
        async with httpx.AsyncClient(base_url=network.url("notification"), timeout=None) as client:
            async with client.stream("GET", "/inbox/stream", headers={"Authorization": f"Bearer {token}"}) as events:
                assert events.headers["content-type"].startswith("text/event-stream")
                event = None
                async for line in events.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "entry":
                        entry = json.loads(line[6:])
                        if entry["kind"] == "referral-requested":
                            received.append(entry)
                            return

    try:
        listening = asyncio.create_task(listen())
        await asyncio.sleep(1.5)  # connected before the report is sent
        await school.send(report)
        await asyncio.wait_for(listening, 45)
    finally:
        await producer.stop()
    [entry] = received
    assert entry["institution"] == "spas-colonesti" and entry["urgency"] == "P2"
    assert "Sinteticu" not in json.dumps(entry), "no child's name in what people see"
