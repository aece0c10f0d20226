"""The supervisor of `punte up` (punte.stack.Supervisor) on small real processes: a killed
one is started again and counted, one failing at start is given up with its log's reason,
a watched-only one is reported lost; and the restart policy's backoff."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from punte.stack import Program, RestartPolicy, Supervisor, Watch

FAST = RestartPolicy(first_delay=0.05, max_delay=0.2, healthy_after=60, quick_exit=15, give_up_after=3)


class Child:
    """A program as the stack starts one: a child process writing to its log."""

    def __init__(self, log: Path, code: str) -> None:
        self.log, self.code = log, code
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-c", self.code], stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def program(self, restart: bool = True) -> Program:
        return Program(lambda: self.process, self.start if restart else None, self.log)


def until(check: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, check.__doc__
        time.sleep(0.05)


@pytest.fixture
def stopped():
    supervisors: list[Supervisor] = []
    children: list[Child] = []
    yield supervisors, children
    for supervisor in supervisors:
        supervisor.stop()
    for child in children:
        if child.process and child.process.poll() is None:
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()


def test_a_process_killed_with_sigkill_is_started_again_and_counted(tmp_path, stopped):
    child = Child(tmp_path / "intake.log", "import time; print('ready', flush=True); time.sleep(600)")
    child.start()
    supervisor = Supervisor({"intake": child.program()}, FAST, every=0.05).start()
    stopped[0].append(supervisor)
    stopped[1].append(child)
    first = child.process
    assert first is not None
    os.killpg(first.pid, signal.SIGKILL)

    def restarted() -> bool:
        """intake runs again in a new process"""
        return supervisor.snapshot()["intake"]["state"] == "running" and child.process is not first
    until(restarted)
    watch = supervisor.snapshot()["intake"]
    assert watch["restarts"] == 1 and watch["pid"] == child.process.pid
    assert watch["last_exit"].startswith("killed by SIGKILL")
    log = child.log.read_text()
    assert "intake killed by SIGKILL" in log and "restart 1" in log


def test_a_process_failing_at_start_is_given_up_with_the_reason_from_its_log(tmp_path, stopped):
    child = Child(tmp_path / "referral.log",
                  "import sys; print('PUNTE_DATA_KEYS is required: referral does not start', flush=True); sys.exit(3)")
    child.start()
    changes: list[dict] = []
    supervisor = Supervisor({"referral": child.program()}, FAST, changes.append, every=0.05).start()
    stopped[0].append(supervisor)

    def given_up() -> bool:
        """the supervisor gave up on referral"""
        return supervisor.snapshot()["referral"]["state"] == "given up"
    until(given_up)
    time.sleep(0.3)  # and it stays given up: no more starts
    watch = supervisor.snapshot()["referral"]
    assert child.starts == FAST.give_up_after  # the first start and two restarts
    assert watch["restarts"] == FAST.give_up_after - 1
    assert "exited with 3" in watch["last_exit"]
    assert "PUNTE_DATA_KEYS is required" in watch["reason"]
    assert changes[-1]["referral"]["state"] == "given up"  # what `punte status` reads
    assert "giving up" in child.log.read_text()


def test_a_kill_from_outside_is_not_a_failure_at_start(tmp_path, stopped):
    """SIGKILL (an operator, the OOM killer) soon after a start says nothing of the program:
    only its own exits count towards giving up, and the reason is its own."""
    flag = tmp_path / "secret-gone"
    child = Child(tmp_path / "referral.log",
                  "import pathlib, sys, time\n"
                  f"if pathlib.Path({str(flag)!r}).exists():\n"
                  "    print('PUNTE_DATA_KEYS is required: referral does not start', flush=True); sys.exit(3)\n"
                  "print('ready', flush=True); time.sleep(600)")
    child.start()
    supervisor = Supervisor({"referral": child.program()}, FAST, every=0.05).start()
    stopped[0].append(supervisor)
    stopped[1].append(child)
    for _ in range(FAST.give_up_after):  # killed again and again, each soon after its start
        killed = child.process
        assert killed is not None
        os.killpg(killed.pid, signal.SIGKILL)

        def started_again(killed: subprocess.Popen = killed) -> bool:
            """referral runs again in a new process"""
            return supervisor.snapshot()["referral"]["state"] == "running" and child.process is not killed
        until(started_again)
    flag.touch()  # then its secret goes missing
    assert child.process is not None
    os.killpg(child.process.pid, signal.SIGKILL)

    def given_up() -> bool:
        """the supervisor gave up on referral"""
        return supervisor.snapshot()["referral"]["state"] == "given up"
    until(given_up)
    assert child.starts == 1 + FAST.give_up_after + FAST.give_up_after  # the kills, then its own failures
    assert "PUNTE_DATA_KEYS is required" in supervisor.snapshot()["referral"]["reason"]


def test_a_watched_only_process_is_reported_lost(tmp_path, stopped):
    child = Child(tmp_path / "broker.log", "import time; time.sleep(600)")
    child.start()
    supervisor = Supervisor({"broker": child.program(restart=False)}, FAST, every=0.05).start()
    stopped[0].append(supervisor)
    assert child.process is not None
    os.killpg(child.process.pid, signal.SIGKILL)

    def lost() -> bool:
        """the broker is reported lost"""
        return supervisor.snapshot()["broker"]["state"] == "lost"
    until(lost)
    assert "killed by SIGKILL" in supervisor.snapshot()["broker"]["reason"]
    assert child.starts == 1


def test_backoff_doubles_up_to_its_cap_and_starts_afresh_after_a_healthy_period():
    policy = RestartPolicy(first_delay=1, max_delay=8, healthy_after=60, quick_exit=15, give_up_after=5)
    watch = Watch()
    assert [watch.exited(20, policy) for _ in range(6)] == [1, 2, 4, 8, 8, 8]  # not quick: never given up
    assert watch.exited(61, policy) == 1  # it had been up a healthy while


def test_only_failures_at_start_in_a_row_lead_to_giving_up():
    policy = RestartPolicy(first_delay=1, max_delay=8, healthy_after=60, quick_exit=15, give_up_after=3)
    watch = Watch()
    assert watch.exited(2, policy) is not None
    assert watch.exited(2, policy) is not None
    assert watch.exited(30, policy) is not None  # it got past its start this time
    assert watch.exited(2, policy) is not None
    assert watch.exited(2, policy) is not None
    assert watch.exited(2, policy) is None


def test_kills_from_outside_neither_count_nor_break_a_run_of_failures_at_start():
    policy = RestartPolicy(first_delay=1, max_delay=8, healthy_after=60, quick_exit=15, give_up_after=2)
    watch = Watch()
    assert [watch.exited(1, policy, own=False) for _ in range(4)] == [1, 2, 4, 8]  # backoff still grows
    assert watch.exited(2, policy) is not None
    assert watch.exited(1, policy, own=False) is not None
    assert watch.exited(2, policy) is None


def test_punte_status_shows_each_process_as_the_supervisor_wrote_it(tmp_path):
    from punte.stack import SUPERVISION_FILE
    from punte.state import State
    from punte.status import add_supervision

    (tmp_path / SUPERVISION_FILE).write_text(json.dumps({
        "intake": {"state": "running", "restarts": 2, "pid": 10, "last_exit": "killed by SIGKILL after 40.0 s",
                   "reason": None},
        "referral": {"state": "given up", "restarts": 4, "pid": 11, "last_exit": "exited with 3 after 1.0 s",
                     "reason": "referral failed 5 times in a row within 15 s of starting; last log lines: ..."},
        "broker": {"state": "lost", "restarts": 0, "pid": 12, "last_exit": "killed by SIGKILL after 9.0 s",
                   "reason": "broker killed by SIGKILL after 9.0 s; it is not started again by the supervisor"},
    }))
    components = {"intake": {"status": "up"}, "referral": {"status": "up"}, "broker": {"status": "up"}}
    add_supervision(components, State(tmp_path))
    assert components["intake"]["status"] == "up" and components["intake"]["supervisor"]["restarts"] == 2
    assert components["referral"]["status"] == "down"
    assert "last log lines" in components["referral"]["supervisor"]["reason"]
    assert components["broker"]["status"] == "down"


def test_the_stacks_embedded_broker_is_started_again_and_rebuilt_not_only_watched(tmp_path, monkeypatch):
    """Decision 0026: a new, empty broker on the same port, its topics and a new epoch."""
    from punte import stack as stack_module
    from punte.embedded import EmbeddedBroker
    from punte.stack import Stack

    provisioned: list[str] = []

    def provision(bootstrap: str, settings=None) -> None:
        # Its own embedded broker takes plain connections, whatever the caller's environment says.
        assert settings is not None and settings.kafka_security_protocol == "PLAINTEXT"
        provisioned.append(bootstrap)
    monkeypatch.setattr(stack_module, "_provision", provision)
    broker = EmbeddedBroker(port=4242)
    started: list[int] = []
    monkeypatch.setattr(broker, "start", lambda: started.append(broker.port) or broker)
    stack = Stack(tmp_path, broker=broker)
    program = stack._programs()["broker"]
    assert program.start is not None, "the broker is started again"
    program.start()
    assert started == [4242] and provisioned == ["127.0.0.1:4242"]
