"""Transactional outbox: events are rows written in the same transaction as the state
change that caused them; the relay publishes them afterwards.

The relay is safe with several replicas: a batch is published only by the holder of a
PostgreSQL advisory lock for that database, so rows leave in id order and per-key order
holds. A crash between publishing and marking re-publishes the batch; consumers are
idempotent by event id, so that costs nothing but bandwidth. Published rows are kept for
the outbox-published rule's days (runtime.retention prunes them), so the outbox can be
replayed to rebuild a lost broker (``replay``).

A row the broker will never take as it is (too large, a topic that does not exist or is not
ours, an invalid record) is parked with its reason instead of blocking every row behind it
(decision 0021): the rows of other keys go on, the rows of its own key (topic + key) wait
behind it so per-key order holds, and an operator retries or discards it. Any other
failure (broker away, timeouts) retries the batch, as before: nothing is dropped.

A dead letter is an event and a body: the event goes out through the outbox, the body is
sealed in the service's own database (runtime.dead_letters), both in the same transaction."""
from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from runtime import dead_letters, telemetry
from runtime.cloudevents import CloudEvent
from runtime.data_keys import DataKeys
from runtime.db import any_of
from runtime.log import get_logger
from runtime.quiet import QuietWait
from runtime.signing import SigningKey
from runtime.telemetry import context_from_text, current_trace_headers, kafka_injects, tracer

log = get_logger("runtime.outbox")

outbox_table = sa.table(
    "punte_outbox",
    sa.column("id", sa.BigInteger), sa.column("topic", sa.Text), sa.column("key", sa.LargeBinary),
    sa.column("headers", sa.JSON), sa.column("payload", sa.LargeBinary),
    sa.column("event_type", sa.Text), sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("published_at", sa.DateTime(timezone=True)),
    # Parking (decision 0021, runtime.migrations.add_outbox_parking).
    sa.column("parked_at", sa.DateTime(timezone=True)), sa.column("parked_reason", sa.Text),
    sa.column("discarded_at", sa.DateTime(timezone=True)), sa.column("discarded_by", sa.Text),
)

# Failures that publishing the same bytes again will never fix: the row is parked. Every
# other failure (connection, timeout, leader moving) retries the batch.
UNPUBLISHABLE: tuple[type[Exception], ...] = (
    kafka_errors.MessageSizeTooLargeError,  # over max_request_size, or the topic's message size
    kafka_errors.RecordListTooLargeError,
    kafka_errors.UnknownTopicOrPartitionError,  # still unknown after request_timeout_ms of metadata
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.InvalidTopicError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidTimestampError,
    kafka_errors.PolicyViolationError,
    kafka_errors.UnsupportedForMessageFormatError,
)


# Kafka's rule for a topic's name (its Topic.validate): a broker refuses any other, so a row
# for one is parked before its send, which would otherwise wait request_timeout_ms for
# metadata that never comes.
_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def refused_topic(topic: str) -> kafka_errors.InvalidTopicError | None:
    """Why no broker will ever take a row for ``topic``, or None for a legal name."""
    if _LEGAL_TOPIC.fullmatch(topic) and topic not in (".", ".."):
        return None
    return kafka_errors.InvalidTopicError(f"{topic!r} is not a legal topic name")


def unpublishable(error: BaseException) -> bool:
    """Whether ``error`` from publishing a row means the row itself can never be published."""
    return isinstance(error, UNPUBLISHABLE)


def parking_reason(error: BaseException) -> str:
    """What a parked row says about why: the error's type and the client's or broker's words
    (they name sizes and topics, never the row's contents)."""
    return f"{type(error).__name__}: {error}"[:500]


_pending = (outbox_table.c.published_at.is_(None), outbox_table.c.discarded_at.is_(None))
# A row still parked: nothing published or discarded it yet.
_still_parked = (outbox_table.c.parked_at.is_not(None), *_pending)


