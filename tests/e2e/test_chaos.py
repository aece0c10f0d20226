"""The chaos bench at CI size (issue #12, item 6): a few hundred signed reports, some sent
twice and some malformed, while each service is killed with SIGKILL, the PostgreSQL
postmaster is killed (the supervisor starts it again) and the broker is paused for 10 s;
then the books must balance. On a Stack of its own, since it breaks it on purpose. About
two minutes on a 2-core machine (bench/README.md, "Chaos")."""
from __future__ import annotations

import json

import pytest

from bench import chaos
from punte.stack import SERVICES, Stack
from tests.chaos_books import assert_the_books_balance

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("chaos") / "state")
    try:
        yield stack.start()
    finally:
        stack.stop()


async def test_nothing_lost_nothing_doubled_under_every_fault(own_stack: Stack):
    summary = await chaos.run_on(own_stack, chaos.Options(
        reports=300, rate=12, fault_every=3, redeliveries=0.1, malformed=0.1, seed=12, timeout=300, rounds=1))
    shown = json.dumps({k: v for k, v in summary.items() if k != "books"}, indent=1)

    # Each fault of a round happened, and what it hit came back.
    assert summary["faults"]["count"] == {fault: 1 for fault in chaos.ROUND}, shown
    assert not summary["faults"]["not_recovered"], shown
    for name in SERVICES:  # killed once, and never crashed on its own
        assert summary["supervision"][name]["restarts"] == 1, shown
    # A start while the killed postmaster's backends still hold its memory fails and is retried.
    assert summary["supervision"]["database"]["restarts"] >= 1, shown
    assert all(watch["state"] == "running" for watch in summary["supervision"].values()), shown

    assert_the_books_balance(summary, shown)
