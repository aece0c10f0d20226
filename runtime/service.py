"""One service = one process: FastAPI app + its consumers + its outbox relay, started and
stopped together by the app's lifespan."""
from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from contracts.access import action_for, policy
from contracts.reference import RetentionSchedule, retention
from contracts.refusals import reason
from runtime import collector, dead_letters, http_errors, http_server
from runtime.authorization import permit
from runtime.broker_epoch import BROKER_EMPTY, EpochReader, EpochWatch
from runtime.data_keys import DataKeys, Erased, from_settings
from runtime.db import connect, ensure_database, make_engine, make_sessions, unreachable
from runtime.inbox import (
    DEAD_LETTER_TYPE,
    ROOT,
    BatchHandler,
    FailureHandler,
    FailureLimits,
    Handler,
    InboxConsumer,
    Message,
    Prepare,
    ReplayFailed,
    UnitOfWork,
    key_by_event_id,
)
from runtime.kafka import make_producer
from runtime.limits import BodyLimit, Limits, closing
from runtime.log import AccessLog, configure_logging, get_logger
from runtime.metrics import CONTENT_TYPE, Gauge, Snapshot, age, consumer_state, exposition
from runtime.migrations import UNREACHABLE_EXIT, URL_VARIABLE, upgrade
from runtime.outbox import (
    Outbox,
    OutboxRelay,
    discard_parked,
    oldest_unpublished_at,
    outbox_counts,
    outbox_table,
    parked_counts,
    parked_rows,
    retry_parked,
)
from runtime.quiet import QuietWait
from runtime.retention import purge
from runtime.settings import Settings
from runtime.signing import Keyring, SigningKey, network_jwks, network_keyring
from runtime.telemetry import configure_tracing, instrument_app, instrument_engine
from runtime.tokens import Principal, TokenVerifier

log = get_logger("runtime.service")
T = TypeVar("T")
# One pass of a service's purge job (runtime.retention.purge, or a service's own around it).
PurgeWork = Callable[[AsyncSession, DataKeys, RetentionSchedule, datetime], Awaitable[int]]
MIGRATION_LOCK = 0x6D696772
# Where every service publishes the network's public signing keys (public in access.yaml).
NETWORK_KEYS_PATH = "/.well-known/punte-network-keys.json"


