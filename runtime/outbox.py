"""Transactional outbox: events are rows written in the same transaction as the state
change that caused them; the relay publishes them afterwards.

The relay is safe with several replicas: a batch is published only by the holder of a
PostgreSQL advisory lock for that database, so rows leave in id order and per-key order
holds. A crash between publishing and marking re-publishes the batch; consumers are
idempotent by event id, so that costs nothing but bandwidth. Published rows are kept for
the outbox-published rule's days (runtime.retention prunes them), so the outbox can be
replayed to rebuild a lost broker (``replay``).

A dead letter is an event and a body: the event goes out through the outbox, the body is
sealed in the service's own database (runtime.dead_letters), both in the same transaction."""
from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from runtime import dead_letters
from runtime.cloudevents import CloudEvent
from runtime.data_keys import DataKeys
from runtime.log import get_logger
from runtime.signing import SigningKey
from runtime.telemetry import current_trace_headers

log = get_logger("runtime.outbox")

outbox_table = sa.table(
    "punte_outbox",
    sa.column("id", sa.BigInteger), sa.column("topic", sa.Text), sa.column("key", sa.LargeBinary),
    sa.column("headers", sa.JSON), sa.column("payload", sa.LargeBinary),
    sa.column("event_type", sa.Text), sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("published_at", sa.DateTime(timezone=True)),
)

# One relay per database at a time; the number only has to be unique per database.
RELAY_LOCK = 0x70756E7465


class Outbox:
    """Collects the events of one unit of work; ``flush`` writes them in its transaction."""

    def __init__(self, session: AsyncSession, signer: SigningKey | None = None,
                 data_keys: DataKeys | None = None) -> None:
        """``data_keys``: where dead-letter bodies are sealed; None keeps none (a service
        that keeps no personal data, such as the audit trail, which dead-letters nothing)."""
        self._session = session
        self._signer = signer
        self._data_keys = data_keys
        self._rows: list[dict[str, Any]] = []
        self._bodies: list[dead_letters.Body] = []

    def emit(self, topic: str, event: CloudEvent, key: str | None = None) -> None:
        if self._signer is not None:
            event = self._signer.sign(event)
        headers = [(k, v.decode()) for k, v in event.headers()]
        headers.extend(current_trace_headers().items())
        self._rows.append({
            "topic": topic, "key": key.encode() if key else None, "headers": headers,
            "payload": event.body(), "event_type": event.type,
        })

    def keep_dead_letter(self, body: dead_letters.Body) -> bool:
        """Keep a dead-lettered message's body, sealed, with this unit of work's events;
        whether it will be kept."""
        if self._data_keys is None:
            log.warning("dead letter body not kept: this service has no data keys", position=body.position)
            return False
        self._bodies.append(body)
        return True

    def take(self, other: "Outbox") -> None:
        """Adopt the events ``other`` collected (a message's, once it applied), to be
        written with this outbox's in one insert."""
        self._rows += other._rows
        self._bodies += other._bodies
        other._rows, other._bodies = [], []

    async def flush(self) -> int:
        rows, self._rows = self._rows, []
        bodies, self._bodies = self._bodies, []
        if rows:
            await self._session.execute(sa.insert(outbox_table), rows)
        if bodies and self._data_keys is not None:
            await dead_letters.keep(self._session, self._data_keys, bodies)
        return len(rows)


class OutboxRelay:
    def __init__(self, engine: AsyncEngine, producer: AIOKafkaProducer, batch_max: int = 500,
                 poll_seconds: float = 0.05) -> None:
        self._engine = engine
        self._producer = producer
        self._batch_max = batch_max
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        """Called after a commit that wrote outbox rows, so they leave without waiting."""
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                sent = await self.publish_batch()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database away: retry, nothing is lost
                log.warning("outbox relay failed, will retry", error=repr(exc), backoff=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if sent < self._batch_max:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll)
                except TimeoutError:
                    pass

    async def publish_batch(self) -> int:
        async with self._engine.begin() as conn:
            if not await conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(RELAY_LOCK))):
                return 0
            rows = (await conn.execute(
                sa.select(outbox_table.c.id, outbox_table.c.topic, outbox_table.c.key,
                          outbox_table.c.headers, outbox_table.c.payload)
                .where(outbox_table.c.published_at.is_(None))
                .order_by(outbox_table.c.id).limit(self._batch_max)
            )).all()
            if not rows:
                return 0
            futures = [
                await self._producer.send(
                    row.topic, value=row.payload, key=row.key,
                    headers=[(k, v.encode()) for k, v in row.headers],
                )
                for row in rows
            ]
            await asyncio.gather(*futures)
            await conn.execute(
                sa.update(outbox_table)
                .where(outbox_table.c.id.in_([row.id for row in rows]))
                .values(published_at=sa.func.now())
            )
        self.published += len(rows)
        return len(rows)


async def replay(engine: AsyncEngine, since_id: int = 0) -> int:
    """Mark published rows as pending again so the relay re-sends them (broker rebuilt)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(outbox_table).where(outbox_table.c.id >= since_id).values(published_at=None)
        )
    return result.rowcount or 0
