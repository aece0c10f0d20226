"""Idempotent consumer: a polled batch is processed in one database transaction, each
message recorded in the inbox table so a redelivered or replayed one has no second effect.

Offsets are committed to Kafka only after the database commit. A message whose handler
keeps failing waits for its verdict (decision 0022): when a good message follows it (or
nothing does for a while) it failed alone, a poison message, and is dead-lettered (through
the outbox, in the same transaction) with its position, digest and reason, its body sealed
in the service's own database (runtime.dead_letters), and its sender is told when the
service knows how. When too many fail in a row, or in a minute, the fault is ours (a bug,
a missing table, a bad deployment): the consumer stops without committing past them,
dead-letters none of them and answers no one, until an operator resumes it. A transient
fault (database or broker away) rolls the batch back and it is retried with backoff, so
nothing is lost.

Messages on the network's own topics (every topic but institutions' ingress topics, whose
signatures runtime.ingress checks) must carry the network's signature: one that does not
is never handed to the handler but dead-lettered with the signature's refusal code."""
from __future__ import annotations

import asyncio
import re
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord, TopicPartition
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.reference import from_an_institution
from contracts.refusals import Refused, reason
from runtime import db, dead_letters, telemetry
from runtime.cloudevents import CloudEvent, decode, derived_id, header_map
from runtime.data_keys import DataKeys
from runtime.kafka import make_consumer, running
from runtime.log import get_logger
from runtime.outbox import Outbox
from runtime.signing import NETWORK, Keyring, SigningKey
from runtime.telemetry import context_from_headers, trace_headers_of, tracer

log = get_logger("runtime.inbox")

inbox_table = sa.table(
    "punte_inbox",
    sa.column("message_key", sa.Text), sa.column("topic", sa.Text),
    sa.column("partition", sa.Integer), sa.column("offset", sa.BigInteger),
    sa.column("event_type", sa.Text),
)

DEAD_LETTER_TOPIC = "punte.deadletter"
DEAD_LETTER_TYPE = "ro.punte.deadletter.v2"
# The failed message's headers a dead letter repeats: the CloudEvents attributes that say
# which event it was. Others (signatures, trace context, whatever a sender added) stay in
# the sealed body; so do values longer than an id needs.
IDENTIFYING_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time")
IDENTIFYING_MAX = 200
# How long a consumer's loop waits for records before a pass without any. Records end the
# wait at once; the timeout only paces what a pass checks besides them (a rebalance's
# offsets to rewind, failures held past their hold), and each pass walks every assigned
# partition: five a second did so with nothing to do (issue #14: the idle network's CPU).
IDLE_POLL_MS = 1000


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    @staticmethod
    def of(record: ConsumerRecord) -> "Message":
        return Message(record.topic, record.partition, record.offset, record.key, record.value,
                       tuple(record.headers or ()), record.timestamp)

    @cached_property
    def header_text(self) -> dict[str, str]:
        """Every header as text (``cloudevents.header_map``): the runtime and the handlers
        ask for several headers of each message, so they are decoded once."""
        return header_map(self.headers)

    @cached_property
    def event(self) -> CloudEvent:
        """The message as a CloudEvent (EnvelopeError when it is not one), decoded once: the
        signature check and the handler read the same event."""
        return decode(self.headers, self.value)

    def header(self, name: str) -> str | None:
        return self.header_text.get(name)

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class CarriedTraces(Mapping[str, dict[str, str]]):
    """The trace headers of a batch's messages by position and by Kafka key when nothing is
    recorded (decision 0036, amended): each message's trace context goes on as it came, and
    one that carries none starts a trace of its own, as a span would. Worked out only for
    the names an event is written for: the audit trail writes none, and a span per message
    was 13 % of its time (bench/README.md, the eighth session of issue #14). Where names
    repeat, the later message's wins."""

    def __init__(self, messages: Sequence[Message]) -> None:
        self._messages = messages
        self._by_name: dict[str, int] | None = None
        self._carried: dict[int, dict[str, str]] = {}

    def _index(self) -> dict[str, int]:
        if self._by_name is None:
            self._by_name = {}
            for i, m in enumerate(self._messages):
                self._by_name[m.position] = i
                if m.key is not None:
                    self._by_name[m.key.decode(errors="replace")] = i
        return self._by_name

    def get(self, name: str, default: Any = None) -> Any:
        # Outbox.emit asks for names no message has (no cause, another key): answered
        # without raising KeyError, which Mapping.get would catch, once per event written.
        i = self._index().get(name)
        return default if i is None else self._headers_of(i)

    def __getitem__(self, name: str) -> dict[str, str]:
        return self._headers_of(self._index()[name])

    def _headers_of(self, i: int) -> dict[str, str]:
        if i not in self._carried:
            message = self._messages[i]
            found = context_from_headers(message.headers)
            if not trace.get_current_span(found).get_span_context().is_valid:
                # A root: the context it carries, not the handler's current one.
                found = trace.set_span_in_context(tracer("runtime.inbox").start_span(
                    f"process {message.topic}", context=found, kind=SpanKind.CONSUMER))
            self._carried[i] = trace_headers_of(found)
        return self._carried[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._index())


def event_key(source: str, event_id: str) -> str:
    """The inbox key of an event (CloudEvents ids are unique per source)."""
    return f"{source}|{event_id}"


def key_by_event_id(message: Message) -> str:
    """A message keyed by its event; one without source and id, by its position."""
    source, event_id = message.header("ce_source"), message.header("ce_id")
    return event_key(source, event_id) if source and event_id else f"@{message.position}"


def key_by_position(message: Message) -> str:
    return f"@{message.position}"


def check_network_signature(message: Message, network_keys: Keyring) -> None:
    """Raise a Refused (MISSING_SIGNATURE, UNKNOWN_KEY, BAD_SIGNATURE, or the envelope's
    code) unless ``message`` is a readable event signed with one of ``network_keys``."""
    network_keys.verify_event(NETWORK, message.event, message.value or b"")