def _behind_parked() -> sa.ColumnElement[bool]:
    """Whether a pending row waits behind a parked row of its key (same topic and key,
    earlier id): per-key order holds. Rows without a key have no order to keep."""
    parked = outbox_table.alias("parked")
    return sa.exists().where(
        parked.c.parked_at.is_not(None), parked.c.published_at.is_(None), parked.c.discarded_at.is_(None),
        parked.c.topic == outbox_table.c.topic, parked.c.key == outbox_table.c.key,
        parked.c.id < outbox_table.c.id,
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
        # Trace headers by Kafka key and by message position, set by a consumer around a batch
        # handler (runtime.inbox): an event goes on in the trace of the batch's message it
        # names as its cause, else of the message of its key; any other in the current span's.
        self.traces: Mapping[str, dict[str, str]] = {}

    def emit(self, topic: str, event: CloudEvent, key: str | None = None, cause: str | None = None) -> None:
        """``cause``: the position of the message that caused ``event``, for a batch handler
        whose output keys differ from its input's (the event goes on in that message's trace)."""
        payload = event.body()  # encoded once, for the signature and the row
        if self._signer is not None:
            event = self._signer.sign(event, body=payload)
        headers = [(k, v.decode()) for k, v in event.headers()]
        carried = self.traces.get(cause or "") or self.traces.get(key or "")
        headers.extend((carried or current_trace_headers()).items())
        self._rows.append({
            "topic": topic, "key": key.encode() if key else None, "headers": headers,
            "payload": payload, "event_type": event.type,
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
                 poll_seconds: float = 1.0, quiet_seconds: float = 0.0) -> None:
        self._engine = engine
        self._producer = producer
        self._batch_max = batch_max
        self._poll = poll_seconds
        self._quiet = quiet_seconds  # runtime.quiet: the poll's longest wait on a quiet network
        self._wake = asyncio.Event()
        self._contended = False  # the last pass found another replica's relay at work
        self.published = 0
        self.parked = 0
        # Why the relay publishes nothing now (runtime.broker_epoch: the broker is empty, and a
        # row sent would auto-create its topic with the broker's default partitions); None: it runs.
        self.held: str | None = None

    def wake(self) -> None:
        """Called after a commit that wrote outbox rows, so they leave without waiting."""
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.1
        pace = QuietWait(self._poll, self._quiet)
        while True:
            if self.held is not None:
                self._wake.clear()
                await pace.rest(self._wake, 1.0)
                continue
            # Cleared before the pass, not after: a commit that wakes it while it publishes
            # sends it round again instead of waiting for the poll.
            self._wake.clear()
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
            if sent or self._contended:
                pace.worked()
            if sent < self._batch_max:
                # Another replica holds the lock: its batch is being published, and ours may be
                # next in line, so look again soon rather than at the next poll.
                await pace.rest(self._wake, min(self._poll, 0.05) if self._contended else None)

    async def _learn_topics(self, topics: set[str]) -> None:
        """Ask the broker about every topic of a batch at once. A producer's first send to a
        topic waits for that topic's metadata, and the rows are sent one after another, so a
        batch for a hundred delivery topics new to this process waited a hundred round trips:
        seconds on Apache Kafka (bench/hops.py). A topic still unknown after a moment is left
        to its own send, which parks its row as before."""
        try:
            await asyncio.wait_for(asyncio.gather(
                *(self._producer.partitions_for(topic) for topic in topics), return_exceptions=True), 5.0)
        except TimeoutError:
            pass

    def _span(self, row: Any):
        """The relay's ``send`` span of a row, in the trace of the work that wrote it (the
        traceparent kept with the row): a report's trace goes on across the outbox."""
        attributes: dict[str, str | int] = {
            telemetry.MESSAGING_SYSTEM: "kafka", telemetry.OPERATION_TYPE: "send",
            telemetry.OPERATION_NAME: "send", telemetry.DESTINATION: row.topic, "punte.outbox.row": row.id}
        event_id = next((v for k, v in row.headers if k == "ce_id"), None)
        if event_id:
            attributes[telemetry.MESSAGE_ID] = event_id
        return tracer("runtime.outbox").start_as_current_span(
            f"send {row.topic}", context=context_from_text(row.headers), kind=SpanKind.PRODUCER,
            attributes=attributes)

    @staticmethod
    def _headers(row: Any, injects: bool) -> list[tuple[str, bytes]]:
        """The row's headers as sent, with the relay's span as the trace context: injected by
        the aiokafka instrumentation (its span inside the relay's) when it is on, else here."""
        headers = [(k, v.encode()) for k, v in row.headers if k not in telemetry.TRACE_HEADERS]
        if not injects:
            headers.extend((k, v.encode()) for k, v in current_trace_headers().items())
        return headers

    async def publish_batch(self) -> int:
        """Publish the next pending rows in id order; park the ones the broker will never
        take; how many rows this pass published or parked. A transient failure is raised
        (after the parking is committed), so ``run`` retries the batch."""
        transient: BaseException | None = None
        async with self._engine.begin() as conn:
            self._contended = not await conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(RELAY_LOCK)))
            if self._contended:
                return 0
            rows = (await conn.execute(
                sa.select(outbox_table.c.id, outbox_table.c.topic, outbox_table.c.key,
                          outbox_table.c.headers, outbox_table.c.payload)
                .where(*_pending, outbox_table.c.parked_at.is_(None), ~_behind_parked())
                .order_by(outbox_table.c.id).limit(self._batch_max)
            )).all()
            if not rows:
                return 0
            await self._learn_topics({row.topic for row in rows if refused_topic(row.topic) is None})
            injects = kafka_injects()
            blocked: set[tuple[str, bytes]] = set()  # keys with a row parked in this pass
            sent: list[tuple[Any, asyncio.Future]] = []
            parked: dict[int, str] = {}
            for row in rows:
                if row.key is not None and (row.topic, row.key) in blocked:
                    continue  # waits behind its key's parked row
                try:
                    if (refusal := refused_topic(row.topic)) is not None:
                        raise refusal
                    with self._span(row):
                        future = await self._producer.send(
                            row.topic, value=row.payload, key=row.key, headers=self._headers(row, injects))
                except Exception as exc:
                    if not unpublishable(exc):
                        raise  # nothing marked: the whole batch again later
                    parked[row.id] = parking_reason(exc)
                    if row.key is not None:
                        blocked.add((row.topic, row.key))
                    continue
                sent.append((row, future))
            results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
            published = []
            for (row, _), result in zip(sent, results, strict=True):
                if not isinstance(result, BaseException):
                    published.append(row.id)
                elif unpublishable(result):
                    # Refused by the broker itself: rows of its key sent in the same pass may
                    # have gone out already (decision 0021); the later ones wait.
                    parked[row.id] = parking_reason(result)
                else:
                    transient = transient or result
            for row_id, reason in parked.items():
                log.error("outbox row parked: the broker will not take it; an operator retries or "
                          "discards it (punte outbox parked)", row=row_id, reason=reason)
                await conn.execute(sa.update(outbox_table).where(outbox_table.c.id == row_id)
                                   .values(parked_at=sa.func.now(), parked_reason=reason))
            if transient is None and published:
                await conn.execute(
                    sa.update(outbox_table)
                    .where(any_of(outbox_table.c.id, published))
                    .values(published_at=sa.func.now())
                )
        if transient is not None:
            raise transient  # the rows sent stay pending and go again, as before
        self.published += len(published)
        self.parked += len(parked)
        return len(published) + len(parked)


