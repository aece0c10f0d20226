"""The broker-epoch watch's look at the broker (decision 0026), as each service runs it every
few seconds: it asks for the marker's topic alone and never creates it, and once the epoch is
recorded and rewound a look that finds the same epoch sends nothing to the database, while a
new epoch still goes through the recorded decision (issue #14: the idle network's CPU)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient

from punte.embedded import EmbeddedBroker
from runtime import broker_epoch
from runtime.broker_epoch import Epoch, EpochWatch
from tests.integration.helpers import INTAKE_MIGRATIONS, migrated_database


@pytest.fixture
def broker(tmp_path):
    started = EmbeddedBroker(log_file=tmp_path / "broker.log").start()
    yield started
    started.stop()


async def topics_of(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


async def test_reading_a_broker_without_the_marker_finds_none_and_creates_no_topic(broker):
    assert await broker_epoch.read(broker.bootstrap) is None
    assert await broker_epoch.read(broker.bootstrap) is None
    assert broker_epoch.TOPIC not in await topics_of(broker.bootstrap)

    claimed = await broker_epoch.provision(broker.bootstrap)
    assert await broker_epoch.read(broker.bootstrap) == claimed


async def test_a_steady_watch_reads_the_broker_each_time_and_its_database_only_when_the_epoch_changes(
        infrastructure, broker):
    await broker_epoch.provision(broker.bootstrap)
    engine, _ = await migrated_database(infrastructure.database_url, "intake", INTAKE_MIGRATIONS)
    statements: list[str] = []
    sa.event.listen(engine.sync_engine, "before_cursor_execute",
                    lambda _conn, _cursor, statement, *_: statements.append(statement))
    replaced: list[Epoch] = []
    reads = 0

    async def read_epoch(bootstrap: str) -> Epoch | None:
        nonlocal reads
        reads += 1
        return replaced[-1] if replaced else await broker_epoch.read(bootstrap)

    told: list[bool] = []

    async def go(rewind: bool) -> None:
        told.append(rewind)

    async def hold(_reason: str) -> None:
        raise AssertionError("the broker has its epoch: nothing holds")

    watch = EpochWatch(engine, broker.bootstrap, 5.0, hold, go, read_epoch=read_epoch)
    try:
        assert await watch.check() == "first"
        recorded = len(statements)
        assert recorded > 0, "the first epoch is recorded in the service's database"
        assert told == [False]

        for _ in range(3):
            assert await watch.check() == "same"
        assert reads == 4, "every look reads the broker"
        assert statements[recorded:] == [], "a steady look sends nothing to the database"
        assert watch.observed.public()["state"] == "current"

        # The broker came back on a new log: the next look decides it with the database.
        replaced.append(Epoch("a-new-epoch", datetime.now(timezone.utc)))
        assert await watch.check() == "new"
        assert len(statements) > recorded
        assert told == [False, True], "the consumers are told to read the new log from its beginning"
        assert watch.observed.public()["changes"] == 1
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT epoch_id FROM punte_broker_epochs ORDER BY ordinal"))).all()
        assert [r[0] for r in rows][-1] == "a-new-epoch"
    finally:
        await engine.dispose()