@dataclass
class UnitOfWork:
    """What a handler gets: the open transaction and the outbox writing into it."""

    session: AsyncSession
    outbox: Outbox
    source: str
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # A dead letter applied again by an operator: its answer to the sender replaces the
    # PROCESSING_FAILED one it was given (decision 0022).
    replaying: bool = False


Handler = Callable[[UnitOfWork, Message], Awaitable[None]]
FailureHandler = Callable[[UnitOfWork, Message, str, str], Awaitable[None]]
BatchHandler = Callable[[UnitOfWork, list[Message]], Awaitable[None]]
# A service's work on a message that needs no database (parsing, canonical bytes, hashes),
# done ahead on the next batch and kept with the message (its result is not used); it must
# not raise (InboxConsumer).
Prepare = Callable[[Message], object]
# The messages read ahead while a batch is written, at most a batch of them.
PollAhead = Callable[[], Awaitable[list[Message]]]


def dead_letter(uow: UnitOfWork, message: Message, service: str, code: str, detail: str,
                group: str | None = None) -> None:
    """Put on the dead-letter topic where the message was, the digest of its value and why
    (``detail`` must never quote the input), through the outbox; its body is kept sealed
    by this service (runtime.dead_letters), in the same transaction, never sent. ``group``:
    the consumer group that failed it, which a replay goes through."""
    kept = uow.outbox.keep_dead_letter(dead_letters.Body(
        message.topic, message.partition, message.offset, message.key, message.headers,
        message.value, code, uow.now, group))
    headers = header_map(message.headers)
    data = {
        "reason": reason(code, detail),
        "service": service, "topic": message.topic, "partition": message.partition,
        "offset": message.offset,
        "headers": {name: headers[name] for name in IDENTIFYING_HEADERS
                    if name in headers and len(headers[name]) <= IDENTIFYING_MAX},
        "value_sha256": dead_letters.digest(message.value), "value_bytes": len(message.value or b""),
        "body_kept": kept, "failed_at": uow.now.isoformat(),
    }
    # Its id derives from the message (ADR 0023): the same failure found again is the same dead letter.
    uow.outbox.emit(DEAD_LETTER_TOPIC, CloudEvent.new(
        DEAD_LETTER_TYPE, uow.source, data, id=derived_id(key_by_event_id(message), "dead-letter", service, code)),
        key=message.position)


ROOT = Path(__file__).resolve().parent.parent


