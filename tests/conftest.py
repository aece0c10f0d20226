"""Fixtures for the real infrastructure: PostgreSQL and a Kafka-protocol broker over TCP.

By default both come from the embedded wheels (no Docker needed). PUNTE_TEST_BACKEND=
containers uses testcontainers (Apache Kafka and PostgreSQL in Docker) where an engine
exists; PUNTE_TEST_DATABASE_URL and PUNTE_TEST_KAFKA_BOOTSTRAP point at servers you run."""
from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

from punte.embedded import EmbeddedBroker, EmbeddedPostgres
from runtime import broker_epoch

# Locally, property tests explore new inputs on every run; CI replays a fixed sequence so
# a submission lands or fails on its own merits (a local find becomes a regression test).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@dataclass(frozen=True)
class Infrastructure:
    database_url: str  # server URL (database "postgres"); tests create their own databases
    kafka_bootstrap: str


def _containers() -> Iterator[Infrastructure]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:17", driver="asyncpg") as pg, KafkaContainer() as kafka:
        asyncio.run(broker_epoch.claim(kafka.get_bootstrap_server()))
        yield Infrastructure(pg.get_connection_url(), kafka.get_bootstrap_server())


@pytest.fixture(scope="session")
def infrastructure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infrastructure]:
    database, bootstrap = os.environ.get("PUNTE_TEST_DATABASE_URL"), os.environ.get("PUNTE_TEST_KAFKA_BOOTSTRAP")
    if os.environ.get("PUNTE_TEST_BACKEND") == "containers":
        yield from _containers()
        return
    root: Path = tmp_path_factory.mktemp("infrastructure")
    postgres = broker = None
    try:
        if database is None:
            postgres = EmbeddedPostgres(root / "postgres").start()
            database = postgres.url
        if bootstrap is None:
            broker = EmbeddedBroker(log_file=root / "broker.log").start()
            bootstrap = broker.bootstrap
        # A provisioned broker has an epoch (decision 0026): services started on it read and publish.
        asyncio.run(broker_epoch.claim(bootstrap))
        yield Infrastructure(database, bootstrap)
    finally:
        if broker:
            broker.stop()
        if postgres:
            postgres.stop()
