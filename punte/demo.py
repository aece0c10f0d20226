"""The demo network: Bacău institutions send synthetic reports, read their delivery topics,
and accept the referrals they receive, as their own systems would."""
from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from contracts.events import EventType
from contracts.reference import institutions
from punte.institution import InstitutionSystem, fetch_intake_keys
from punte.state import State
from punte.synthetic import reporters, synthetic_report
from runtime.cloudevents import decode
from runtime.kafka import client_options, make_producer
from runtime.settings import Settings

# Outcomes the simulated case managers record (contracts/reference/referral-outcomes.yaml).
OUTCOMES = ["stays-in-family-with-services", "services-provided-psychological",
            "services-provided-educational", "school-reintegration", "not-confirmed"]


@dataclass
class DemoProgress:
    reports_sent: int = 0
    accepted: int = 0
    rejected: int = 0
    referrals_received: int = 0
    referrals_accepted: int = 0
    referrals_completed: int = 0
    notifications: int = 0


async def run_demo(bootstrap: str, state: State, intake_url: str, rate: float = 2.0, limit: int | None = None,
                   on_progress: Callable[[DemoProgress], None] = lambda p: None,
                   seed: int | None = None, client_settings: Settings | None = None) -> DemoProgress:
    """``client_settings``: how the demo's Kafka clients connect (default: the environment);
    on Apache Kafka the demo, which plays every institution at once, is the admin."""
    rng = random.Random(seed)
    progress = DemoProgress()
    producer = make_producer(bootstrap, client_settings)
    await producer.start()
    # Each institution seals its reports to intake's published keys, as a real one would.
    intake_keys = await asyncio.to_thread(fetch_intake_keys, intake_url)
    systems = {i: InstitutionSystem(i, state.institution_key(i), producer, intake_keys=intake_keys)
               for i in institutions()}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=f"punte-demo-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="latest", metadata_max_age_ms=3000, **client_options(client_settings),
    )
    consumer.subscribe(pattern=r"^punte\.delivery\..+")
    await consumer.start()

    async def send_reports() -> None:
        senders = reporters()
        while limit is None or progress.reports_sent < limit:
            reporter = rng.choice(senders)
            data = synthetic_report(rng, reporter)
            if rng.random() < 0.08:  # now and then a mistyped CNP, to show a rejection
                data["child"] = {**data["child"], "cnp": "5100101040019"}  # check digit wrong
            await systems[reporter].send(systems[reporter].report(data))
            progress.reports_sent += 1
            on_progress(progress)
            await asyncio.sleep(rng.expovariate(rate))

    completed: set[str] = set()
    working: set[asyncio.Task] = set()  # referrals being worked, cancelled with the demo

    async def act_on_deliveries() -> None:
        async for record in consumer:
            event = decode(record.headers, record.value)
            recipient = record.topic.removeprefix("punte.delivery.")
            data = event.data
            if event.type == EventType.OUTCOME.value and data.get("subject_type") == EventType.REPORT_SUBMITTED_V3.value:
                if data["status"] == "accepted":
                    progress.accepted += 1
                else:
                    progress.rejected += 1
            elif event.type == EventType.CASE_NOTIFICATION.value:
                progress.notifications += 1
                if data["kind"] == "referral-requested":
                    progress.referrals_received += 1
                    task = asyncio.create_task(work_referral(recipient, data["referral_id"]))
                    working.add(task)
                    task.add_done_callback(working.discard)
                elif data["kind"] == "referral-accepted":
                    progress.referrals_accepted += 1
                elif data.get("state") == "completed" and data["referral_id"] not in completed:
                    completed.add(data["referral_id"])
                    progress.referrals_completed += 1
            on_progress(progress)

    async def work_referral(institution: str, referral_id: str) -> None:
        """The receiving institution works the referral to an outcome, as its staff would."""
        system = systems[institution]
        person = {"person": f"cm.{institution}.demo", "roles": ["case-manager"]}
        steps = [("claim", {"actor": person}), ("accept", {}), ("start", {}),
                 ("note", {"note": "Prima vizită la familie efectuată (demo)."}),
                 ("complete", {"outcome": rng.choice(OUTCOMES)})]
        for command, fields in steps:
            await asyncio.sleep(rng.uniform(0.5, 2.5))
            await system.send(system.event(EventType.REFERRAL_COMMAND.value,
                                           {"referral_id": referral_id, "command": command, **fields}))

    tasks = [asyncio.create_task(send_reports()), asyncio.create_task(act_on_deliveries())]
    try:
        await tasks[0]
        await asyncio.sleep(5)  # let the last answers come back
    finally:
        for task in [*tasks, *working]:
            task.cancel()
        await asyncio.gather(*tasks, *working, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    return progress
