"""Every service killed with SIGKILL at once while reports flow comes back by itself,
`punte status` says each was restarted, and every report still gets exactly one outcome.
On a Stack of its own (its own embedded PostgreSQL and broker): the shared `network` is not
disturbed."""
from __future__ import annotations

import asyncio
import errno
import json
import random
import socket
from collections import defaultdict

import httpx
import pytest

from contracts.events import EventType
from punte import faults
from punte.stack import SERVICES, RestartPolicy, Stack
from punte.status import collect
from punte.synthetic import reporters, synthetic_report
from runtime.kafka import make_producer
from tests.e2e.conftest import Deliveries, institution_system, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    # A quicker backoff than `punte up`'s, and giving up after two failed starts, not five
    # (each start of a service costs seconds of imports): giving up takes seconds, not a minute.
    stack = Stack(tmp_path_factory.mktemp("supervised") / "state",
                  restart_policy=RestartPolicy(first_delay=0.2, max_delay=2.0, give_up_after=2))
    try:
        yield stack.start()
    finally:
        stack.stop()


async def test_services_killed_at_once_come_back_and_every_report_gets_exactly_one_outcome(own_stack: Stack):
    stack = own_stack
    producer = make_producer(stack.kafka_bootstrap)
    await producer.start()
    deliveries = Deliveries(stack.kafka_bootstrap)
    await deliveries.start()
    systems = {i: institution_system(stack, i, producer) for i in reporters()}
    rng = random.Random(12)
    sent: list[str] = []
    sending = True

    async def send_reports() -> None:
        while sending:
            reporter = rng.choice(list(systems))
            event = systems[reporter].report(synthetic_report(rng, reporter))
            await systems[reporter].send(event)
            sent.append(event.id)
            await asyncio.sleep(0.25)

    sender = asyncio.create_task(send_reports())
    try:
        # Every service killed at once, while reports flow: each comes back by itself. (One
        # after the other, each waiting for the last, cost a minute of the suite; the chaos
        # test kills them one at a time.)
        killed = {name: faults.kill_service(stack, name) for name in SERVICES}
        for name in SERVICES:
            # Its port stays its own while it is down and starting again: another socket
            # (a server's, with SO_REUSEADDR) cannot take it. Taken meanwhile, the restart
            # failed to listen ("exited with 3") and was tried again until given up.
            with pytest.raises(OSError) as taken, socket.socket() as other:
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                other.bind(("127.0.0.1", stack.ports[name]))
            assert taken.value.errno == errno.EADDRINUSE, (name, taken.value)

        async def back() -> bool:
            """every killed service runs again, in a new process, and is ready"""
            async with httpx.AsyncClient() as client:
                for name, pid in killed.items():
                    process = stack.processes.get(name)
                    if process is None or process.pid == pid or process.poll() is not None:
                        return False
                    try:
                        if (await client.get(stack.url(name) + "/health/ready", timeout=2)).status_code != 200:
                            return False
                    except httpx.HTTPError:
                        return False
            return True
        await wait_until(back, timeout=120)
        sending = False
        await sender

        def outcome_ids() -> dict[str, set[str]]:
            found: dict[str, set[str]] = defaultdict(set)
            for _, event in deliveries.events:
                if event.type == EventType.OUTCOME.value:
                    found[event.data["subject_id"]].add(event.id)
            return found

        async def all_answered() -> bool:
            """every report sent has an outcome"""
            answered = outcome_ids()
            return all(answered.get(i) for i in sent)
        await wait_until(all_answered, timeout=120)
        answered = outcome_ids()
        assert {i: len(answered[i]) for i in sent} == {i: 1 for i in sent}, "a report answered twice"

        # The operator sees each restart, counted, and why, in `punte status --json`.
        status = await collect(stack.state)
        for name in SERVICES:
            supervisor = status["components"][name]["supervisor"]
            assert supervisor["state"] == "running", json.dumps(supervisor)
            assert supervisor["restarts"] == 1
            assert "SIGKILL" in supervisor["last_exit"]
            log = (stack.state_dir / "logs" / f"{name}.log").read_text(encoding="utf-8")
            assert "restart 1" in log and "SIGKILL" in log
        assert status["consistent"]["every_report_has_an_outcome"]
    finally:
        sending = False
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await deliveries.stop()
        await producer.stop()


async def test_a_service_that_keeps_failing_at_start_is_given_up_and_status_says_why(own_stack: Stack):
    stack = own_stack
    # Referral loses its secret (as a deleted Kubernetes secret or a typo would do) and crashes.
    stack.extra_env["PUNTE_DATA_KEYS"] = ""
    try:
        faults.kill_service(stack, "referral")

        async def given_up() -> bool:
            """the supervisor gave up on referral"""
            return stack.supervision()["referral"]["state"] == "given up"
        await wait_until(given_up, timeout=180)
        # Started again by the stack with the secret still missing: its error says why (the
        # log's last lines), not only where a log is that CI does not keep.
        stack.start_process("referral")
        with pytest.raises(RuntimeError, match=r"(?s)referral exited with \d+; .*PUNTE_DATA_KEYS"):
            stack.wait_ready(60, ["referral"])
    finally:
        del stack.extra_env["PUNTE_DATA_KEYS"]
    status = await collect(stack.state)
    referral = status["components"]["referral"]
    assert referral["status"] == "down"
    assert referral["supervisor"]["state"] == "given up"
    assert "PUNTE_DATA_KEYS" in referral["supervisor"]["reason"]  # the log's last lines say why
    # The others carry on.
    assert all(status["components"][name]["status"] == "up" for name in SERVICES if name != "referral")