@dataclass
class Runtime:
    """What a running service shares between its HTTP side and its consumers."""

    name: str
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker
    producer: AIOKafkaProducer
    relay: OutboxRelay
    verifier: TokenVerifier
    network_key: SigningKey | None
    keyring: Keyring
    # The network's public keys: what consumers of its own topics verify (fail closed: none).
    network_keys: Keyring = field(default_factory=lambda: Keyring([]))
    consumers: list[InboxConsumer] = field(default_factory=list)
    # The service's data keys (PUNTE_DATA_KEYS), when its spec says it keeps sealed values.
    data_keys: DataKeys | None = None
    started: bool = False
    # What a service sets up in on_start for its handlers and routes (e.g. the audit log).
    extras: dict[str, Any] = field(default_factory=dict)
    # The watch on the broker's epoch (runtime.broker_epoch, decision 0026); None: not watched.
    epochs: EpochWatch | None = None
    # The background tasks (relay, epoch watch, consumers, loops) by name: liveness.
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)

    async def hold(self, reason: str) -> None:
        """The broker is empty or not provisioned: publish nothing, read nothing."""
        self.relay.held = reason
        for consumer in self.consumers:
            consumer.hold()

    async def go(self, rewind: bool) -> None:
        """The broker has an epoch: publish and read; in a new one, every partition from its
        beginning."""
        self.relay.held = None
        self.relay.wake()
        for consumer in self.consumers:
            consumer.go(rewind)

    def rewound(self) -> bool:
        """Whether every consumer finished the last rewind it was told (decision 0026)."""
        return all(consumer.rewound for consumer in self.consumers)

    def broker_epoch(self) -> int:
        """This service's ordinal of the broker epoch it reads now (0: not known yet)."""
        return self.epochs.observed.ordinal if self.epochs is not None else 0

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """One transaction with the outbox, for work that does not come from a consumer
        (HTTP commands, timers); the relay is woken when it wrote events."""
        async with self.sessions() as session:
            async with session.begin():
                uow = UnitOfWork(session, Outbox(session, self.network_key, self.data_keys),
                                 f"/punte/{self.name}")
                yield uow
                wrote = await uow.outbox.flush()
        if wrote:
            self.relay.wake()

    def consumer(self, *, group_id: str, handler: Handler, topics: list[str] | None = None,
                 pattern: str | None = None, message_key: Callable[[Message], str] = key_by_event_id,
                 on_failure: FailureHandler | None = None,
                 batch_handler: BatchHandler | None = None,
                 verify_network: bool = True, background: bool = False,
                 after_applied: Callable[[], None] | None = None, prepare: Prepare | None = None) -> InboxConsumer:
        """A consumer with this service's settings, its signing key, and the relay woken
        after each commit that wrote events. It applies a message of the network's own
        topics only when the network signed it, unless ``verify_network`` is False.
        ``background``: no report waits for it (the trail, closures, commands), so the
        broker may hold its fetches long (settings kafka_fetch_max_wait_background_ms) until
        a batch's worth is new (kafka_fetch_min_bytes_background), and its batches may be
        larger (consumer_batch_max_background).
        ``after_applied``: called after each commit that applied messages. ``prepare``: the
        handler's pure work, done ahead on the next batch (InboxConsumer)."""
        return InboxConsumer(
            service=self.name, group_id=group_id, bootstrap=self.settings.kafka_bootstrap,
            sessions=self.sessions, handler=handler, topics=topics, pattern=pattern,
            message_key=message_key, on_failure=on_failure, signer=self.network_key,
            batch_max=(self.settings.consumer_batch_max_background if background
                       else self.settings.consumer_batch_max),
            attempts=self.settings.handler_attempts,
            after_commit=self.relay.wake, after_applied=after_applied, batch_handler=batch_handler, prepare=prepare,
            network_keys=self.network_keys if verify_network else None, data_keys=self.data_keys,
            limits=FailureLimits(self.settings.consumer_max_consecutive_failures,
                                 self.settings.consumer_max_failures_per_minute,
                                 self.settings.consumer_failure_hold_seconds),
            fetch_max_wait_ms=(self.settings.kafka_fetch_max_wait_background_ms if background
                               else self.settings.kafka_fetch_max_wait_ms),
            # A consumer on the report's path that has had nothing for a while waits as the
            # background ones do, until records come again; a background one, longer still.
            idle_fetch_max_wait_ms=(self.settings.kafka_fetch_max_wait_quiet_ms if background
                                    else self.settings.kafka_fetch_max_wait_background_ms),
            fetch_min_bytes=self.settings.kafka_fetch_min_bytes_background if background else 1,
        )

    def polling(self, work: Callable[[], Awaitable[int]], idle_seconds: float,
                wake: asyncio.Event | None = None) -> Callable[[], Awaitable[None]]:
        """``polling`` with this service's quiet wait (PUNTE_POLL_QUIET_SECONDS): every
        background loop of a service backs off the same way on a quiet network; a woken one
        gathers what comes for PUNTE_POLL_GATHER_SECONDS before each pass."""
        return polling(work, idle_seconds, wake, self.settings.poll_quiet_seconds,
                       self.settings.poll_gather_seconds)

    def retention(self) -> RetentionSchedule:
        """The retention schedule (PUNTE_RETENTION_FILE, else contracts/reference)."""
        return retention(self.settings.retention_file)

    def purge_job(self, work: PurgeWork = purge) -> Callable[[], Awaitable[None]]:
        """The service's purge job, a loop for ServiceSpec.loops: ``work`` (one pass: the
        erasures due, the runtime's rows past their rules, the service's own) in a
        transaction, again at once while it finds something, else every
        PUNTE_PURGE_POLL_SECONDS, under the schedule of PUNTE_RETENTION_FILE."""
        if self.data_keys is None:
            raise RuntimeError(f"{self.name}: a purge job needs the service's data keys (ServiceSpec.data_keys)")
        data_keys, schedule = self.data_keys, self.retention()

        async def once() -> int:
            async with self.sessions() as session, session.begin():
                return await work(session, data_keys, schedule, datetime.now(timezone.utc))

        return self.polling(once, self.settings.purge_poll_seconds)


@dataclass
class ServiceSpec:
    name: str
    migrations: Path
    consumers: Callable[[Runtime], list[InboxConsumer]]
    routers: list[APIRouter]
    stats: Callable[[AsyncSession], Awaitable[dict[str, Any]]]
    title: str = ""
    # Runs once after migrations, before the consumers start (e.g. seeding reference rows).
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    # More background loops of the service (e.g. durable timers), supervised like consumers.
    loops: Callable[[Runtime], list[Callable[[], Awaitable[None]]]] = lambda rt: []
    # The service keeps values sealed under data keys (dead-letter bodies, a case's notes):
    # it does not start without PUNTE_DATA_KEYS.
    data_keys: bool = False
    # Runs in the transaction that records a new broker epoch (decision 0026), with the
    # epoch's id: e.g. the audit starts a new trail epoch.
    on_broker_epoch: Callable[[Runtime, AsyncConnection, str], Awaitable[None]] | None = None
    # The service's own gauges at GET /metrics (their names in runtime.metrics.SERVICE_NAMES).
    metrics: Callable[[Runtime, AsyncSession], Awaitable[list[Gauge]]] | None = None