@dataclass(frozen=True)
class ParkedRow:
    """A parked outbox row as the operator sees it: where it was going, why it is parked,
    and how many rows of its key wait behind it (never its contents)."""

    id: int
    topic: str
    key: str | None
    event_type: str
    event_id: str | None
    bytes: int
    created_at: datetime
    parked_at: datetime
    reason: str
    waiting: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": self.created_at.isoformat(),
                "parked_at": self.parked_at.isoformat()}


async def parked_rows(conn: AsyncConnection | AsyncSession, limit: int = 200) -> list[ParkedRow]:
    """The rows parked now, oldest first."""
    behind = outbox_table.alias("behind")
    waiting = (sa.select(sa.func.count()).select_from(behind)
               .where(behind.c.topic == outbox_table.c.topic, behind.c.key == outbox_table.c.key,
                      behind.c.id > outbox_table.c.id, behind.c.published_at.is_(None),
                      behind.c.discarded_at.is_(None))
               .scalar_subquery())
    rows = (await conn.execute(
        sa.select(outbox_table.c.id, outbox_table.c.topic, outbox_table.c.key, outbox_table.c.event_type,
                  outbox_table.c.headers, sa.func.length(outbox_table.c.payload).label("size"),
                  outbox_table.c.created_at, outbox_table.c.parked_at, outbox_table.c.parked_reason,
                  waiting.label("waiting"))
        .where(*_still_parked).order_by(outbox_table.c.id).limit(limit)
    )).all()
    return [ParkedRow(r.id, r.topic, r.key.decode(errors="replace") if r.key is not None else None,
                      r.event_type, dict(r.headers).get("ce_id"), r.size, r.created_at, r.parked_at,
                      r.parked_reason or "", r.waiting) for r in rows]


