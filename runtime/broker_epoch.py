"""Broker epochs (issue #12 item 4, decision 0026): which broker log the network is on.

A broker that comes back empty (the embedded broker keeps its log in memory; a lost cluster
rebuilt) numbers every partition from 0 again and remembers no consumer offsets. Nothing in
the Kafka protocol says so (Tansu's cluster id is fixed), so the network writes it down: the
first record (offset 0) of the topic ``punte.broker-epoch`` is the epoch, a uuid and when it
was claimed. Whoever provisions a broker (the stack, `punte replay`) creates the topics and
``claim``s an epoch; every service ``read``s it and compares it with the epochs it recorded in
its own database (``punte_broker_epochs``): ``decide``.

- missing: no marker (the broker is empty or not provisioned): the relay holds, so that
  nothing auto-creates a topic with the wrong partitions, and the consumers wait.
- first: a fresh database: recorded, nothing else.
- same: nothing to do.
- new: recorded, the kept outbox marked pending again (republished), parked rows retried,
  and the consumers read every partition of the new log from its beginning.
- unfinished: the latest recorded epoch, but its rewind not finished (the service stopped
  or crashed before each of its consumers had committed the beginning of every partition
  it was assigned): the consumers rewind again; nothing is republished again.

An epoch's rewind is finished (``rewound_at``) once every consumer of the process has
overwritten the group's committed offset of each partition it was assigned with that
partition's beginning: from then on the group's offsets are the new log's, so trusting
them after a restart skips nothing.

The pure decision is ``decide``; the adapters are ``claim``/``read`` (the broker) and
``recorded``/``record`` (the service's database); ``EpochWatch`` runs them for a service."""
from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    LeaderNotAvailableError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.record.memory_records import MemoryRecords
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.reference import BROKER_EPOCH_TOPIC, institutions, retention, topic_partitions
from runtime.kafka import client_options, ensure_topics, make_producer, running, topic_configs
from runtime.log import get_logger
from runtime.outbox import mark_pending_again, retry_all_parked
from runtime.settings import Settings

log = get_logger("runtime.broker_epoch")

TOPIC = BROKER_EPOCH_TOPIC
# One partition (offset 0 is the epoch for everyone), kept for ever: a marker that expired
# would make a live broker look empty.
TOPIC_CONFIG = {"retention.ms": "-1"}
KEY = b"punte-broker-epoch"
# Why a service holds: machine-readable, in readiness, /stats and `punte status`.
BROKER_EMPTY = "broker-empty"
BROKER_UNREACHABLE = "broker-unreachable"