def polling(work: Callable[[], Awaitable[int]], idle_seconds: float,
            wake: asyncio.Event | None = None, quiet_seconds: float = 0.0,
            gather_seconds: float = 0.0) -> Callable[[], Awaitable[None]]:
    """A background loop for ServiceSpec.loops: ``work`` again at once while it finds
    something to do (it returns how much it did), after ``idle_seconds`` when it did nothing,
    or as soon as ``wake`` is set (by what gives it work in this process: the poll then only
    finds what another process did, and can be slow). Each further pass that finds nothing
    waits twice as long, up to ``quiet_seconds`` (runtime.quiet; Runtime.polling passes
    PUNTE_POLL_QUIET_SECONDS).

    ``gather_seconds`` (a loop with a ``wake``): a pass that follows a wake or a pass that
    worked waits this long first, so the commits that come meanwhile are taken in one pass;
    under a trickle of commits the loop ran two passes for each (bench/README.md, step 41)."""
    async def gather() -> None:
        if wake is not None and gather_seconds:
            await asyncio.sleep(gather_seconds)

    async def loop() -> None:
        pace = QuietWait(idle_seconds, quiet_seconds)
        while True:
            if wake is not None:
                wake.clear()  # before the pass: work arriving during it sends it round again
            if await work():
                pace.worked()
                await gather()
                continue
            await pace.rest(wake)
            if wake is not None and wake.is_set():
                await gather()
    return loop


async def migrate(settings: Settings, name: str, migrations: Path, isolated: bool = False) -> str:
    """Migrate ``name``'s database to head; its URL. ``isolated``: in a child process, so
    that Alembic never stays in this one's memory (a starting service; runtime.migrations)."""
    url = settings.database_for(name)
    await ensure_database(url)
    # One replica migrates at a time; the others find the database at head.
    conn = await connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        if isolated:
            await _migrations_process("upgrade", migrations, url)
        else:
            await asyncio.to_thread(upgrade, migrations, url)
    finally:
        await conn.close()
    return url


class MigrationsFailed(RuntimeError):
    """The migrations' child process failed; its one line says why."""


async def _migrations_process(command: str, migrations: Path, url: str) -> str:
    """``python -m runtime.migrations COMMAND MIGRATIONS`` with the URL in its environment:
    what it printed. Not reachable (exit 75) is a ConnectionError, which start-up waits out
    (when_reachable); any other failure is MigrationsFailed with the child's line."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtime.migrations", command, str(migrations),
        env={**os.environ, URL_VARIABLE: url}, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await child.communicate()
    said = (err.decode(errors="replace").strip().splitlines() or [f"exit {child.returncode}"])[-1]
    if child.returncode == UNREACHABLE_EXIT:
        raise ConnectionError(f"migrations: {said}")
    if child.returncode != 0:
        raise MigrationsFailed(f"migrations ({command}) failed: {said}")
    return out.decode()


async def when_reachable(settings: Settings, name: str, step: Callable[[], Awaitable[T]],
                         deadline: float | None = None) -> T:
    """Run a start-up ``step`` again, with backoff (jittered, up to 10 s), while the database
    is not reachable or not yet accepting connections, until ``deadline`` (loop time;
    default PUNTE_STARTUP_TIMEOUT_SECONDS from now): a service started while PostgreSQL is
    down or restarting, or that loses it half-way through starting, waits for it (each wait
    logged) instead of exiting; any other error stops the start at once."""
    loop = asyncio.get_running_loop()
    deadline = deadline if deadline is not None else loop.time() + settings.startup_timeout_seconds
    backoff = 0.5
    while True:
        try:
            return await step()
        except Exception as exc:
            if not unreachable(exc):
                raise
            left = deadline - loop.time()
            if left <= 0:
                raise RuntimeError(f"{name}: the database was not reachable for "
                                   f"{settings.startup_timeout_seconds:g} s (PUNTE_STARTUP_TIMEOUT_SECONDS): "
                                   f"{exc!r}") from exc
            wait = min(left, backoff * random.uniform(0.5, 1.0))
            log.warning("database not reachable yet, waiting", service=name, error=repr(exc),
                        retry_in_seconds=round(wait, 2), gives_up_in_seconds=round(left))
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, 10.0)


async def migrate_when_reachable(settings: Settings, name: str, migrations: Path) -> str:
    """``migrate``, waiting for the database (``when_reachable``)."""
    return await when_reachable(settings, name, lambda: migrate(settings, name, migrations))


class SchemaNotAtHead(RuntimeError):
    """PUNTE_MIGRATE_ON_START is off and the database is not at the migrations' head."""


