"""The chaos bench on Apache Kafka at CI size (issues #12 item 6 and #13): signed reports,
some sent twice and some malformed, each institution writing as its own principal, while
each service is killed with SIGKILL, the PostgreSQL postmaster is killed, one Kafka node is
paused for 10 s and one is killed with SIGKILL and started again; then the books must
balance as on Tansu (tests/e2e/test_chaos.py).

With --broker kafka (tests/conftest.py). On a cluster of its own, not the session's
kafka_cluster: a second network on a cluster another one used starts its fresh databases on the groups' committed offsets and on the
other tests' records (test_acls.py's bare ones), so its audit trail would begin with a gap
and its intake would dead-letter what it never sent; and the bench kills nodes the other
modules rely on. Cost on the 2-core machine: about 2 to 2.5 minutes when it is not busy
(set-up 30 s, the run 70 to 100 s, teardown 16 to 32 s), two to three times that when it is
(bench/README.md, "Chaos", "On Apache Kafka")."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench import chaos
from punte.stack import SERVICES, Stack
from tests.brokers import start_cluster
from tests.chaos_books import assert_the_books_balance

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


@pytest.fixture(scope="module")
def kafka_chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("kafka-chaos") / "state"
    # Skipped (failed under CI) where Apache Kafka cannot run, as the session's cluster is.
    # Given to the stack, not started by it: its supervisor leaves the nodes to the bench,
    # which starts a killed one again itself.
    with contextmanager(start_cluster)(root / "kafka") as cluster:
        stack = Stack(root, broker_kind="kafka", kafka=cluster)
        try:
            yield stack.start(timeout=300)
        finally:
            stack.stop()


async def test_nothing_lost_nothing_doubled_when_a_kafka_node_is_killed_among_every_other_fault(
        kafka_chaos_stack: Stack):
    stack = kafka_chaos_stack
    summary = await chaos.run_on(stack, chaos.Options(
        reports=150, rate=12, fault_every=2, redeliveries=0.1, malformed=0.1, seed=13, timeout=300, rounds=1,
        kill_kafka_broker=True, broker="kafka"))
    shown = json.dumps({k: v for k, v in summary.items() if k != "books"}, indent=1)

    # Each fault of the round happened, a Kafka node was hit twice (paused, killed), and
    # what each fault hit came back.
    assert summary["faults"]["count"] == {fault: 1 for fault in (*chaos.ROUND, chaos.KAFKA_BROKER_KILL)}, shown
    hit = {f["what"]: f["node"] for f in summary["faults"]["done"] if f["node"] is not None}
    assert set(hit) == {"pause broker", chaos.KAFKA_BROKER_KILL}, shown
    assert not summary["faults"]["not_recovered"], shown
    assert all(node.process is not None and node.process.poll() is None for node in stack.kafka.nodes)
    for name in SERVICES:
        # Killed once. One restarting when the postmaster is killed may fail its start-up
        # and be started again (seen once here: intake "exited with 3", uvicorn's start-up
        # failure, 6.6 s after its restart; bench/README.md): at least one restart.
        assert summary["supervision"][name]["restarts"] >= 1, shown
    assert summary["supervision"]["database"]["restarts"] >= 1, shown
    assert all(watch["state"] == "running" for watch in summary["supervision"].values()), shown

    assert_the_books_balance(summary, shown)