epochs_table = sa.table(
    "punte_broker_epochs",
    sa.column("epoch_id", sa.Text), sa.column("ordinal", sa.Integer),
    sa.column("seen_at", sa.DateTime(timezone=True)),
    # NULL: this service's consumers have not finished reading the epoch's log from its beginning.
    sa.column("rewound_at", sa.DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Epoch:
    id: str
    created_at: datetime

    def encoded(self) -> bytes:
        return json.dumps({"epoch": self.id, "created_at": self.created_at.isoformat()}).encode()

    @staticmethod
    def decoded(value: bytes) -> "Epoch":
        document = json.loads(value)
        return Epoch(str(document["epoch"]), datetime.fromisoformat(document["created_at"]))


Seen = Literal["missing", "first", "same", "new", "unfinished"]


@dataclass(frozen=True)
class Recorded:
    """An epoch a service recorded, and whether its consumers finished rewinding in it."""

    id: str
    rewound: bool = True


def decide(recorded: Sequence[Recorded], current: Epoch | None) -> Seen:
    """What a service does about the broker's epoch ``current`` (None: no marker), given the
    epochs it recorded, oldest first. Only the latest counts: a broker back on an older epoch
    is a log the service has not read either, so it is new again (repeats are harmless). The
    latest whose rewind did not finish is "unfinished": rewind again, republish nothing."""
    if current is None:
        return "missing"
    if not recorded:
        return "first"
    latest = recorded[-1]
    if latest.id != current.id:
        return "new"
    return "same" if latest.rewound else "unfinished"


# --- the broker ----------------------------------------------------------------------------

async def read(bootstrap: str, timeout: float = 10.0, settings: Settings | None = None) -> Epoch | None:
    """The broker's epoch: the first record of ``TOPIC``; None when the topic is missing or
    empty. Asks whether the topic exists first, so a missing topic is not auto-created.
    ``settings``: whose credentials (default: the environment's, PUNTE_KAFKA_*)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=50, request_timeout_ms=int(timeout * 1000),
                                **client_options(settings))
    async with running(consumer):
        if await _marker_partitions(consumer._client) is None:
            return None
        tp = TopicPartition(TOPIC, 0)
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if end <= first:
            return None
        consumer.assign([tp])
        consumer.seek(tp, first)
        async with asyncio.timeout(timeout):
            while True:
                records = (await consumer.getmany(tp, timeout_ms=200)).get(tp)
                if records:
                    return Epoch.decoded(records[0].value)


class EpochReader:
    """Reads the broker's epoch as `read` does, with one client kept from look to look: the
    services' watch looks every few seconds for as long as they run, and a new client per look
    asked at its start for the metadata of every topic of the network (about 300 topics, 20
    KiB a look) and opened two connections (issue #14: the idle network's CPU). A kept look
    asks for the marker topic's metadata (never creating it) and fetches its first record, at
    once. It tracks no topic: a client that tracked the marker's would ask for it, and so
    create it with the broker's defaults, on a broker that came back empty. A look that fails
    drops the client; the next one starts afresh, as every look did before."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._client: AIOKafkaClient | None = None
        self._bootstrap: str | None = None

    async def read(self, bootstrap: str, timeout: float = 10.0) -> Epoch | None:
        try:
            async with asyncio.timeout(timeout):
                client = await self._kept(bootstrap, timeout)
                found = await _first_record_at_zero(client)
        except BaseException:
            await self.close()
            raise
        return await read(bootstrap, timeout, self._settings) if found is _UNSETTLED else found

    async def _kept(self, bootstrap: str, timeout: float) -> AIOKafkaClient:
        if self._client is not None and self._bootstrap == bootstrap:
            return self._client
        await self.close()
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000),
                                **client_options(self._settings))
        await client.bootstrap()
        self._client, self._bootstrap = client, bootstrap
        return client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


# A look the kept client cannot settle with one fetch at offset 0 (the log starts later,
# records deleted by hand; or the broker answered without the partition): the full read does.
_UNSETTLED = object()
# The marker is one small record; its first batch fits many times over. Tansu answers a fetch
# that may wait for nothing (0 ms, 0 bytes) with no data at all, so the fetch asks for one byte
# with a short wait: answered at once when the marker is there.
_MARKER_FETCH_BYTES = 64 * 1024
_MARKER_FETCH_WAIT_MS = 100


async def _first_record_at_zero(client: AIOKafkaClient) -> Epoch | None | object:
    """The record at offset 0 of ``TOPIC``; None when the topic is missing or empty;
    ``_UNSETTLED`` when one fetch there cannot say."""
    partitions = await _marker_partitions(client)
    if partitions is None:
        return None
    leader = next((p["leader"] for p in partitions if p["partition"] == 0), -1)
    if leader < 0:
        raise LeaderNotAvailableError(f"no leader for {TOPIC}[0]")
    response = await client.send(leader, FetchRequest(_MARKER_FETCH_WAIT_MS, 1, _MARKER_FETCH_BYTES, 0,
                                                      [(TOPIC, [(0, 0, _MARKER_FETCH_BYTES)])]))
    # Read as aiokafka's own fetcher does (each version nests the fields alike; to_object()
    # fails on the null aborted-transactions list Apache Kafka sends).
    answered = [(error, highwater, data[-1]) for topic, answers in response.topics if topic == TOPIC
                for partition, error, highwater, *data in answers if partition == 0]
    if not answered:
        return _UNSETTLED
    error, highwater, records = answered[0]
    if error == OffsetOutOfRangeError.errno:
        return _UNSETTLED
    if error:
        raise for_code(error)(f"fetch of {TOPIC}[0]")
    if highwater <= 0:
        return None  # created, not yet written: no epoch claimed
    batch = MemoryRecords(records).next_batch()
    for record in batch or ():
        return Epoch.decoded(record.value)
    return _UNSETTLED


async def _marker_partitions(client: AIOKafkaClient) -> list[dict] | None:
    """The partitions of ``TOPIC`` (None: the broker has no such topic), asking for that topic
    alone and never creating it. The topic list (``consumer.topics()``) describes every
    partition of the network: every service asks every few seconds, and that was most of what
    the watch cost an idle network (bench/README.md, issue #14). aiokafka has no public call
    for one topic's metadata that does not create it, so the request goes through its client
    (aiokafka <0.15, pinned; tests/integration/test_broker_epoch_reads.py)."""
    node = client.get_random_node()
    if node is None:
        raise KafkaConnectionError("no broker known to ask for the epoch topic")
    response = await client.send(node, MetadataRequest([TOPIC], allow_auto_topic_creation=False))
    found = [t for t in response.to_object()["topics"] if t["topic"] == TOPIC]
    if not found or found[0]["error_code"] == UnknownTopicOrPartitionError.errno:
        return None
    error = found[0]["error_code"]
    if error:
        raise for_code(error)(f"metadata of {TOPIC}")
    return found[0]["partitions"]


async def claim(bootstrap: str, settings: Settings | None = None) -> Epoch:
    """The broker's epoch, claiming a new one when it has none: creates ``TOPIC``, writes a
    marker if it is empty and returns the first record. Two claims at once both write, and
    both return offset 0's: everyone agrees."""
    await ensure_topics(bootstrap, [(TOPIC, 1)], configs={TOPIC: TOPIC_CONFIG}, settings=settings)
    found = await read(bootstrap, settings=settings)
    if found is not None:
        return found
    mine = Epoch(str(uuid.uuid4()), datetime.now(timezone.utc))
    producer = make_producer(bootstrap, settings)
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, mine.encoded(), key=KEY, partition=0)
    finally:
        await producer.stop()
    found = await read(bootstrap, settings=settings)
    if found is None:
        raise RuntimeError(f"the broker epoch written to {TOPIC} cannot be read back")
    if found.id == mine.id:
        log.warning("a new broker epoch claimed", epoch=found.id)
    return found