async def at_head(settings: Settings, name: str, migrations: Path) -> str:
    """The database's URL when it is at the migrations' head; otherwise ``SchemaNotAtHead``
    saying where it is and what to run. Behind (never migrated, or an older release's) and
    ahead (a newer release's, after a rollback) alike: the code's queries fit one schema."""
    url = settings.database_for(name)
    found = json.loads(await _migrations_process("revisions", migrations, url))
    current, heads = set(found["current"]), set(found["heads"])
    if current != heads:
        raise SchemaNotAtHead(
            f"{name}: database {make_url(url).database} is at revision "
            f"{', '.join(sorted(current)) or 'none (never migrated)'}, this code needs "
            f"{', '.join(sorted(heads))}; PUNTE_MIGRATE_ON_START is off, so it is not migrated "
            f"here: run `punte migrate {name}` (on Kubernetes, the migrations Job)")
    return url


async def wait_for_head(settings: Settings, name: str, migrations: Path, deadline: float) -> str:
    """``at_head``, waiting (within the start-up ``deadline``) for the migrations Job that
    runs beside a rollout; past the deadline, the start stops with ``SchemaNotAtHead``."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await when_reachable(settings, name, lambda: at_head(settings, name, migrations), deadline)
        except SchemaNotAtHead as behind:
            left = deadline - loop.time()
            if left <= 0:
                raise
            log.warning("database not at the migrations' head yet, waiting", service=name, detail=str(behind))
            await asyncio.sleep(min(left, 5.0))


def load_keyring(settings: Settings) -> Keyring:
    path = settings.resolved_keyring_file()
    return Keyring.load(path) if path.is_file() else Keyring([])


def load_network_key(settings: Settings) -> SigningKey:
    """The key the network signs its own topics with. Without it a service could neither
    sign what it writes nor check what it reads: it does not start."""
    path = settings.resolved_network_key_file()
    if not path.is_file():
        raise RuntimeError(
            f"no network signing key at {path}: set PUNTE_NETWORK_KEY_FILE to the network's key, "
            "or PUNTE_STATE_DIR to a state folder holding keys/network.key "
            "(`punte up` creates one for the embedded network)")
    return SigningKey.load(path)


def load_network_keys(settings: Settings, key: SigningKey) -> Keyring:
    """The network keys messages on its own topics may be signed with: ``key``, and those of
    PUNTE_NETWORK_KEYRING_FILE (earlier keys during a rotation)."""
    path = settings.network_keyring_file
    return network_keyring(key, Keyring.load(path) if path is not None else None)


async def _supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Keep a background loop alive: a crash (broker away at start) is logged and retried."""
    backoff = 0.5
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("background task crashed, restarting", task=name, error=repr(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


async def _start_producer(producer: AIOKafkaProducer) -> None:
    backoff = 0.2
    while True:
        try:
            await producer.start()
            return
        except Exception as exc:
            log.warning("broker not reachable yet", error=repr(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def create_app(spec: ServiceSpec, settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings(service=spec.name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        """``serving``, with why it could not start as the log's last words of its own (the
        supervisor and the operator read the end of the log; uvicorn's traceback of the
        failure is one long line whose reason comes last)."""
        started = False
        try:
            async with serving(app):
                started = True
                yield
        except Exception as exc:
            if not started:
                reason = (str(exc).splitlines() or [""])[0][:300]
                log.error("the service cannot start", error=f"{type(exc).__name__}: {reason}")
            raise

    @asynccontextmanager
    async def serving(app: FastAPI):
        configure_logging(spec.name, settings.log_level, settings.log_format, settings.library_log_level)
        configure_tracing(spec.name)
        # Keys and token algorithms before anything else: a misconfigured service fails fast.
        network_key = load_network_key(settings)
        data_keys = from_settings(settings) if spec.data_keys else None
        algorithms = settings.oidc_algorithm_list()
        # Every database step of start-up waits for the database, within one deadline: a
        # PostgreSQL lost half-way through starting is waited for, not an exit (decision 0020).
        deadline = asyncio.get_running_loop().time() + settings.startup_timeout_seconds
        if settings.migrate_on_start:
            url = await when_reachable(settings, spec.name,
                                       lambda: migrate(settings, spec.name, spec.migrations, isolated=True), deadline)
        else:  # another step migrates (`punte migrate`): never serve on another schema
            url = await wait_for_head(settings, spec.name, spec.migrations, deadline)
        engine = make_engine(url)
        instrument_engine(engine.sync_engine)
        producer = make_producer(settings.kafka_bootstrap, settings)
        await _start_producer(producer)
        relay = OutboxRelay(engine, producer, settings.relay_batch_max, settings.relay_poll_seconds,
                            settings.poll_quiet_seconds)
        runtime = Runtime(
            name=spec.name, settings=settings, engine=engine, sessions=make_sessions(engine),
            producer=producer, relay=relay,
            verifier=TokenVerifier(settings.oidc_issuer, settings.oidc_audience,
                                   algorithms=algorithms,
                                   jwks_ttl_seconds=settings.oidc_jwks_ttl_seconds),
            network_key=network_key, keyring=load_keyring(settings),
            network_keys=load_network_keys(settings, network_key), data_keys=data_keys,
        )
        on_start = spec.on_start
        if on_start is not None:
            await when_reachable(settings, spec.name, lambda: on_start(runtime), deadline)
        runtime.consumers = spec.consumers(runtime)
        app.state.runtime = runtime
        # Nothing is published or read before the broker's epoch is known (decision 0026).
        on_new = spec.on_broker_epoch
        epoch_reader = EpochReader(settings)
        runtime.epochs = EpochWatch(
            engine, settings.kafka_bootstrap, settings.broker_epoch_check_seconds, runtime.hold, runtime.go,
            on_new=(lambda conn, epoch: on_new(runtime, conn, epoch)) if on_new is not None else None,
            read_epoch=epoch_reader.read, rewound=runtime.rewound)
        await runtime.hold("broker-unknown")
        await when_reachable(settings, spec.name, runtime.epochs.check, deadline)
        runtime.tasks = {"relay": asyncio.create_task(_supervise("relay", relay.run)),
                         "broker-epoch": asyncio.create_task(_supervise("broker-epoch", runtime.epochs.run))}
        runtime.tasks |= {f"consumer {c.group_id}": asyncio.create_task(_supervise(c.service, c.run))
                          for c in runtime.consumers}
        runtime.tasks |= {f"loop {i}": asyncio.create_task(_supervise(f"{spec.name}-loop", loop))
                          for i, loop in enumerate(spec.loops(runtime))}
        tasks = list(runtime.tasks.values())
        # Last: what start-up made is frozen, never walked by the collector again.
        collector.settle(settings.gc_young_threshold)
        runtime.started = True
        log.info("service started", port=settings.http_port)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await epoch_reader.close()
            await producer.stop()
            await engine.dispose()
            log.info("service stopped")

    # No public API pages (/docs, /redoc): the document itself is served below, to
    # signed-in principals only, like every other operation.
    app = FastAPI(title=spec.title or f"Punte {spec.name}", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/openapi.json", tags=["health"], summary="The service's OpenAPI document")
    async def contract(principal: Principal = Depends(permit("service.contract"))) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get(NETWORK_KEYS_PATH, tags=["keys"],
             summary="Cheile publice ale rețelei / the network's public signing keys (JWKS)")
    async def network_keys() -> JSONResponse:
        """What checks every delivery's ce_signature (and a webhook's v1a signature): the
        network's Ed25519 public keys, the current one first, then earlier ones still
        trusted during a rotation. Public, like any JWKS; cache it, and fetch it again when
        a delivery names a ce_keyid it does not hold."""
        runtime: Runtime = app.state.runtime
        return JSONResponse(network_jwks(runtime.network_key, runtime.network_keys),
                            headers={"Cache-Control": "public, max-age=300"})

    @app.get("/health/live", tags=["health"])
    async def live() -> JSONResponse:
        """Not live (Kubernetes restarts the process) when a background task has ended: a
        consumer, the relay, the epoch watch, a loop. ``_supervise`` restarts what raises,
        so one that ended is gone for good, and nothing else would notice it."""
        runtime: Runtime = app.state.runtime
        ended = sorted(name for name, task in runtime.tasks.items() if task.done())
        return JSONResponse({"status": "not-live" if ended else "ok", "ended": ended},
                            status_code=503 if ended else 200)

    @app.get("/health/ready", tags=["health"])
    async def ready() -> JSONResponse:
        runtime: Runtime = app.state.runtime
        checks: dict[str, bool] = {"started": runtime.started}
        try:
            async with runtime.engine.connect() as conn:
                checks["database"] = (await conn.scalar(sa.text("SELECT 1"))) == 1
        except Exception:
            checks["database"] = False
        # Joined, not "holds partitions now": in a rebalance (a replica comes or goes) every
        # member holds none for a moment, and a replica beyond the partition count holds none
        # at all; neither is a reason to take its HTTP side out of the Service.
        checks["consumers_joined"] = all(c.joined for c in runtime.consumers)
        checks["consumers_running"], stopped = consumers_stopped(runtime)
        broker = broker_state(runtime)
        # An empty broker (no epoch marker): nothing is published or read (decision 0026).
        checks["broker_provisioned"] = broker is None or broker["state"] == "current"
        ok = all(checks.values())
        # Degraded, not unready: the service still serves and its other keys flow; taking
        # it out of rotation for one parked row would block everyone again (decision 0021).
        problems = await _outbox_problems(runtime) if checks["database"] else []
        checks["outbox_unblocked"] = not problems
        if broker is not None and broker["reason"] == BROKER_EMPTY:
            problems.append(f"{BROKER_EMPTY}: the broker has no epoch marker (empty or not provisioned); "
                            "nothing is published or read until it is rebuilt: punte replay")
        elif broker is not None and broker["reason"]:
            problems.append(f"{broker['reason']}: the broker's epoch could not be read yet; nothing is "
                            "published or read until it is")
        status = "not-ready" if not ok else "degraded" if problems else "ready"
        return JSONResponse({"status": status, "checks": checks, "problems": problems,
                             "consumers_stopped": stopped, "broker": broker},
                            status_code=200 if ok else 503)

    @app.get("/stats", tags=["health"])
    async def stats(principal: Principal = Depends(permit("service.stats"))) -> dict[str, Any]:
        runtime: Runtime = app.state.runtime
        async with runtime.sessions() as session:
            counts = await spec.stats(session)
            outbox = await outbox_counts(session)
            dead = await dead_letter_counts(session)
        return {
            "service": spec.name, "counts": counts,
            "outbox": {**outbox, "published_by_this_replica": runtime.relay.published},
            "dead_letters": dead,
            "broker": broker_state(runtime),
            "collector": asdict(collector.state()),
            "consumers": [
                {"service": c.service, "group": c.group_id, "processed": c.processed, "duplicates": c.duplicates,
                 "dead_lettered": c.dead_lettered, "assigned": c.assigned, "stops": c.stops,
                 "stopped": {**c.stopped.public(), "detail": c.stopped.detail} if c.stopped else None}
                for c in runtime.consumers
            ],
        }

    @app.get("/metrics", tags=["health"], response_class=Response,
             summary="Prometheus metrics: consumers (stopped, lag, last poll), the outbox (late, parked), dead letters, "
                     "the broker's epoch and the service's own (runtime/metrics.py)")
    async def metrics() -> Response:
        runtime: Runtime = app.state.runtime
        shot = Snapshot(spec.name, consumers=[await consumer_state(c) for c in runtime.consumers])
        async with runtime.sessions() as session:
            shot.outbox = await outbox_counts(session)
            oldest = await oldest_unpublished_at(session)
            shot.outbox_oldest_age = age(oldest.timestamp() if oldest is not None else None)
            shot.dead_letters = (await dead_letter_counts(session))["by_reason"]
            if spec.metrics is not None:
                shot.gauges = await spec.metrics(runtime, session)
        broker = broker_state(runtime)
        if broker is not None:
            shot.broker_provisioned, shot.epoch_changes = broker["state"] == "current", int(broker["changes"])
        return Response(exposition(shot), media_type=CONTENT_TYPE)

    app.include_router(outbox_router)
    for router in spec.routers:
        app.include_router(router)
    app.include_router(operator_routes())
    http_errors.install(app, policy().public)
    _check_access_rules(spec.name, app)
    # Limits (runtime/limits.py): body size, rates and streams per process; the process's
    # listening connection closes with the app.
    app.state.limits = Limits(settings)
    app.add_middleware(BodyLimit, max_bytes=settings.http_max_body_bytes)
    # Outermost of the app's own: every request gets a line, even one BodyLimit refuses; the
    # tracing middleware wraps it, so the line carries the request's trace ids.
    app.add_middleware(AccessLog)
    instrument_app(app)
    app.router.lifespan_context = closing(app.router.lifespan_context)
    return app


def broker_state(runtime: Runtime) -> dict[str, object] | None:
    """What the service knows of its broker's epoch (decision 0026); None: not watched."""
    return runtime.epochs.observed.public() if runtime.epochs is not None else None


def consumers_stopped(runtime: Runtime) -> tuple[bool, list[dict[str, str]]]:
    """Whether every consumer runs, and which a failure limit stopped and why (readiness is
    public: the failure's detail is for /stats)."""
    stopped = [{"group": c.group_id, **c.stopped.public()} for c in runtime.consumers if c.stopped is not None]
    return not stopped, stopped


class ReplayRequest(BaseModel):
    # Dead letters by position (topic/partition/offset); none named: every one not yet replayed.
    positions: list[str] | None = None


def operator_routes() -> APIRouter:
    """The operator's hands on the consumers (decision 0022): resume one a failure limit
    stopped, list the dead letters whose bodies this service keeps, replay them."""
    router = APIRouter(tags=["operations"])

    @router.post("/consumers/{group}/resume", summary="Resume a consumer a failure limit stopped")
    async def resume(group: str, request: Request,
                     principal: Principal = Depends(permit("consumers.resume"))) -> dict[str, Any]:
        runtime: Runtime = request.app.state.runtime
        consumer = next((c for c in runtime.consumers if c.group_id == group), None)
        if consumer is None:
            raise HTTPException(404, detail=reason("NOT_FOUND", f"no consumer group {group} in this service"))
        resumed = consumer.resume()
        log.warning("consumer resume asked", group=group, by=principal.subject, was_stopped=resumed)
        return {"group": group, "resumed": resumed}

    @router.get("/dead-letters", summary="The dead letters this service keeps the bodies of")
    async def listed(request: Request, limit: int = Query(200, ge=1, le=1000),
                     principal: Principal = Depends(permit("dead-letters.read"))) -> list[dict[str, Any]]:
        runtime: Runtime = request.app.state.runtime
        if runtime.data_keys is None:
            return []  # a service without data keys (the audit trail) keeps no bodies
        async with runtime.sessions() as session:
            return await dead_letters.listing(session, limit)

    @router.post("/dead-letters/replay", summary="Apply dead letters again through the consumer that failed them")
    async def replay(asked: ReplayRequest, request: Request,
                     principal: Principal = Depends(permit("dead-letters.replay"))) -> dict[str, Any]:
        runtime: Runtime = request.app.state.runtime
        positions = asked.positions
        if positions is None and runtime.data_keys is None:
            positions = []
        elif positions is None:
            async with runtime.sessions() as session:
                positions = await dead_letters.replayable(session)
        results = [await replay_one(runtime, position) for position in positions[:1000]]
        log.warning("dead letters replayed", by=principal.subject,
                    results={r["position"]: r["result"] for r in results})
        return {"results": results}

    @router.post("/broker/epoch", summary="Look at the broker's epoch now; republish the outbox in a new one")
    async def broker_epoch(request: Request,
                           principal: Principal = Depends(permit("broker.epoch"))) -> dict[str, Any]:
        """What `punte replay` asks each service after it rebuilt the broker: the same check
        the service runs every PUNTE_BROKER_EPOCH_CHECK_SECONDS, at once. In a new epoch the
        kept outbox is marked pending again, once: asked twice, the second finds it the same."""
        runtime: Runtime = request.app.state.runtime
        if runtime.epochs is None:
            raise HTTPException(409, detail=reason("NOT_FOUND", "this service does not watch the broker's epoch"))
        seen = await runtime.epochs.check()
        log.warning("broker epoch check asked", by=principal.subject, seen=seen)
        return {"seen": seen or "unreachable", **runtime.epochs.observed.public()}

    return router


async def replay_one(runtime: Runtime, position: str) -> dict[str, Any]:
    """One dead letter replayed through the consumer of its topic whose group failed it."""
    topic = position.rsplit("/", 2)[0]
    readers = [c for c in runtime.consumers if c.reads(topic)]
    if not readers:
        return {"position": position, "result": "not-found", "detail": f"no consumer here reads {topic}"}
    answer = "not-found"
    try:
        for consumer in readers:
            answer = await consumer.replay(position, sole_reader=len(readers) == 1)
            if answer != "other-consumer":
                return {"position": position, "result": answer, "group": consumer.group_id}
    except LookupError:
        answer = "not-found"
    except Erased as erased:
        return {"position": position, "result": "erased", "detail": f"erased by {erased.rule}"}
    except ReplayFailed as failed:
        return {"position": position, "result": "failed", "detail": str(failed)}
    return {"position": position, "result": "no-consumer" if answer == "other-consumer" else answer}


async def _outbox_problems(runtime: Runtime) -> list[str]:
    """What readiness says about the outbox: parked rows, and the rows of their keys
    waiting behind them (decision 0021)."""
    try:
        async with runtime.engine.connect() as conn:
            parked, waiting = await parked_counts(conn)
    except Exception:  # the database check says so already
        return []
    if not parked:
        return []
    return [f"{parked} outbox row{'s' if parked > 1 else ''} parked (the broker will not "
            f"take {'them' if parked > 1 else 'it'}), {waiting} more waiting "
            "behind on the same keys: punte outbox parked"]


async def dead_letter_counts(session: AsyncSession) -> dict[str, Any]:
    """Dead letters this service wrote, from what it persisted, so every path (ingress
    refusals, signature refusals, handler failures) counts and a restart resets nothing:
    the dead-letter events in its outbox (kept for the outbox-published rule's days), by
    reason code, and the sealed bodies it keeps (until the dead-letter-body rule)."""
    code = sa.cast(sa.func.convert_from(outbox_table.c.payload, "UTF8"), JSONB)["reason"]["code"].astext
    by_reason = dict((await session.execute(
        # The type inline, not a parameter: a generic plan could not use the partial index.
        sa.select(code, sa.func.count())
        .where(outbox_table.c.event_type == sa.literal(DEAD_LETTER_TYPE, literal_execute=True)).group_by(code)
    )).all())
    bodies = 0
    if await session.scalar(sa.text("SELECT to_regclass('punte_dead_letters') IS NOT NULL")):
        bodies = await session.scalar(sa.text("SELECT count(*) FROM punte_dead_letters")) or 0
    return {"total": sum(by_reason.values()), "by_reason": by_reason, "bodies_kept": bodies}


outbox_router = APIRouter(prefix="/outbox", tags=["outbox"])


@outbox_router.get("/parked", summary="Outbox rows the broker will not take, and why")
async def list_parked(request: Request,
                      principal: Principal = Depends(permit("outbox.parked"))) -> list[dict[str, Any]]:
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.connect() as conn:
        return [row.as_dict() for row in await parked_rows(conn)]


@outbox_router.post("/parked/{row_id}/retry", summary="Put a parked row back in line")
async def retry_parked_row(row_id: int, request: Request,
                           principal: Principal = Depends(permit("outbox.parked"))) -> dict[str, int]:
    runtime: Runtime = request.app.state.runtime
    if not await retry_parked(runtime.engine, row_id):
        raise HTTPException(409, detail=reason("NOT_PARKED", f"row {row_id}"))
    runtime.relay.wake()
    return {"retried": row_id}


@outbox_router.post("/parked/{row_id}/discard", summary="Give up a parked row: kept, marked, never published")
async def discard_parked_row(row_id: int, request: Request,
                             principal: Principal = Depends(permit("outbox.parked"))) -> dict[str, int]:
    runtime: Runtime = request.app.state.runtime
    if not await discard_parked(runtime.engine, row_id, principal.subject):
        raise HTTPException(409, detail=reason("NOT_PARKED", f"row {row_id}"))
    runtime.relay.wake()
    return {"discarded": row_id}


def _check_access_rules(service: str, app: FastAPI) -> None:
    """Fail closed: a service whose operations are not all in contracts/reference/access.yaml
    does not start. Read from the OpenAPI document: FastAPI keeps included routers' routes
    out of ``app.routes``."""
    missing = []
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            try:
                action_for(service, method.upper(), path)
            except KeyError:
                missing.append(f"{method.upper()} {path}")
    if missing:
        raise RuntimeError(f"{service}: no access rule for {', '.join(missing)} (contracts/reference/access.yaml)")


def serve(spec: ServiceSpec) -> None:
    """Entry point of ``python -m services.<name>``."""
    settings = Settings(service=spec.name)
    # Before uvicorn speaks: its lines, as every library's, become the service's JSON lines.
    configure_logging(spec.name, settings.log_level, settings.log_format, settings.library_log_level)
    app = create_app(spec, settings)
    # No logging configuration of uvicorn's own (plain text) and no access log of its own
    # (it prints paths with their query strings): runtime.log.AccessLog writes that.
    http_server.run(app, settings.http_host, settings.http_port, settings.http_socket_fd, log_level="warning",
                    lifespan="on", log_config=None, access_log=False)