async def outbox_counts(conn: AsyncConnection | AsyncSession) -> dict[str, int]:
    """What the outbox holds that is not published: ``pending`` (the relay's to send),
    ``parked``, ``waiting_behind_parked`` (rows of a parked row's key) and ``discarded``."""
    parked = sa.and_(*_still_parked)
    row = (await conn.execute(sa.select(
        sa.func.count().filter(*_pending, outbox_table.c.parked_at.is_(None)).label("pending"),
        sa.func.count().filter(parked).label("parked"),
        sa.func.count().filter(*_pending, outbox_table.c.parked_at.is_(None), _behind_parked()).label("waiting"),
        sa.func.count().filter(outbox_table.c.discarded_at.is_not(None)).label("discarded"),
    ).where(outbox_table.c.published_at.is_(None)))).one()
    return {"pending": row.pending, "parked": row.parked, "waiting_behind_parked": row.waiting,
            "discarded": row.discarded}


async def oldest_unpublished_at(conn: AsyncConnection | AsyncSession) -> datetime | None:
    """When the oldest row the relay still owes the broker was written (parked rows aside:
    they have their own count); None when it owes none. How late the outbox is (/metrics)."""
    return await conn.scalar(sa.select(outbox_table.c.created_at).where(*_pending, outbox_table.c.parked_at.is_(None))
                             .order_by(outbox_table.c.id).limit(1))


async def parked_counts(conn: AsyncConnection | AsyncSession) -> tuple[int, int]:
    """How many rows are parked and how many wait behind them; cheap when none is parked
    (what readiness asks on every probe)."""
    parked = await conn.scalar(sa.select(sa.func.count()).select_from(outbox_table).where(*_still_parked)) or 0
    if not parked:
        return 0, 0
    waiting = await conn.scalar(sa.select(sa.func.count()).select_from(outbox_table).where(
        *_pending, outbox_table.c.parked_at.is_(None), _behind_parked())) or 0
    return parked, waiting


async def retry_parked(engine: AsyncEngine, row_id: int) -> bool:
    """Put a parked row back in line (the cause was fixed: topic created, limit raised);
    whether it was parked. If it still cannot be published it is parked again."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.update(outbox_table).where(outbox_table.c.id == row_id, *_still_parked)
                                    .values(parked_at=None, parked_reason=None))
    if result.rowcount:
        log.warning("parked outbox row put back in line", row=row_id)
    return bool(result.rowcount)


async def retry_all_parked(engine: AsyncEngine) -> int:
    """Put every parked row back in line (a rebuilt broker's topics exist again); how many.
    Those still refused are parked again, with their reason."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.update(outbox_table).where(*_still_parked)
                                    .values(parked_at=None, parked_reason=None))
    if result.rowcount:
        log.warning("every parked outbox row put back in line", rows=result.rowcount)
    return result.rowcount or 0


async def discard_parked(engine: AsyncEngine, row_id: int, by: str) -> bool:
    """Give up publishing a parked row: it is kept, marked discarded and by whom, never
    published; the rows of its key go on. Whether it was parked."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.update(outbox_table).where(outbox_table.c.id == row_id, *_still_parked)
                                    .values(discarded_at=sa.func.now(), discarded_by=by))
    if result.rowcount:
        log.warning("parked outbox row discarded", row=row_id, by=by)
    return bool(result.rowcount)


async def mark_pending_again(conn: AsyncConnection, since_id: int = 0) -> int:
    """Mark published rows (from ``since_id``) pending again, in the caller's transaction,
    so the relay re-sends them (a broker rebuilt: decision 0026); how many."""
    result = await conn.execute(sa.update(outbox_table).where(
        outbox_table.c.id >= since_id, outbox_table.c.published_at.is_not(None)).values(published_at=None))
    return result.rowcount or 0


async def replay(engine: AsyncEngine, since_id: int = 0) -> int:
    """``mark_pending_again`` in a transaction of its own."""
    async with engine.begin() as conn:
        return await mark_pending_again(conn, since_id)
