"""The operator's view of an outbox row the broker will never take (issue #12, item 7): the
running network says which service is degraded and why, `punte outbox parked` lists the
row, `punte outbox discard` gives it up, and the books close again (decision 0021)."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from punte.cli import app
from punte.stack import Stack
from punte.status import collect
from runtime.cloudevents import CloudEvent
from runtime.db import make_engine
from runtime.outbox import outbox_table
from runtime.settings import Settings


# A row the broker will never take. Apache Kafka refuses a topic its ACLs do not grant intake,
# at once. Tansu would take a legal name only after the producer's 30 s metadata wait (that path
# is tests/integration/test_outbox_parking.py's), so on Tansu the name is one no broker accepts,
# which the relay parks before sending.
def nowhere(network: Stack) -> str:
    return "punte.nowhere" if network.kafka is not None else "punte nowhere!"


async def park_a_row(network: Stack) -> int:
    engine = make_engine(Settings(database_url=network.database_url).database_for("intake"), pool_size=1)
    try:
        event = CloudEvent.new("ro.punte.test.v1", "/punte/intake", {"synthetic": True})
        async with engine.begin() as conn:
            return await conn.scalar(sa.insert(outbox_table).values(
                topic=nowhere(network), key=b"case-e2e", headers=[(k, v.decode()) for k, v in event.headers()],
                payload=event.body(), event_type=event.type).returning(outbox_table.c.id))
    finally:
        await engine.dispose()


def punte(network: Stack, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--state-dir", str(network.state_dir)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.broker
def test_a_parked_row_shows_in_status_and_the_operator_discards_it(network: Stack):
    row_id = asyncio.run(park_a_row(network))
    deadline = time.monotonic() + 90
    while True:
        status = asyncio.run(collect(network.state))
        if status["outbox_parked"].get("intake") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status["outbox_parked"]["intake"] == 1
    assert status["components"]["intake"]["status"] == "degraded"
    assert "1 outbox row parked" in status["components"]["intake"]["problems"][0]
    assert status["consistent"]["no_outbox_row_parked"] is False

    listed = json.loads(punte(network, "outbox", "parked", "--json"))
    [row] = listed["intake"]
    assert (row["id"], row["topic"], row["key"]) == (row_id, nowhere(network), "case-e2e")
    # Apache Kafka grants intake no such topic (its ACLs name only the declared ones); on
    # Tansu the name itself is refused.
    assert ("TopicAuthorizationFailed" if network.kafka is not None else "InvalidTopic") in row["reason"]
    assert all(listed[name] == [] for name in ("referral", "notification", "audit"))

    punte(network, "outbox", "discard", str(row_id), "--service", "intake")
    status = asyncio.run(collect(network.state))
    assert status["outbox_parked"]["intake"] == 0 and status["components"]["intake"]["status"] == "up"
    assert status["consistent"]["no_outbox_row_parked"] is True
