"""punte.faults on embedded servers of their own (not the session's, which other tests
share): PostgreSQL killed and started again keeps what was committed, and the supervisor
starts it again after a crash; the broker paused answers nothing until it is resumed."""
from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
import sqlalchemy as sa

from punte import faults
from punte.embedded import EmbeddedBroker, EmbeddedPostgres
from punte.stack import Program, RestartPolicy, Stack, Supervisor
from runtime import db
from runtime.kafka import ensure_topics, make_producer


def dsn(postgres: EmbeddedPostgres) -> str:
    return postgres.url.replace("+asyncpg", "")


@pytest.fixture
def postgres(tmp_path):
    server = EmbeddedPostgres(tmp_path / "postgres").start()
    yield server
    server.stop()


async def test_postgres_restarted_after_sigkill_keeps_what_was_committed(tmp_path, postgres):
    connection = await asyncpg.connect(dsn(postgres))
    await connection.execute("CREATE TABLE reports (id text PRIMARY KEY)")
    async with connection.transaction():
        await connection.execute("SET LOCAL synchronous_commit = on")
        await connection.execute("INSERT INTO reports VALUES ('r-1')")
    await connection.close()
    before = postgres.process.pid

    await asyncio.to_thread(faults.restart_postgres, Stack(tmp_path / "state", postgres=postgres, supervise=False))

    assert postgres.process.pid != before
    connection = await asyncpg.connect(dsn(postgres))
    assert await connection.fetchval("SELECT count(*) FROM reports") == 1
    await connection.close()


async def test_a_pooled_connection_costs_no_round_trip_to_check_out_and_is_replaced_once_its_server_restarted(
        postgres):
    engine = db.make_engine(postgres.url, pool_size=1)
    sessions = db.make_sessions(engine)
    try:
        async with sessions() as session:
            raw = (await (await session.connection()).get_raw_connection()).driver_connection
        sent: list[str] = []
        raw.add_query_logger(lambda logged: sent.append(logged.query))
        async with sessions() as session, session.begin():
            assert (await session.execute(sa.text("SELECT 2"))).scalar() == 2
        # asyncpg logs what it sends outside prepared statements: here the transaction's ends
        # only, where a ping adds BEGIN, an empty query and ROLLBACK before them.
        assert sent == ["BEGIN;", "COMMIT;"], "no ping before the transaction"

        await asyncio.to_thread(postgres.restart)
        async with sessions() as session:
            assert (await session.execute(sa.text("SELECT 3"))).scalar() == 3, "a new connection, at once"
    finally:
        await engine.dispose()


async def test_the_supervisor_starts_a_crashed_postgres_again(postgres):
    supervisor = Supervisor({"database": Program(lambda: postgres.process, lambda: postgres.restart(hard=True),
                                                 postgres.log_file)},
                            RestartPolicy(first_delay=0.1), every=0.1).start()
    try:
        crashed = postgres.process
        await asyncio.to_thread(postgres.kill)  # the postmaster SIGKILLed, as by the OOM killer
        deadline = time.monotonic() + 60
        while supervisor.snapshot()["database"]["state"] != "running" or postgres.process is crashed:
            assert time.monotonic() < deadline, "PostgreSQL was not started again"
            await asyncio.sleep(0.1)
        assert supervisor.snapshot()["database"]["restarts"] == 1
        connection = await asyncpg.connect(dsn(postgres))
        assert await connection.fetchval("SELECT 1") == 1
        await connection.close()
    finally:
        supervisor.stop()


async def test_a_paused_broker_answers_nothing_until_it_is_resumed(tmp_path):
    broker = EmbeddedBroker(log_file=tmp_path / "broker.log").start()
    stack = Stack(tmp_path / "state", broker=broker, supervise=False)
    producer = make_producer(broker.bootstrap)
    try:
        await ensure_topics(broker.bootstrap, [("punte.faults.probe", 1)])
        await producer.start()
        await producer.send_and_wait("punte.faults.probe", b"before")
        with faults.broker_paused(stack):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(producer.send_and_wait("punte.faults.probe", b"while paused"), 3)
        await asyncio.wait_for(producer.send_and_wait("punte.faults.probe", b"after"), 30)
    finally:
        await producer.stop()
        broker.stop()