def network_topics(retention_file: Path | None = None) -> tuple[list[tuple[str, int]], dict[str, dict[str, str]]]:
    """The network's topics (contracts/topics.yaml, every institution's) and their configuration
    at creation (ingress topics keep retention.yaml's ingress_days, issue #11)."""
    plan = topic_partitions(institutions())
    return plan, topic_configs(plan, retention(retention_file).ingress_days)


async def provision(bootstrap: str, retention_file: Path | None = None, settings: Settings | None = None) -> Epoch:
    """Make ``bootstrap`` the network's broker: every topic that is missing created with its
    partitions and configuration, then the epoch claimed (a new one when the broker had none).
    What `punte up` does at start and after the embedded broker restarted empty, and `punte
    replay` by hand; run twice, it changes nothing the second time."""
    plan, configs = network_topics(retention_file)
    await ensure_topics(bootstrap, plan, configs=configs, settings=settings)
    return await claim(bootstrap, settings)


# --- the service's database ----------------------------------------------------------------

async def recorded(engine: AsyncEngine) -> list[Recorded]:
    """The epochs this service recorded, oldest first."""
    async with engine.connect() as conn:
        return await _recorded(conn)


async def _recorded(conn: AsyncConnection) -> list[Recorded]:
    rows = await conn.execute(
        sa.select(epochs_table.c.epoch_id, epochs_table.c.rewound_at).select_from(epochs_table)
        .order_by(epochs_table.c.ordinal))
    return [Recorded(epoch_id, rewound_at is not None) for epoch_id, rewound_at in rows]