def failure_detail(error: BaseException) -> str:
    """What a dead letter and the log say about a handler's failure: the exception's type,
    the driver's error class and SQLSTATE for a database error, the fields of a failed
    validation, and where in our code it was raised. Never its message: a database or a
    validator quotes the values it refused (a mistyped CNP, a name)."""
    parts = [type(error).__name__]
    original = getattr(error, "orig", None)
    if original is not None:  # sqlalchemy DBAPIError
        driver = original.__cause__ or original  # SQLAlchemy's adapter wraps asyncpg's error
        sqlstate = getattr(original, "sqlstate", None) or getattr(driver, "sqlstate", None)
        parts.append(f"({type(driver).__name__}{f', SQLSTATE {sqlstate}' if sqlstate else ''})")
    if isinstance(error, ValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"]) + f" {e['type']}" for e in error.errors()})
        parts.append(f"[{'; '.join(fields[:5])}]")
    where = _raised_in(error)
    if where:
        parts.append(f"at {where}")
    return " ".join(parts)[:500]


def _raised_in(error: BaseException) -> str | None:
    """The innermost frame of the traceback that is the project's code: path:line (function)."""
    found = None
    for frame, line in traceback.walk_tb(error.__traceback__):
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(ROOT) and ".venv" not in path.parts:
            found = f"{path.relative_to(ROOT)}:{line} ({frame.f_code.co_name})"
    return found


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, (OperationalError, InterfaceError, ConnectionError, OSError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


@dataclass(frozen=True)
class FailureLimits:
    """When failures are ours rather than the messages' (settings consumer_max_*; 0: never)."""

    consecutive: int = 5  # more failures than this in a row stop the consumer
    per_minute: int = 20  # more dead letters for failures than this in a minute stop it
    hold_seconds: float = 30.0  # a failure nothing follows is judged poison after this


@dataclass(frozen=True)
class Failure:
    """A message whose handler failed, waiting for its verdict (not in the inbox yet)."""

    message: Message
    key: str
    detail: str


class FailureLimitReached(Exception):
    """Too many failures: the batch rolls back and the consumer stops (Stopped)."""

    def __init__(self, limit: str, reason: str, position: str, detail: str) -> None:
        super().__init__(reason)
        self.limit, self.reason, self.position, self.detail = limit, reason, position, detail


class _MessageFailed(Exception):
    """A message of a batch applied whole failed (its error is the cause): the batch is
    rolled back and applied again split in halves, in savepoints that isolate it."""


@dataclass(frozen=True)
class Stopped:
    """Why a consumer stopped, for readiness (no detail: it is public) and /stats."""

    limit: str  # consecutive-failures | failures-per-minute | batch-failures
    reason: str
    position: str  # the first message it did not commit past
    detail: str  # the last failure: its type, SQLSTATE and where (failure_detail)
    since: datetime

    def public(self) -> dict[str, str]:
        return {"limit": self.limit, "reason": self.reason, "position": self.position,
                "since": self.since.isoformat()}


class ReplayFailed(Exception):
    """The handler failed again on a replayed dead letter; nothing changed."""


class FetchPace:
    """How long the broker may hold this consumer's fetches (decision 0033): ``busy_ms``
    while records come, ``idle_ms`` once none came for ``idle_after`` seconds, back to
    ``busy_ms`` with the first records. Each fetch of many partitions costs Tansu CPU
    whether or not anything is new; Apache Kafka answers a held fetch as soon as a record
    arrives, so there a long wait costs nothing, and on Tansu only the first message after
    a quiet spell waits longer.

    ``busy_min_bytes``: while records come, the broker holds a fetch until this much is new
    (or the wait ends), so a consumer nobody waits on takes one batch a wait rather than a
    few records at each of the broker's looks; once quiet, the first record is answered
    at once (1 byte), as before."""

    def __init__(self, busy_ms: int, idle_ms: int, idle_after: float = 5.0, busy_min_bytes: int = 1) -> None:
        self.busy_ms, self.idle_ms, self.idle_after = busy_ms, idle_ms, idle_after
        self.busy_min_bytes = busy_min_bytes
        self.current = busy_ms
        self._last = time.monotonic()

    def restart(self) -> None:
        """A new client starts busy."""
        self.current, self._last = self.busy_ms, time.monotonic()

    def wait_after(self, got_records: bool, now: float) -> int:
        """The wait the next fetches should use, after a poll that got records or not."""
        if got_records:
            self._last = now
            return self.busy_ms
        return self.idle_ms if now - self._last >= self.idle_after else self.current

    def min_bytes(self, wait: int) -> int:
        """What the broker must have before it answers, with ``wait``: the busy amount while
        busy, one byte once quiet."""
        return self.busy_min_bytes if wait == self.busy_ms else 1

    def polled(self, consumer: AIOKafkaConsumer, got_records: bool) -> None:
        wait = self.wait_after(got_records, time.monotonic())
        if wait == self.current:
            return
        # aiokafka has no setter; its fetcher reads these attributes for every fetch request
        # it builds (aiokafka <0.15, pinned; tests/integration/test_inbox_batches.py checks it).
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms") and hasattr(fetcher, "_fetch_min_bytes"):
            fetcher._fetch_max_wait_ms = wait
            fetcher._fetch_min_bytes = self.min_bytes(wait)
            self.current = wait


class InboxConsumer:
    def __init__(
        self, *, service: str, group_id: str, bootstrap: str, sessions: async_sessionmaker,
        handler: Handler, topics: list[str] | None = None, pattern: str | None = None,
        message_key: Callable[[Message], str] = key_by_event_id,
        on_failure: FailureHandler | None = None, signer: SigningKey | None = None,
        batch_max: int = 500, attempts: int = 3, after_commit: Callable[[], None] | None = None,
        batch_handler: BatchHandler | None = None, network_keys: Keyring | None = None,
        data_keys: DataKeys | None = None, limits: FailureLimits = FailureLimits(),
        fetch_max_wait_ms: int = 50, idle_fetch_max_wait_ms: int = 0, fetch_min_bytes: int = 1,
        after_applied: Callable[[], None] | None = None, prepare: Prepare | None = None,
    ) -> None:
        """``network_keys``: the network's public keys, which every message not on an
        ingress topic must be signed with; None checks nothing (the audit trail, which
        records every message as it arrives). ``data_keys``: where the bodies of
        dead-lettered messages are sealed (None: none is kept). ``after_commit``: called
        after a commit that wrote events (the relay's wake); ``after_applied``: after one
        that applied messages (e.g. the audit tree's wake). ``fetch_max_wait_ms``,
        ``idle_fetch_max_wait_ms``, ``fetch_min_bytes``: the broker's hold on its fetches
        while records come and once quiet, and what must be new while they come (FetchPace).
        ``prepare``: the service's pure work on a batch, done on the next batch the client
        already holds while this one's transaction is in PostgreSQL (``process_reading_ahead``)."""
        self.service = service
        self._group_id = group_id
        self._bootstrap = bootstrap
        self._sessions = sessions
        self._handler = handler
        self._topics = topics
        self._pattern = pattern
        self._key = message_key
        self._on_failure = on_failure
        self._signer = signer
        self._batch_max = batch_max
        self._attempts = attempts
        self._after_commit = after_commit
        self._after_applied = after_applied
        self._batch_handler = batch_handler
        self._prepare = prepare
        self._network_keys = network_keys
        self._data_keys = data_keys
        self._limits = limits
        self._pace = FetchPace(fetch_max_wait_ms, max(fetch_max_wait_ms, idle_fetch_max_wait_ms),
                               busy_min_bytes=fetch_min_bytes)
        self._source = f"/punte/{service}"
        self.processed = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self.batch_failures = 0  # batches that failed whole and were tried again
        # For /metrics (runtime/metrics.py): the running client (its partitions' lag is
        # read from it at a scrape, nothing is counted per poll) and when it last polled.
        self._client: AIOKafkaConsumer | None = None
        self.polled_at = time.time()  # of its start, until it polls
        self.assigned = False
        # Whether the running client joined its group (even with no partition for it):
        # readiness. A rebalance leaves it joined; a client that stops is not.
        self.joined = False
        # A failure limit stopped it (None: running), how often, and the operator's resume.
        self.stopped: Stopped | None = None
        self.stops = 0
        self._resume = asyncio.Event()
        # When the handler's failures of the last minute were dead-lettered (monotonic).
        self._failed_at: deque[float] = deque()
        # Broker epochs (runtime.broker_epoch, decision 0026): the consumer reads only while
        # the broker is provisioned (``go``); after a new epoch each client it starts reads
        # every partition from its beginning, whatever offsets the new broker holds.
        self._provisioned = asyncio.Event()
        self._provisioned.set()  # without a watch (tests driving it directly), always
        self._rewind = False
        # Each ``go(rewind)`` counts; the count whose client committed the beginning of every
        # partition it was assigned (``rewound``): the group keeps no stale offset of ours.
        self._rewinds = 0
        self._rewinds_committed = 0
        self._current: asyncio.Task | None = None
        self._restarting = False

    @property
    def group_id(self) -> str:
        return self._group_id

    def reads(self, topic: str) -> bool:
        """Whether this consumer subscribes to ``topic`` (a pattern matches as the client does)."""
        return topic in (self._topics or []) or bool(self._pattern and re.match(self._pattern, topic))

    async def run(self) -> None:
        """Consume until cancelled; when a failure limit stops it, wait for ``resume`` and
        start again from the committed offsets (the first message it stopped at). While the
        broker is not provisioned (``hold``) it waits; ``go`` starts it again."""
        while True:
            await self._provisioned.wait()
            self._restarting = False
            self._current = asyncio.ensure_future(self._consume())
            try:
                await self._current
            except asyncio.CancelledError:
                task = asyncio.current_task()
                # This task cancelled (the service stops), or the client only (hold, go).
                if not self._restarting or (task is not None and task.cancelling()):
                    self._current.cancel()
                    raise
                self.assigned = False
                continue
            except FailureLimitReached as stop:
                self.assigned = False
                self.stops += 1
                self.stopped = Stopped(stop.limit, stop.reason, stop.position, stop.detail,
                                       datetime.now(timezone.utc))
                log.error("consumer stopped: failure limit", group=self._group_id, limit=stop.limit,
                          reason=stop.reason, position=stop.position, error=stop.detail)
                await self._resume.wait()
                self._resume.clear()
                log.warning("consumer resumed by an operator", group=self._group_id)

    def hold(self) -> None:
        """Stop reading (the broker is empty or not provisioned) until ``go``."""
        self._provisioned.clear()
        self._restart()

    def go(self, rewind: bool) -> None:
        """Read (again); with ``rewind`` (a new broker epoch) every partition from its
        beginning: the new broker's log starts where the old one's offsets mean nothing, and
        its committed offsets may be stale ones (decision 0026). The inbox drops repeats."""
        if rewind:
            self._rewind = True
            self._rewinds += 1
            self._restart()
        self._provisioned.set()

    def _restart(self) -> None:
        """Leave the group (the running poll is cancelled: its batch rolls back or is
        committed whole, and no offset of it is committed after) and join again."""
        if self._current is not None and not self._current.done():
            self._restarting = True
            self._current.cancel()

    def resume(self) -> bool:
        """Let a stopped consumer start again (the operator fixed the cause); whether it was stopped."""
        if self.stopped is None:
            return False
        self.stopped = None
        self._resume.set()
        return True

    async def _consume(self) -> None:
        consumer = make_consumer(self._bootstrap, self._group_id, self._batch_max,
                                 fetch_max_wait_ms=self._pace.busy_ms, fetch_min_bytes=self._pace.busy_min_bytes)
        self._pace.restart()
        listener = _ReadAgainFromTheInbox(consumer, self)
        if self._pattern:
            consumer.subscribe(pattern=self._pattern, listener=listener)
        else:
            consumer.subscribe(self._topics or [], listener=listener)
        self.joined = False
        async with running(consumer):
            await self._read(consumer, listener)

    async def _read(self, consumer: AIOKafkaConsumer, listener: "_ReadAgainFromTheInbox") -> None:
        """The started client's loop: poll, process (the next batch prepared meanwhile), commit."""
        self._client = consumer
        held: list[Failure] = []
        held_at = 0.0
        # The next batch, polled and prepared while the last one was written, and the
        # rebalances the client had seen before that batch was written.
        ahead: list[Message] = []
        ahead_rebalances = 0

        async def poll(timeout_ms: int) -> list[Message]:
            polled = await consumer.getmany(timeout_ms=timeout_ms, max_records=self._batch_max)
            return [Message.of(r) for batch in polled.values() for r in batch]
        try:
            while True:
                if listener.rebalances != ahead_rebalances:
                    # Each partition is read again from its committed (or sought) offset: what
                    # was read ahead before the rebalance is dropped, never applied out of order.
                    ahead = []
                records = ahead or await poll(IDLE_POLL_MS)
                ahead = []
                assignment = consumer.assignment()
                self.assigned = bool(assignment)
                self.polled_at = time.time()
                await self._commit_rewound(consumer, listener)
                self._pace.polled(consumer, bool(records))
                # Another replica reads a partition taken from us, from its committed offset.
                held = [f for f in held if TopicPartition(f.message.topic, f.message.partition) in assignment]
                quiet = bool(held) and time.monotonic() - held_at >= self._limits.hold_seconds
                if not records and not quiet:
                    continue
                before = held
                ahead_rebalances = listener.rebalances
                held, ahead = await self.process_reading_ahead(records, before, lambda: poll(0))
                if held and records:
                    held_at = time.monotonic()
                offsets = committable([f.message for f in before] + records, held)
                if offsets:
                    await consumer.commit(offsets)
        finally:
            self.joined = False
            self._client = None

    async def _commit_rewound(self, consumer: AIOKafkaConsumer, listener: "_ReadAgainFromTheInbox") -> None:
        """Overwrite the group's committed offset of each partition read again from its
        beginning with that beginning, before anything of it is processed: a stale offset of
        the old log must not survive a crash, even on a partition that gets no message
        (decision 0026). Outside the rebalance callback: aiokafka logs and swallows what fails
        in there, and a commit there holds up the join; here a failed commit is tried again."""
        mine = listener.uncommitted & consumer.assignment()
        if mine:
            try:
                await consumer.commit({tp: 0 for tp in mine})
            except CommitFailedError:  # a rebalance: the listener says again what is ours
                log.warning("a rewound position was not committed (rebalance); trying again",
                            group=self._group_id)
                return
            listener.uncommitted -= mine
        if not listener.uncommitted and listener.rewinds and listener.assigned_once and listener.rewinds > self._rewinds_committed:
            self._rewinds_committed = listener.rewinds
            log.warning("a new broker epoch: every partition's beginning committed", group=self._group_id)

    async def lag(self) -> dict[TopicPartition, int]:
        """Each partition's messages not read yet (``partition_lag``); none while no client runs
        (stopped by a failure limit, held, restarting)."""
        return await partition_lag(self._client) if self._client is not None else {}

    @property
    def rewound(self) -> bool:
        """Whether the last rewind asked (``go(rewind=True)``) is finished: the client started
        for it committed the beginning of every partition it was assigned. True when none was."""
        return self._rewinds_committed == self._rewinds

    @property
    def rewinding(self) -> bool:
        """Whether this process saw a new broker epoch: each client it starts from then on
        reads every partition from its beginning (the inbox drops what it holds)."""
        return self._rewind

    async def recorded_next(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """For each partition, the offset after the last message the inbox recorded (none for
        a partition it holds nothing of)."""
        if not partitions:
            return {}
        wanted = [(tp.topic, tp.partition) for tp in partitions]
        offset = sa.column("offset")
        async with self._sessions() as session:
            rows = await session.execute(
                sa.select(sa.column("topic"), sa.column("partition"), sa.func.max(offset))
                .select_from(inbox_table)
                .where(sa.tuple_(sa.column("topic"), sa.column("partition")).in_(wanted))
                .group_by(sa.column("topic"), sa.column("partition")))
            return {TopicPartition(topic, partition): last + 1 for topic, partition, last in rows}

    async def process_reading_ahead(self, records: list[Message], held: Sequence[Failure],
                                    poll_ahead: PollAhead) -> tuple[list[Failure], list[Message]]:
        """``process_with_retry`` of ``records`` (held failures first, ``hold`` when there
        are records); meanwhile, with a ``prepare`` hook, the next batch the client already
        holds (``poll_ahead``: no wait) is taken and prepared, so that the service's Python
        work on it overlaps PostgreSQL's on this batch. Only preparing overlaps: the next
        batch is written, and its offsets committed, after this one. What failed to apply
        and the batch read ahead (prepared; none without a hook)."""
        prepare = self._prepare
        if prepare is None or not records:
            return await self.process_with_retry(records, held, hold=bool(records)), []
        processing = asyncio.ensure_future(self.process_with_retry(records, held, hold=True))
        try:
            try:
                ahead = await poll_ahead()
            except Exception as exc:  # the loop's own poll meets it again, this batch done
                log.info("reading ahead failed", group=self._group_id, error=failure_detail(exc))
                ahead = []
            await self._prepared(ahead, prepare)
            return await processing, ahead
        finally:
            if not processing.done():  # cancelled (a restart): rolled back
                processing.cancel()
                await asyncio.gather(processing, return_exceptions=True)

    async def _prepared(self, messages: list[Message], prepare: Prepare) -> None:
        """``prepare`` on each of ``messages``, yielding to the event loop after each, so that
        the batch being written goes on as soon as PostgreSQL answers it: a batch of 500 audit
        entries waits on about 50 short answers (~0.4 ms each), which slices of 50 messages
        (~2 ms) overran, delaying the batch as much as they overlapped it (bench/README.md,
        step 47). A message it fails on is left alone: the handler meets it as it would have."""
        for message in messages:
            try:
                prepare(message)
            except Exception as exc:  # a cache warm-up: the handler decides
                log.info("preparing ahead failed; the handler will see it", error=failure_detail(exc))
            await asyncio.sleep(0)

    async def process_with_retry(self, records: list[Message], held: Sequence[Failure] = (),
                                 hold: bool = False) -> list[Failure]:
        """Process until it succeeds: a failed batch rolled back whole, so retrying is safe.
        A batch that fails as a whole (not in a handler: the inbox, the outbox, a failure
        handler) more than the consecutive limit in a row stops the consumer."""
        backoff = 0.1
        failed = 0
        while True:
            try:
                return await self.process(records, held, hold=hold)
            except (asyncio.CancelledError, FailureLimitReached):
                raise
            except Exception as exc:
                # The whole batch rolled back; the inbox makes the retry safe.
                transient = _transient(exc)
                log.warning("batch failed, retrying", error=failure_detail(exc), size=len(records),
                            backoff=backoff, transient=transient)
                failed = 0 if transient else failed + 1
                self.batch_failures += 1
                if self._limits.consecutive and failed > self._limits.consecutive:
                    first = held[0].message if held else records[0]
                    raise FailureLimitReached(
                        "batch-failures", f"the batch failed {failed} times in a row outside the handler",
                        first.position, failure_detail(exc)) from exc
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def process(self, records: list[Message], held: Sequence[Failure] = (), *,
                      hold: bool = False) -> list[Failure]:
        """Apply a batch in one transaction. Public so tests can drive it directly.

        ``held``: failures of earlier batches still waiting for their verdict, which come
        before ``records``. With ``hold``, the failures at the batch's end wait as well:
        they are returned, neither dead-lettered nor in the inbox, and the caller commits
        no offset past them. Raises FailureLimitReached (nothing of the batch committed).

        The batch is first applied whole, with no savepoint: two round trips fewer in every
        transaction of every consumer, where a message that fails is rare. When one fails,
        that transaction is rolled back and the batch is applied again in one that splits it
        at once, isolating the failing message in savepoints (``_apply_split``); the outcome
        is the same."""
        try:
            return await self._process(records, held, hold, whole=True)
        except _MessageFailed as failed:
            log.info("a message of the batch failed; applying the batch again in halves", size=len(records),
                     error=failure_detail(failed.__cause__))
            return await self._process(records, held, hold, whole=False)

    async def _process(self, records: list[Message], held: Sequence[Failure], hold: bool,
                       whole: bool) -> list[Failure]:
        """``process``: ``whole``, the messages applied in the transaction itself (a failing
        one raises ``_MessageFailed``); else split in savepoints down to the failing one."""
        refusals = [self._untrusted(m) for m in records]
        # An untrusted message is kept by its position, never by the event id it claims: a
        # forgery must not make the real event a duplicate.
        keys = [self._key(m) if refusal is None else key_by_position(m)
                for m, refusal in zip(records, refusals, strict=True)]
        judged: list[Failure] = []
        async with self._sessions() as session, session.begin():
            seen = set((await session.execute(
                sa.select(sa.column("message_key")).select_from(inbox_table)
                .where(db.any_of(inbox_table.c.message_key, keys))
            )).scalars()) if keys else set()
            seen.update(f.key for f in held)
            fresh: dict[str, dict] = {f.key: _inbox_row(f.key, f.message) for f in held}
            todo: list[tuple[Message, str]] = []
            untrusted: list[tuple[Message, Refused]] = []
            duplicates = 0
            for message, key, refusal in zip(records, keys, refusals, strict=True):
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                if refusal is None:
                    todo.append((message, key))
                else:
                    untrusted.append((message, refusal))
                fresh[key] = _inbox_row(key, message)
            # The events of every message that applied, written in one insert at the end.
            events = Outbox(session, self._signer, self._data_keys)
            if whole:
                waiting = await self._apply_all(session, todo, events, list(held), judged, savepoint=False)
            else:  # the whole batch failed: its halves at once
                waiting = await self._apply_split(session, todo, events, list(held), judged)
            if waiting and not hold:
                await self._judge(session, waiting, events, judged)
                waiting = []
            for message, refusal in untrusted:
                self._refuse(session, message, refusal, events)
            for failure in waiting:
                del fresh[failure.key]
            await db.copy_rows(session, inbox_table, list(fresh.values()))
            wrote = await events.flush()
        now = time.monotonic()
        self._failed_at.extend(now for _ in judged)
        self.duplicates += duplicates
        self.processed += len(fresh)
        if wrote and self._after_commit:
            self._after_commit()
        if fresh and self._after_applied:
            self._after_applied()
        return waiting

    def _untrusted(self, message: Message) -> Refused | None:
        """Why ``message`` must not be applied, when this consumer checks the network's
        signature and the message is not an institution's."""
        if self._network_keys is None or from_an_institution(message.topic):
            return None
        try:
            check_network_signature(message, self._network_keys)
        except Refused as exc:
            return exc
        return None

    def _refuse(self, session: AsyncSession, message: Message, refusal: Refused, events: Outbox) -> None:
        log.warning("message not signed by the network, dead-lettered", position=message.position,
                    code=refusal.code)
        uow = self._unit_of_work(session)
        dead_letter(uow, message, self.service, refusal.code, refusal.detail, self._group_id)
        self.dead_lettered += 1
        events.take(uow.outbox)

    def _unit_of_work(self, session: AsyncSession, replaying: bool = False) -> UnitOfWork:
        return UnitOfWork(session, Outbox(session, self._signer, self._data_keys), self._source,
                          replaying=replaying)

    async def _apply_all(self, session: AsyncSession, messages: list[tuple[Message, str]], events: Outbox,
                         waiting: list[Failure], judged: list[Failure], *, savepoint: bool = True) -> list[Failure]:
        """Apply ``messages`` after the failures ``waiting`` for their verdict; the failures
        still waiting at the end. Batch first (decision 0033): the messages together (the
        service's batch handler when it has one, else its handler message by message), in
        a savepoint, or without one in the transaction itself (``savepoint`` False: the
        batch's first pass, where a failing message raises ``_MessageFailed``); when they
        fail together, ``_apply_split``. A savepoint per message cost more round trips than
        most handlers' own work."""
        if not messages:
            return waiting
        if not savepoint or len(messages) > 1 or self._batch_handler is not None:
            outbox = await self._apply_together(session, messages, savepoint)
            if outbox is not None:
                await self._judge(session, waiting, events, judged)  # a good message follows them
                events.take(outbox)
                return []
        return await self._apply_split(session, messages, events, waiting, judged)

    async def _apply_split(self, session: AsyncSession, messages: list[tuple[Message, str]], events: Outbox,
                           waiting: list[Failure], judged: list[Failure]) -> list[Failure]:
        """``messages``, which failed together: each half applied as ``_apply_all`` does, down
        to the failing message alone, tried as before (``_attempt``)."""
        if len(messages) > 1:
            half = len(messages) // 2
            waiting = await self._apply_all(session, messages[:half], events, waiting, judged)
            return await self._apply_all(session, messages[half:], events, waiting, judged)
        if not messages:  # a batch applied again after another replica recorded all of it
            return waiting
        message, key = messages[0]
        outcome = await self._attempt(session, message)
        if isinstance(outcome, Outbox):
            # What failed before this good message failed alone: poison.
            await self._judge(session, waiting, events, judged)
            events.take(outcome)
            return []
        waiting = [*waiting, Failure(message, key, outcome)]
        limit = self._limits.consecutive
        if limit and len(waiting) > limit:
            raise FailureLimitReached(
                "consecutive-failures", f"{len(waiting)} messages in a row failed (limit {limit})",
                waiting[0].message.position, outcome)
        return waiting

    async def _apply_together(self, session: AsyncSession, messages: list[tuple[Message, str]],
                              savepoint: bool = True) -> Outbox | None:
        """Apply ``messages`` in one savepoint (or, without, in the transaction itself): the
        events they wrote, or None (rolled back to the savepoint) when one failed; without
        a savepoint that raises ``_MessageFailed``. A transient fault raises: the whole
        batch is retried."""
        outbox = Outbox(session, self._signer, self._data_keys)
        try:
            async with session.begin_nested() if savepoint else nullcontext():
                if self._batch_handler is not None:
                    with self._batch_spans([m for m, _ in messages]) as traces:
                        outbox.traces = traces
                        await self._batch_handler(UnitOfWork(session, outbox, self._source),
                                                  [m for m, _ in messages])
                else:
                    for message, _ in messages:
                        with self._span(message):
                            await self._handler(UnitOfWork(session, outbox, self._source), message)
            return outbox
        except Exception as exc:
            if _transient(exc):
                raise
            if not savepoint:
                raise _MessageFailed() from exc
            log.info("a message of the batch failed; splitting it", size=len(messages),
                     error=failure_detail(exc))
            return None

    def _span(self, message: Message):
        """The consumer span of one message, continuing the trace its headers carry."""
        return tracer("runtime.inbox").start_as_current_span(
            f"process {message.topic}", context=context_from_headers(message.headers),
            kind=SpanKind.CONSUMER, attributes=self._span_attributes(message),
        )

    def _span_attributes(self, message: Message, batch: int = 1) -> dict[str, str | int]:
        """The messaging conventions' attributes of processing ``message`` (decision 0036)."""
        attributes = {**self._process_attributes(message.topic, batch),
                      telemetry.PARTITION: str(message.partition), telemetry.OFFSET: message.offset}
        for attribute, header in (("cloudevents.event_id", "ce_id"), ("cloudevents.event_type", "ce_type")):
            value = message.header(header)
            if value:
                attributes[attribute] = value
        return attributes

    def _process_attributes(self, topic: str, batch: int) -> dict[str, str | int]:
        attributes: dict[str, str | int] = {
            telemetry.MESSAGING_SYSTEM: "kafka", telemetry.OPERATION_TYPE: "process",
            telemetry.OPERATION_NAME: "process", telemetry.DESTINATION: topic,
            telemetry.CONSUMER_GROUP: self._group_id,
        }
        if batch > 1:
            attributes[telemetry.BATCH_COUNT] = batch
        return attributes

    @contextmanager
    def _batch_spans(self, messages: list[Message]) -> Iterator[Mapping[str, dict[str, str]]]:
        """The process spans of a batch a batch handler applies at once: one per message, in
        the trace its message carries, so each report's trace goes on through this service.
        The handler runs in the first message's span when every message is of one trace,
        else in a batch span linked to every message's. Yields each message's trace headers
        by Kafka key (the case) and by position, for the outbox: an event a batch handler
        writes for a case goes on in the trace of the batch's message of that case, or of
        the message it names (Outbox.emit's ``cause``)."""
        if telemetry.nothing_recorded():
            with self._carried_traces(messages) as carried:
                yield carried
            return
        spans = [tracer("runtime.inbox").start_span(
            f"process {m.topic}", context=context_from_headers(m.headers), kind=SpanKind.CONSUMER,
            attributes=self._span_attributes(m, len(messages))) for m in messages]
        topics = " ".join(sorted({m.topic for m in messages}))
        # One trace (a case and its referral, both from one report): the handler's work is
        # part of it. Several: a batch span of its own, linked to each message's (the
        # messaging conventions' batch shape).
        one_trace = len({s.get_span_context().trace_id for s in spans}) == 1
        current = spans[0] if one_trace else tracer("runtime.inbox").start_span(
            f"process {topics}", kind=SpanKind.CONSUMER, links=[Link(s.get_span_context()) for s in spans],
            attributes=self._process_attributes(topics, len(messages)))
        by_key: dict[str, dict[str, str]] = {}
        for message, span in zip(messages, spans, strict=True):
            headers = trace_headers_of(trace.set_span_in_context(span))
            by_key[message.position] = headers
            if message.key is not None:
                by_key[message.key.decode(errors="replace")] = headers
        try:
            # Not record_exception: its message and stack would carry the values.
            with trace.use_span(current, record_exception=False):
                yield by_key
        finally:
            for span in {*spans, current}:
                span.end()

    @contextmanager
    def _carried_traces(self, messages: list[Message]) -> Iterator[CarriedTraces]:
        """``_batch_spans`` where nothing is recorded: no span per message, whose ids nobody
        would read. The handler runs in the batch's trace when every message carries the
        first's (a case and its referral from one report), else in a new one, as before;
        what it writes goes on in its message's trace (``CarriedTraces``)."""
        first = context_from_headers(messages[0].headers)
        first_id = trace.get_current_span(first).get_span_context()
        wanted = f"{first_id.trace_id:032x}".encode() if first_id.is_valid else None
        if wanted is not None and all(telemetry.first_trace_id(m.headers) == wanted for m in messages[1:]):
            current = trace.get_current_span(first)
        else:
            topics = " ".join(sorted({m.topic for m in messages}))
            current = tracer("runtime.inbox").start_span(f"process {topics}", kind=SpanKind.CONSUMER)
        with trace.use_span(current, record_exception=False, end_on_exit=True):
            yield CarriedTraces(messages)

    async def _attempt(self, session: AsyncSession, message: Message, replaying: bool = False) -> Outbox | str:
        """Run the handler in a savepoint, up to ``attempts`` times: the events it wrote once
        it applied, or what its last failure was (failure_detail). A transient fault raises."""
        with self._span(message):
            error: Exception | None = None
            for attempt in range(1, self._attempts + 1):
                uow = self._unit_of_work(session, replaying)
                try:
                    async with session.begin_nested():
                        await self._handler(uow, message)
                    return uow.outbox
                except Exception as exc:
                    if _transient(exc):
                        raise
                    error = exc
                    # Not record_exception: its message and stack would carry the values.
                    trace.get_current_span().add_event("exception", {
                        "exception.type": type(exc).__name__, "exception.message": failure_detail(exc)})
                    await asyncio.sleep(0.05 * attempt)
            return failure_detail(error) if error is not None else "no attempt"

    async def _judge(self, session: AsyncSession, failures: list[Failure], events: Outbox,
                     judged: list[Failure]) -> None:
        """Dead-letter ``failures`` as poison, each having failed alone, and tell their
        senders; unless that makes more than the minute's limit, which stops the consumer."""
        limit = self._limits.per_minute
        for failure in failures:
            if limit:
                while self._failed_at and self._failed_at[0] < time.monotonic() - 60:
                    self._failed_at.popleft()
                if len(self._failed_at) + len(judged) + 1 > limit:
                    raise FailureLimitReached(
                        "failures-per-minute",
                        f"{len(self._failed_at) + len(judged) + 1} messages failed within a minute (limit {limit})",
                        failure.message.position, failure.detail)
            message, detail = failure.message, failure.detail
            log.error("message dead-lettered", position=message.position, error=detail)
            uow = self._unit_of_work(session)
            dead_letter(uow, message, self.service, "PROCESSING_FAILED", detail, self._group_id)
            if self._on_failure is not None:
                await self._on_failure(uow, message, "PROCESSING_FAILED", detail)
            self.dead_lettered += 1
            judged.append(failure)
            events.take(uow.outbox)

    async def replay(self, position: str, sole_reader: bool = True) -> str:
        """Apply the dead-lettered message at ``position`` again through this consumer's
        handler, in one transaction, recorded in the inbox under the dead letter's replay
        key so a second replay has no effect: "replayed", "already-replayed", "other-consumer"
        (another group failed it; an old body, which names none, is this consumer's when it
        is the ``sole_reader`` of its topic) or "not-replayable" (a refusal, not a failure).
        LookupError when no body is kept, runtime.data_keys.Erased once erased, ReplayFailed
        when the handler fails again (nothing changed)."""
        if self._data_keys is None:
            raise LookupError(f"{self.service} keeps no dead-letter bodies")
        async with self._sessions() as session, session.begin():
            body = await dead_letters.claim(session, self._data_keys, position)
            if body.group != self._group_id and not (body.group is None and sole_reader):
                return "other-consumer"
            if body.reason_code != "PROCESSING_FAILED":
                return "not-replayable"
            key = dead_letters.replay_key(position)
            if await session.scalar(sa.select(sa.func.count()).select_from(inbox_table)
                                    .where(sa.column("message_key") == key)):
                return "already-replayed"
            message = Message(body.topic, body.partition, body.offset, body.key, body.value, body.headers, 0)
            outcome = await self._attempt(session, message, replaying=True)
            if not isinstance(outcome, Outbox):
                raise ReplayFailed(outcome)
            await session.execute(sa.insert(inbox_table), [_inbox_row(key, message)])
            wrote = await outcome.flush()
        log.warning("dead letter replayed", group=self._group_id, position=position)
        if wrote and self._after_commit:
            self._after_commit()
        return "replayed"


def _inbox_row(key: str, message: Message) -> dict:
    return {"message_key": key, "topic": message.topic, "partition": message.partition,
            "offset": message.offset, "event_type": message.header("ce_type")}


class _ReadAgainFromTheInbox(ConsumerRebalanceListener):
    """On each assignment: where the group's committed offset is ahead of what the inbox
    recorded, the database was restored from a backup (issue #12, docs/running.md "Restore
    from backup"): read again from the inbox's position. Repeats are harmless (the inbox
    drops what it holds, derived ids make re-emitted events the same events), so rewinding
    is always safe; only a partition the inbox holds nothing of is left alone. After a new
    broker epoch, every partition from its beginning instead (decision 0026)."""

    def __init__(self, consumer: AIOKafkaConsumer, inbox: "InboxConsumer") -> None:
        self._consumer, self._inbox = consumer, inbox
        # A new broker epoch (decision 0026): partitions this client has read from the beginning.
        self._rewind = inbox.rewinding
        # Which rewind (InboxConsumer.go) this client does; 0: none.
        self.rewinds = inbox._rewinds if self._rewind else 0
        self._rewound: set[TopicPartition] = set()
        # Partitions sought to their beginning whose group offset is not overwritten yet
        # (InboxConsumer._commit_rewound), and whether the group assigned this client anything yet.
        self.uncommitted: set[TopicPartition] = set()
        self.assigned_once = False
        # Revocations and assignments seen: what was read ahead before one is not applied.
        self.rebalances = 0

    async def on_partitions_revoked(self, revoked) -> None:
        self.rebalances += 1
        # Not committed: read from the beginning again if it comes back.
        lost = self.uncommitted & set(revoked)
        self.uncommitted -= lost
        self._rewound -= lost

    async def on_partitions_assigned(self, assigned) -> None:
        self.rebalances += 1
        self._inbox.joined = True  # the group's answer, whatever share it gave us
        if self._rewind:
            self._from_the_beginning(assigned)
            self.assigned_once = True
            return
        recorded = await self._inbox.recorded_next(sorted(assigned))
        if not recorded:
            return
        # One OffsetFetch for every partition: `committed()` asks once per partition, and the
        # audit's consumer holds hundreds. aiokafka offers no public batch call for it.
        commits = await self._consumer._coordinator.fetch_committed_offsets(list(recorded))
        for tp, next_offset in recorded.items():
            committed = commits[tp].offset if tp in commits else None
            if committed is not None and committed >= 0 and next_offset < committed:
                log.warning("the database is behind the committed offset (restored from a backup?): "
                            "reading again from the inbox's position", group=self._inbox.group_id,
                            topic=tp.topic, partition=tp.partition, committed=committed, inbox=next_offset)
                self._consumer.seek(tp, next_offset)

    def _from_the_beginning(self, assigned) -> None:
        """Seek each partition this client is assigned for the first time to its beginning:
        the new broker's committed offsets may be the old log's (decision 0026)."""
        first = [tp for tp in assigned if tp not in self._rewound]
        if not first:
            return
        log.warning("a new broker epoch: reading from the beginning", group=self._inbox.group_id,
                    partitions=len(first))
        for tp in first:
            # Offset 0, not a request for the earliest (that waits on the fetcher, here inside
            # the rebalance): where retention removed it, the client's reset policy (earliest)
            # takes the first offset still held.
            self._consumer.seek(tp, 0)
        self._rewound.update(first)
        self.uncommitted.update(first)


async def partition_lag(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    """Messages on the broker past the client's position, per partition it holds, from
    what it already knows (the high watermark of the last fetch answer): no request to the
    broker, no wait. A partition not fetched yet is left out."""
    lag: dict[TopicPartition, int] = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        try:  # returns at once, without yielding, when the position is known
            async with asyncio.timeout(0.05):
                position = await consumer.position(tp)
        except (TimeoutError, IllegalStateError):
            break  # a position being reset: the assignment may change meanwhile (next scrape)
        lag[tp] = max(0, highwater - position)
    return lag


def committable(handled: list[Message], held: list[Failure]) -> dict[TopicPartition, int]:
    """The offsets to commit: per partition past every handled message, never past one
    still waiting for its verdict (after a crash it is read again)."""
    offsets: dict[TopicPartition, int] = {}
    for message in handled:
        tp = TopicPartition(message.topic, message.partition)
        offsets[tp] = max(offsets.get(tp, 0), message.offset + 1)
    for failure in held:
        tp = TopicPartition(failure.message.topic, failure.message.partition)
        offsets[tp] = min(offsets.get(tp, failure.message.offset), failure.message.offset)
    return offsets
