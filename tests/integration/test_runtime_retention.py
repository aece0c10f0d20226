"""Data keys per scope and the purge job's timers on a real PostgreSQL: erasure destroys a
scope's key (its values never open again, nothing new is sealed into it) and is done once,
when due, and never touches what is not due or not yet published."""
import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from contracts.reference import retention
from runtime import retention as purge
from runtime.data_keys import DataKeys, Erased
from runtime.db import ensure_database, make_engine, make_sessions
from runtime.migrations import create_data_keys_table, create_erasures_table, create_runtime_tables
from runtime.sealing import ConfiguredKeyProvider
from runtime.settings import Settings

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
async def sessions(infrastructure):
    url = Settings(database_url=infrastructure.database_url).database_for(f"retention_{uuid.uuid4().hex[:8]}")
    await ensure_database(url)
    engine = make_engine(url, pool_size=2)

    def create(connection) -> None:
        op = Operations(MigrationContext.configure(connection))
        create_runtime_tables(op)
        create_data_keys_table(op)
        create_erasures_table(op)

    async with engine.begin() as connection:
        await connection.run_sync(create)
    yield make_sessions(engine)
    await engine.dispose()


KEYS = DataKeys(ConfiguredKeyProvider.from_setting("dk-1:" + "33" * 32))


async def test_an_erased_scope_never_opens_again_and_says_when_and_why(sessions) -> None:
    async with sessions() as session, session.begin():
        sealed = await KEYS.seal(session, "case:c-erase", "Ana Exemplu".encode(), b"note", NOW)
        kept = await KEYS.seal(session, "case:c-keep", "Ion Exemplu".encode(), b"note", NOW)
        assert await KEYS.open(session, "case:c-erase", sealed, b"note") == "Ana Exemplu".encode()
    async with sessions() as session, session.begin():
        await purge.schedule(session, ["case:c-erase"], "closed-case", NOW - timedelta(seconds=1))
        await purge.schedule(session, ["case:c-keep"], "closed-case", NOW + timedelta(days=1))
        assert await purge.erase_due(session, KEYS, NOW) == 1
    async with sessions() as session, session.begin():
        assert await purge.erase_due(session, KEYS, NOW) == 0  # done once
        with pytest.raises(Erased) as erased:
            await KEYS.open(session, "case:c-erase", sealed, b"note")
        assert erased.value.rule == "closed-case" and erased.value.erased_at == NOW
        with pytest.raises(Erased):
            await KEYS.seal(session, "case:c-erase", b"new", b"note", NOW)
        assert await KEYS.open(session, "case:c-keep", kept, b"note") == "Ion Exemplu".encode()
        wrapped = await session.scalar(sa.text("SELECT wrapped FROM punte_data_keys WHERE scope = 'case:c-erase'"))
        assert wrapped is None


async def test_two_writers_creating_a_scopes_key_at_once_agree_on_the_first_ones(sessions) -> None:
    """keys_for uses the keys it created as made; a scope another writer created first (its
    insert waited for that writer's commit) takes that writer's key, as every later reader
    does."""
    first, second = sessions(), sessions()
    try:
        await first.begin()
        mine = await KEYS.keys_for(first, ["case:c-both", "case:c-first"], NOW)
        await second.begin()
        theirs = asyncio.create_task(KEYS.keys_for(second, ["case:c-both", "case:c-second"], NOW))
        await asyncio.sleep(0.3)
        assert not theirs.done()  # its insert waits for the first writer's row
        await first.commit()
        theirs_keys = await theirs
        await second.commit()
    finally:
        await first.close()
        await second.close()
    assert theirs_keys["case:c-both"] == mine["case:c-both"]
    assert theirs_keys["case:c-second"] != mine["case:c-first"]
    async with sessions() as session:
        assert await KEYS.existing(session, ["case:c-both", "case:c-first", "case:c-second"]) == {
            "case:c-both": mine["case:c-both"], "case:c-first": mine["case:c-first"],
            "case:c-second": theirs_keys["case:c-second"]}


async def test_old_published_outbox_rows_and_old_inbox_rows_are_pruned_pending_rows_never(sessions) -> None:
    old, recent = NOW - timedelta(days=400), NOW - timedelta(hours=1)
    async with sessions() as session, session.begin():
        await session.execute(sa.text(
            "INSERT INTO punte_outbox (topic, headers, payload, event_type, created_at, published_at) VALUES "
            "('t', '[]', 'a', 'x', :old, :old), ('t', '[]', 'b', 'x', :old, NULL), ('t', '[]', 'c', 'x', :recent, :recent)"),
            {"old": old, "recent": recent})
        await session.execute(sa.text(
            "INSERT INTO punte_inbox (message_key, topic, partition, \"offset\", received_at) VALUES "
            "('old', 't', 0, 1, :old), ('recent', 't', 0, 2, :recent)"), {"old": old, "recent": recent})
        assert await purge.prune_runtime_rows(session, retention(), NOW) == 2
        left = (await session.execute(sa.text("SELECT payload FROM punte_outbox ORDER BY id"))).scalars().all()
        assert left == [b"b", b"c"]  # the unpublished row stays, whatever its age
        assert (await session.execute(sa.text("SELECT message_key FROM punte_inbox"))).scalars().all() == ["recent"]
