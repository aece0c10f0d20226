"""Two replicas of every service (Stack(replicas=2), bench/e2e.py's scale-out figure): each
its own process with its own HTTP port and log, watched by the supervisor, and every
replica's consumers hold partitions of their service's groups. On a Stack of its own, whose
replicas all start at once on fresh databases, as an orchestrator starts them: two replicas
create their service's database and migrate it together, and neither may fail its start."""
from __future__ import annotations

import time

import httpx
import pytest

from punte.stack import SERVICES, Stack, replica_names
from punte.status import operator_token

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("replicas") / "state", replicas=2)
    try:
        yield stack.start(timeout=300)
    finally:
        stack.stop()


def consumers_of(stack: Stack, name: str, token: str) -> list[dict]:
    answer = httpx.get(f"http://127.0.0.1:{stack.ports[name]}/stats", timeout=10,
                       headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    return answer.json()["consumers"]


def test_two_processes_per_service_each_in_its_groups(two_replicas: Stack):
    stack = two_replicas
    names = [n for s in SERVICES for n in replica_names(s, 2)]
    assert names == stack.service_processes
    for service in SERVICES:
        first, second = (stack.processes[n] for n in replica_names(service, 2))
        assert first.poll() is None and second.poll() is None
        assert first.pid != second.pid
        assert stack.ports[service] != stack.ports[f"{service}-2"]
        assert (stack.state_dir / "logs" / f"{service}-2.log").is_file()
    assert set(names) <= set(stack.supervision())  # each replica is started again if it exits

    # Both replicas joined every group of their service: each holds partitions (a group's
    # rebalance after the second member joined may take a few seconds).
    token = operator_token(stack.state, stack.url("identity"), ttl_seconds=600)
    deadline = time.monotonic() + 60
    while True:
        unassigned = {n: [c["group"] for c in consumers_of(stack, n, token) if not c["assigned"]] for n in names}
        unassigned = {n: groups for n, groups in unassigned.items() if groups}
        if not unassigned or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not unassigned
    for service in SERVICES:
        groups = [{c["group"] for c in consumers_of(stack, n, token)} for n in replica_names(service, 2)]
        assert groups[0] == groups[1] and groups[0]
