"""Building blocks for integration tests: a migrated service database, signed messages."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from runtime.cloudevents import CloudEvent
from runtime.db import make_engine, make_sessions
from runtime.inbox import Message
from runtime.service import migrate
from runtime.settings import Settings


async def migrated_database(server_url: str, service: str, migrations: Path):
    """A fresh database for ``service`` on the test server, at head; (engine, sessions)."""
    import uuid

    name = f"{service}_{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=server_url)
    url = await migrate(settings, name, migrations)
    engine = make_engine(url, pool_size=5)
    return engine, make_sessions(engine)


def message(topic: str, event: CloudEvent | None = None, *, value: bytes | None = None,
            headers: list[tuple[str, bytes]] | None = None, offset: int = 0,
            partition: int = 0) -> Message:
    """A message as the consumer would hand it over, built from an event or raw parts."""
    if event is not None:
        value, headers = event.body(), event.headers()
    return Message(topic, partition, offset, None, value, tuple(headers or ()), 0)


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 20) -> list[Any]:
    """Read ``count`` records from the start of ``topic`` (all partitions)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return records


INTAKE_MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "intake" / "migrations"


async def intake_consumer(server_url: str, keyring, window=None, vault=None):
    """Intake's real handler on a fresh migrated database; (consumer, engine, intake)."""
    from runtime.inbox import InboxConsumer
    from runtime.ingress import Window
    from services.intake import handlers
    from services.intake.adapters.vault import IdentityVault
    from services.intake.bootstrap import build_rules

    engine, sessions = await migrated_database(server_url, "intake", INTAKE_MIGRATIONS)
    intake = handlers.Intake(keyring, build_rules(""), vault or IdentityVault({"k": bytes(32)}, "k"),
                             window or Window())

    async def handle(uow, msg):
        await handlers.submit_report(uow, msg, intake)

    consumer = InboxConsumer(service="intake", group_id="t", bootstrap="t", sessions=sessions,
                             handler=handle, attempts=1)
    return consumer, engine, intake


async def emitted(engine) -> list[tuple[str, dict, dict]]:
    """Every event a service wrote to its outbox: (topic, headers, data)."""
    import json

    import sqlalchemy as sa

    from runtime.outbox import outbox_table
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox_table).order_by(outbox_table.c.id))).all()
    return [(r.topic, dict(r.headers), json.loads(r.payload)) for r in rows]
