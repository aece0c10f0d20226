"""The embedded broker killed with SIGKILL mid-run loses its log (it keeps it in memory): the
supervisor starts a new, empty one on the same port and rebuilds it (topics, a new epoch),
the services notice the epoch by themselves (republish, read from the beginning), the
institutions resend what was not answered, and every report is answered exactly once, every
new case reaches its lead once, and the audit verifies. On a Stack of its own (decision
0026): the shared `network` is not disturbed."""
from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict

import pytest
from typer.testing import CliRunner

from contracts.events import EventType
from punte import faults
from punte.cli import app as cli
from punte.stack import SERVICES, RestartPolicy, Stack
from punte.status import collect
from punte.synthetic import reporters, synthetic_report
from runtime import broker_epoch
from runtime.cloudevents import CloudEvent
from runtime.kafka import make_producer
from tests.e2e.conftest import Deliveries, institution_system, wait_until
from tests.e2e.test_network import cases_opened

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("broker-loss") / "state",
                  restart_policy=RestartPolicy(first_delay=0.2, max_delay=2.0),
                  extra_env={"PUNTE_BROKER_EPOCH_CHECK_SECONDS": "1"})
    try:
        yield stack.start()
    finally:
        stack.stop()


async def test_a_broker_killed_mid_run_is_rebuilt_and_every_report_is_answered_exactly_once(own_stack: Stack):
    stack = own_stack
    bootstrap = stack.kafka_bootstrap
    assert bootstrap is not None
    first_epoch = await broker_epoch.read(bootstrap)
    assert first_epoch is not None
    producer = make_producer(bootstrap)
    await producer.start()
    systems = {i: institution_system(stack, i, producer) for i in reporters()}
    rng = random.Random(26)
    sent: list[tuple[str, CloudEvent]] = []
    outage = asyncio.Event()

    async def send_reports(count: int) -> None:
        for _ in range(count):
            if outage.is_set():  # an institution's system retries later what it could not send
                return
            reporter = rng.choice(list(systems))
            event = systems[reporter].report(synthetic_report(rng, reporter))
            await systems[reporter].send(event)
            sent.append((reporter, event))
            await asyncio.sleep(0.1)

    before = Deliveries(bootstrap)
    await before.start()
    after: Deliveries | None = None
    try:
        await send_reports(15)
        outage.set()
        await asyncio.sleep(1)
        await before.stop()  # what the institutions read of the old log, which is lost now:
        faults.kill_broker(stack)

        async def restarted() -> bool:
            """the supervisor started the broker again and rebuilt it"""
            watch = stack.supervision()["broker"]
            return watch["state"] == "running" and watch["restarts"] == 1
        await wait_until(restarted, timeout=60)
        second_epoch = await broker_epoch.read(bootstrap)
        assert second_epoch is not None and second_epoch.id != first_epoch.id

        async def on_the_new_epoch() -> bool:
            """every service reads the new epoch"""
            return (await collect(stack.state))["consistent"]["every_service_on_the_broker_epoch"]
        await wait_until(on_the_new_epoch, timeout=90)

        after = Deliveries(bootstrap)
        await after.start()
        outage.clear()
        await send_reports(10)

        def outcomes() -> dict[str, set[str]]:
            found: dict[str, set[str]] = defaultdict(set)
            for deliveries in (before, after):
                for _, event in deliveries.events:
                    if event.type == EventType.OUTCOME.value:
                        found[event.data["subject_id"]].add(event.id)
            return found

        # Institutions resend (same ids) every report they have no answer to.
        answered = outcomes()
        for reporter, event in sent:
            if not answered.get(event.id):
                await systems[reporter].send(event)

        async def all_answered() -> bool:
            """every report sent before and after the loss has its outcome"""
            found = outcomes()
            return all(found.get(e.id) for _, e in sent)
        await wait_until(all_answered, timeout=120)

        # By hand too, twice (an operator after a lost cluster): nothing more happens.
        runner = CliRunner()
        for _ in range(2):
            result = await asyncio.to_thread(runner.invoke, cli, ["replay", "--state-dir", str(stack.state_dir)])
            assert result.exit_code == 0, result.output
            assert second_epoch.id in result.output
            assert result.output.count("already on it") == len(SERVICES), result.output

        cases = await cases_opened(bootstrap, {e.id for _, e in sent})

        async def leads_told() -> bool:
            """every case's lead got its referral"""
            told = {n["case_id"] for _, n in after.notifications("referral-requested")}
            return set(cases.values()) <= told
        await wait_until(leads_told, timeout=120)

        trail: dict = {}

        async def verified() -> bool:
            """the audit trail verifies against the new log"""
            trail.update((await collect(stack.state))["audit"])
            return trail.get("state") == "verified"
        try:
            await wait_until(verified, timeout=120)
        except AssertionError as exc:
            raise AssertionError(json.dumps({k: v for k, v in trail.items() if k != "gaps"})[:3000]) from exc
        await asyncio.sleep(2)  # anything doubled would have come by now

        found = outcomes()
        assert {e.id: len(found[e.id]) for _, e in sent} == {e.id: 1 for _, e in sent}, "a report answered twice"
        referred: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for deliveries in (before, after):
            for who, event in deliveries.events:
                if event.type == EventType.CASE_NOTIFICATION.value and event.data["kind"] == "referral-requested":
                    referred[event.data["case_id"]].add((who, event.id))
        assert {c: len(referred[c]) for c in cases.values()} == {c: 1 for c in cases.values()}, \
            "a lead told twice, or not at all"
        status = await collect(stack.state)
        assert status["consistent"]["every_report_has_an_outcome"], json.dumps(status["counts"])
        assert status["components"]["broker"]["supervisor"]["restarts"] == 1
        assert all(e["changes"] == 1 for e in status["broker_epochs"].values()), status["broker_epochs"]
    finally:
        if after is not None:
            await after.stop()
        await producer.stop()