async def _record(conn: AsyncConnection, epoch: Epoch, rewound: bool) -> int:
    """Record ``epoch`` as the latest (``rewound``: nothing to read again); its ordinal (1 for
    the first)."""
    ordinal = (await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(epochs_table.c.ordinal), 0))
                                 .select_from(epochs_table))) + 1
    await conn.execute(sa.insert(epochs_table).values(
        epoch_id=epoch.id, ordinal=ordinal, seen_at=sa.func.now(),
        rewound_at=sa.func.now() if rewound else None))
    return ordinal


async def _record_rewound(engine: AsyncEngine, epoch_id: str) -> bool:
    """The rewind in ``epoch_id`` finished, if it is still the latest epoch; whether it was."""
    async with engine.begin() as conn:
        latest = sa.select(sa.func.max(epochs_table.c.ordinal)).select_from(epochs_table).scalar_subquery()
        result = await conn.execute(
            sa.update(epochs_table)
            .where(epochs_table.c.ordinal == latest, epochs_table.c.epoch_id == epoch_id,
                   epochs_table.c.rewound_at.is_(None))
            .values(rewound_at=sa.func.now()))
        return bool(result.rowcount)


# --- a service watching its broker -----------------------------------------------------------

@dataclass
class Observed:
    """What a service knows of its broker's epoch now: readiness, /stats, `punte status`."""

    state: str = "unknown"  # unknown (not read yet), current, missing, unreachable
    epoch: str | None = None
    ordinal: int = 0  # this service's count of epochs (1: the first it saw)
    changes: int = 0  # new epochs noticed by this process
    republished: int = 0  # outbox rows marked pending again for them
    # Whether the consumers finished reading this epoch's log from its beginning (False: the
    # rewind is in progress; None: not known yet).
    rewound: bool | None = None
    error: str | None = None

    @property
    def reason(self) -> str | None:
        return {"missing": BROKER_EMPTY, "unreachable": BROKER_UNREACHABLE}.get(self.state)

    def public(self) -> dict[str, object]:
        return {"state": self.state, "epoch": self.epoch, "ordinal": self.ordinal, "reason": self.reason,
                "changes": self.changes, "republished": self.republished, "rewound": self.rewound}


