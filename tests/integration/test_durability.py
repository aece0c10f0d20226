"""Durability as configuration (decision 0020): the services' transactions are durable when
they say they are committed, whatever the server, database or role says, and a service
started while its PostgreSQL is down waits for it instead of exiting."""
from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from punte.embedded import EmbeddedPostgres, free_port
from runtime.db import connect, ensure_database, make_engine
from runtime.service import ServiceSpec, create_app, migrate_when_reachable
from runtime.settings import Settings
from tests.integration.helpers import NETWORK_KEY, REFERRAL_MIGRATIONS


async def _show(url: str, setting: str) -> str:
    conn = await connect(url)
    try:
        return await conn.fetchval(f"SHOW {setting}")
    finally:
        await conn.close()


async def test_the_embedded_postgresql_commits_synchronously_for_everyone(tmp_path: Path):
    server = await asyncio.to_thread(EmbeddedPostgres(tmp_path / "postgres").start)
    try:
        # A plain driver connection without the services' own options: the server's default.
        conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user="postgres", database="postgres")
        try:
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_services_connections_commit_synchronously_even_where_the_database_says_otherwise(infrastructure):
    url = Settings(database_url=infrastructure.database_url).database_for(f"durable_{uuid.uuid4().hex[:8]}")
    await ensure_database(url)
    name = url.rsplit("/", 1)[1]
    admin = await connect(url, database="postgres")
    try:  # someone tuned the database for speed
        await admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await admin.close()
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(sa.text("SHOW synchronous_commit")) == "on"
    finally:
        await engine.dispose()
    assert await _show(url, "synchronous_commit") == "on"


async def test_a_service_started_while_its_postgresql_is_down_waits_for_it(tmp_path: Path):
    port = free_port()
    settings = Settings(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres",
                        startup_timeout_seconds=120)
    starting = asyncio.create_task(migrate_when_reachable(settings, "referral", REFERRAL_MIGRATIONS))
    await asyncio.sleep(1)  # the service is starting: nothing listens on its database's port yet
    assert not starting.done()
    server = await asyncio.to_thread(EmbeddedPostgres(tmp_path / "postgres", port=port).start)
    try:
        url = await asyncio.wait_for(starting, 120)
        assert url.endswith("/punte_referral")
        conn = await connect(url)
        try:  # migrated to head
            assert await conn.fetchval("SELECT count(*) FROM alembic_version") == 1
        finally:
            await conn.close()
    finally:
        starting.cancel()
        await asyncio.to_thread(server.stop)


async def test_a_service_gives_up_on_an_unreachable_database_after_its_startup_timeout():
    settings = Settings(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/postgres",
                        startup_timeout_seconds=1)
    with pytest.raises(RuntimeError, match="not reachable"):
        await migrate_when_reachable(settings, "referral", REFERRAL_MIGRATIONS)


@pytest.mark.broker
async def test_a_database_lost_during_start_up_after_the_migrations_is_waited_for_too(infrastructure, tmp_path: Path):
    """What the chaos run found: a service restarted just before PostgreSQL was killed got
    past its migrations, then lost the database in its start-up's next steps (seeding, the
    broker-epoch check) and exited (uvicorn's 3); only the supervisor brought it back. Every
    database step of start-up now waits for the database like the migrations do."""
    lost = {"times": 0}

    async def on_start(runtime) -> None:
        if lost["times"] < 2:  # the database goes away twice, as a killed postmaster does
            lost["times"] += 1
            raise ConnectionRefusedError(111, "Connect call failed (synthetic)")

    async def no_stats(session) -> dict:
        return {}

    NETWORK_KEY.save(tmp_path / "network.key")
    spec = ServiceSpec(name=f"durable_{uuid.uuid4().hex[:6]}", migrations=REFERRAL_MIGRATIONS,
                       consumers=lambda rt: [], routers=[], stats=no_stats, on_start=on_start)
    settings = Settings(database_url=infrastructure.database_url, kafka_bootstrap=infrastructure.kafka_bootstrap,
                        network_key_file=tmp_path / "network.key", startup_timeout_seconds=60)
    app = create_app(spec, settings)
    async with app.router.lifespan_context(app):
        assert app.state.runtime.started
    assert lost["times"] == 2


async def test_replicas_starting_at_once_both_find_their_database(infrastructure):
    """Two replicas of a service start together and both create its database: the one that
    loses the race (PostgreSQL says unique violation on pg_database's name, not duplicate
    database) goes on, as the one that won."""
    url = make_url(infrastructure.database_url).set(database=f"race_{uuid.uuid4().hex[:8]}")
    url_text = url.render_as_string(hide_password=False)
    await asyncio.gather(*(ensure_database(url_text) for _ in range(6)))
    conn = await connect(url_text, database="postgres")
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", url.database) == 1
    finally:
        await conn.close()