class EpochWatch:
    """One service's watch on its broker's epoch, every ``period`` seconds.

    ``hold(reason)`` and ``go(rewind)`` are the runtime's: the first stops the relay and the
    consumers (the broker is empty), the second lets them go, the consumers reading every
    partition from its beginning when ``rewind``. ``on_new(conn, epoch id)`` runs in the
    transaction that records a new epoch (the audit starts a new trail epoch there).
    ``rewound()``: whether every consumer finished the rewind it was last told (committed the
    beginning of each partition it was assigned); the watch then records the epoch rewound."""

    def __init__(self, engine: AsyncEngine, bootstrap: str, period: float,
                 hold: Callable[[str], Awaitable[None]], go: Callable[[bool], Awaitable[None]],
                 on_new: Callable[[AsyncConnection, str], Awaitable[None]] | None = None,
                 read_epoch: Callable[[str], Awaitable[Epoch | None]] = read,
                 rewound: Callable[[], bool] = lambda: True) -> None:
        self._engine, self._bootstrap, self._period = engine, bootstrap, period
        self._hold, self._go, self._on_new, self._read = hold, go, on_new, read_epoch
        self._rewound = rewound
        # The epoch this process told its consumers to rewind in (None: none yet).
        self._rewinding: str | None = None
        self.observed = Observed()
        self._going = False  # whether the relay and consumers run
        self._checking = asyncio.Lock()  # the loop and an operator's request, one at a time

    async def check(self) -> Seen | None:
        """One look at the broker; what it decided (None: the broker could not be asked)."""
        async with self._checking:
            return await self._check()

    async def _check(self) -> Seen | None:
        try:
            current = await self._read(self._bootstrap)
        except Exception as exc:  # broker away: the clients retry by themselves; nothing to decide
            error = repr(exc)[:300]
            if error != self.observed.error:  # once per new error, not once per look
                log.warning("the broker's epoch could not be read: nothing is published or read "
                            "until it is", error=error, state=self.observed.state)
            self.observed.error = error
            if self.observed.state == "unknown":
                self.observed.state = "unreachable"
            return None
        self.observed.error = None
        if current is None:
            if self.observed.state != "missing":
                log.error("the broker has no epoch marker (empty or not provisioned): the relay and "
                          "consumers hold until it is rebuilt (punte replay)", topic=TOPIC)
            self.observed.state = "missing"
            if self._going:  # the runtime starts held: only a running relay has to stop
                self._going = False
                await self._hold(BROKER_EMPTY)
            return "missing"
        if self._steady(current):
            return "same"
        # Decided and acted on under a lock: replicas of the service record an epoch once.
        async with self._engine.begin() as conn:
            await conn.execute(sa.text("LOCK TABLE punte_broker_epochs IN EXCLUSIVE MODE"))
            seen = decide(await _recorded(conn), current)
            republished = 0
            if seen in ("first", "new"):
                # A first epoch has nothing to read again: its consumers start from the beginning.
                ordinal = await _record(conn, current, rewound=seen == "first")
                if seen == "new":
                    if self._on_new is not None:
                        await self._on_new(conn, current.id)
                    republished = await mark_pending_again(conn)
            else:
                ordinal = len(await _recorded(conn))
        rewind = seen == "new"
        if rewind:
            retried = await retry_all_parked(self._engine)
            self.observed.changes += 1
            self.observed.republished += republished
            log.warning("a new broker epoch: the kept outbox is published again and the consumers "
                        "read the new log from its beginning", epoch=current.id, ordinal=ordinal,
                        republished=republished, parked_retried=retried)
        self.observed.ordinal = ordinal
        changed_here = self.observed.epoch is not None and self.observed.epoch != current.id
        # Another replica recorded it first: this process's consumers still read the old log.
        # Unfinished and not told here: the process that told them stopped (or crashed) first.
        rewind = rewind or changed_here or (seen == "unfinished" and self._rewinding != current.id)
        if seen == "unfinished" and not rewind:
            # Told here: finished once every consumer committed every partition's beginning.
            if self._rewound() and await _record_rewound(self._engine, current.id):
                log.warning("the consumers read the new broker epoch's log from its beginning",
                            epoch=current.id, ordinal=ordinal)
                seen = "same"
        elif seen == "unfinished":
            log.warning("the rewind in this broker epoch was not finished (the service stopped "
                        "first): the consumers read its log from its beginning again", epoch=current.id)
        if rewind:
            self._rewinding = current.id
        self.observed.rewound = seen in ("first", "same")
        self.observed.state, self.observed.epoch = "current", current.id
        if rewind or not self._going:
            self._going = True
            await self._go(rewind)
        return seen

    def _steady(self, current: Epoch) -> bool:
        """Whether ``current`` is the epoch this process last found recorded and rewound, its
        relay and consumers running: then the database has nothing new to say (only a new
        epoch on the broker changes what is recorded), and the look ends without a
        transaction. Every other case (a new or unfinished epoch, held) asks the database."""
        return (self._going and self.observed.state == "current" and self.observed.epoch == current.id
                and self.observed.rewound is True)

    async def run(self) -> None:
        while True:
            # Held (no marker, or not read yet): look again soon, the broker may be rebuilt;
            # rewinding: soon too, to record the rewind finished.
            soon = not self._going or self.observed.rewound is False
            await asyncio.sleep(min(self._period, 1.0) if soon else self._period)
            await self.check()
