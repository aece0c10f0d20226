"""The reference pipeline: the network's shape with nothing but its plumbing.

    python bench/reference.py [--reports N] [--broker tansu|kafka] [--seed S]

What the machine allows a pipeline of the network's shape, on the same kind of broker and
PostgreSQL: four stages, each its own process, as the services are. Intake reads the
ingress topics and writes an outcome to the reporter's delivery topic and a case to the
cases topic; referral reads the cases topic and writes to the referrals topic; notification
reads the referrals topic and writes two notifications to delivery topics (the lead's and
one institution informed); audit reads every one of those topics. Six messages per report,
as in the network (about 6.1 there).

Each stage consumes a polled batch and writes, in ONE transaction with one bulk statement
each (asyncpg, unnest), its inbox rows (ON CONFLICT DO NOTHING: a redelivery is skipped),
its state rows and its outbox rows; then commits the offsets and wakes its relay, which
publishes the pending outbox rows in id order and marks them published. No business logic,
no validation, no signing, no hash chain: what is left is the cost of the plumbing.

Its topics are `bench.*` and its databases `bench_ref_*` (the audit service reads
`punte.*` only), created afresh and dropped afterwards. bench/e2e.py runs it on the
network's own broker and PostgreSQL, in the same run; alone, this script starts an
embedded PostgreSQL and broker of its own (or a three-node Apache Kafka cluster). It prints
figures and asserts nothing. See bench/README.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import psutil  # noqa: E402

from bench import event_loop  # noqa: E402
from runtime.settings import Settings  # noqa: E402

STAGES = ("intake", "referral", "notification", "audit")
DB_PREFIX = "bench_ref_"
CASES = "bench.cases"
REFERRALS = "bench.referrals"
# Partitions of the shared topics, as the network's punte.cases and punte.referrals have;
# ingress and delivery topics have one each, as the network's.
SHARED_PARTITIONS = 3
MESSAGES_PER_REPORT = 6  # ingress, outcome, case, referral, lead's and informed notification
RELAY_BATCH_MAX = Settings().relay_batch_max  # as the services' relays take it


def batch_max(stage: str) -> int:
    """The most records a stage applies in one transaction, as the services take it: a
    report path's consumer's, or for the audit trail a background consumer's."""
    settings = Settings()
    return settings.consumer_batch_max_background if stage == "audit" else settings.consumer_batch_max
ID = "bench-id"  # header: the message's id (the inbox key)
FROM = "bench-from"  # header: the reporting institution, carried along for routing

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes
    value: bytes
    headers: Headers


def network_institutions() -> tuple[str, ...]:
    """The institutions with an ingress and a delivery topic in the network, sorted: the
    reference pipeline has as many topics as the network."""
    from contracts.reference import institutions, topic_partitions

    prefix = "punte.ingress."
    return tuple(sorted(n.removeprefix(prefix) for n, _ in topic_partitions(institutions()) if n.startswith(prefix)))


def ingress(institution: str) -> str:
    return f"bench.ingress.{institution}"


def delivery(institution: str) -> str:
    return f"bench.delivery.{institution}"


def topics(institutions: Iterable[str]) -> list[tuple[str, int]]:
    """Every topic of the reference pipeline with its partitions."""
    names = sorted(institutions)
    return [*((ingress(i), 1) for i in names), *((delivery(i), 1) for i in names),
            (CASES, SHARED_PARTITIONS), (REFERRALS, SHARED_PARTITIONS)]


def subscription(stage: str) -> str:
    """The topic pattern each stage's consumer group reads."""
    return {"intake": r"^bench\.ingress\..+$", "referral": r"^bench\.cases$",
            "notification": r"^bench\.referrals$",
            "audit": r"^bench\.(ingress\..+|delivery\..+|cases|referrals)$"}[stage]


def header(headers: Headers, name: str) -> str:
    return next(v for k, v in headers if k == name).decode()


def derived(parent: Message, kind: str, topic: str) -> Message:
    """A message caused by ``parent``: its id derived from the parent's, so a redelivered
    parent causes the same message (and the next inbox skips it), as the network's ids."""
    headers = [(ID, f"{header(parent.headers, ID)}/{kind}".encode()), (FROM, header(parent.headers, FROM).encode())]
    return Message(topic, parent.key, parent.value, headers)


def routes(stage: str, message: Message, institutions: tuple[str, ...]) -> list[Message]:
    """What a stage writes to its outbox for one consumed message: the network's hops with
    no decision in them. The informed institution is the reporter's neighbour in
    ``institutions`` (sorted), so that a notification goes to another delivery topic."""
    reporter = header(message.headers, FROM)
    if stage == "intake":
        return [derived(message, "outcome", delivery(reporter)), derived(message, "case", CASES)]
    if stage == "referral":
        return [derived(message, "referral", REFERRALS)]
    if stage == "notification":
        informed = institutions[(institutions.index(reporter) + 1) % len(institutions)]
        return [derived(message, "lead", delivery(reporter)), derived(message, "informed", delivery(informed))]
    return []


def database_url(url: str, name: str) -> str:
    """``url`` (SQLAlchemy's or asyncpg's form) pointing at database ``name``, in asyncpg's form."""
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://"))
    return urlunsplit(parts._replace(path=f"/{name}"))


# --- a stage ------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE inbox (id text PRIMARY KEY, topic text NOT NULL, part int NOT NULL, "offset" bigint NOT NULL,
                    received_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE state (id text PRIMARY KEY, payload bytea NOT NULL,
                    written_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE outbox (id bigserial PRIMARY KEY, topic text NOT NULL, key bytea, headers jsonb NOT NULL,
                     payload bytea NOT NULL, published_at timestamptz);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
"""


@dataclass(frozen=True)
class StageConfig:
    stage: str
    bootstrap: str
    database_url: str  # the stage's own database, asyncpg's form
    kafka: dict[str, Any]  # Settings fields of the stage's Kafka client
    institutions: tuple[str, ...]
    partitions: int  # the stage's subscription's partitions: ready once all are assigned


async def write_batch(conn: asyncpg.Connection, stage: str, records: list[Any],
                      institutions: tuple[str, ...]) -> int:
    """One polled batch in one transaction: inbox, state and outbox rows, a bulk statement
    each. Returns the messages that were new."""
    messages = [Message(r.topic, r.key, r.value, list(r.headers)) for r in records]
    async with conn.transaction():
        new = {row["id"] for row in await conn.fetch(
            "INSERT INTO inbox (id, topic, part, \"offset\") SELECT * FROM unnest($1::text[], $2::text[], $3::int[], "
            "$4::bigint[]) ON CONFLICT DO NOTHING RETURNING id",
            [header(m.headers, ID) for m in messages], [r.topic for r in records],
            [r.partition for r in records], [r.offset for r in records])}
        fresh = []
        for m in messages:  # a message twice in one batch: its first copy only
            if header(m.headers, ID) in new:
                new.discard(header(m.headers, ID))
                fresh.append(m)
        if not fresh:
            return 0
        await conn.execute("INSERT INTO state (id, payload) SELECT * FROM unnest($1::text[], $2::bytea[])",
                           [header(m.headers, ID) for m in fresh], [m.value for m in fresh])
        out = [o for m in fresh for o in routes(stage, m, institutions)]
        if out:
            await conn.execute(
                "INSERT INTO outbox (topic, key, headers, payload) SELECT t, k, h::jsonb, p "
                "FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bytea[]) AS u(t, k, h, p)",
                [o.topic for o in out], [o.key for o in out],
                [json.dumps([(k, v.decode()) for k, v in o.headers]) for o in out], [o.value for o in out])
    return len(fresh)


async def relay(conn: asyncpg.Connection, producer: Any, wake: asyncio.Event) -> None:
    """Publishes pending outbox rows in id order, a batch at a time; woken by a commit."""
    while True:
        rows = await conn.fetch("SELECT id, topic, key, headers, payload FROM outbox WHERE published_at IS NULL "
                                "ORDER BY id LIMIT $1", RELAY_BATCH_MAX)
        if not rows:
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), 1.0)
            except TimeoutError:
                pass
            continue
        sent = [await producer.send(r["topic"], value=r["payload"], key=r["key"],
                                    headers=[(k, v.encode()) for k, v in json.loads(r["headers"])]) for r in rows]
        await asyncio.gather(*sent)
        await conn.execute("UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[])",
                           [r["id"] for r in rows])


async def run_stage(config: StageConfig, ready: Any) -> None:
    from runtime import collector
    from runtime.kafka import make_consumer, make_producer

    settings = Settings(**config.kafka)
    consume_conn = await asyncpg.connect(config.database_url)
    relay_conn = await asyncpg.connect(config.database_url)
    most = batch_max(config.stage)
    consumer = make_consumer(config.bootstrap, f"bench-ref-{config.stage}", most, settings)
    consumer.subscribe(pattern=subscription(config.stage))
    producer = make_producer(config.bootstrap, settings)
    await asyncio.gather(consumer.start(), producer.start())
    # The metadata of every topic the stage writes to before it says it is ready: the
    # services' producers have theirs from earlier sends, and a fresh one fetches it at its
    # first send to each topic, one after the other.
    writes = {"intake": [*map(delivery, config.institutions), CASES], "referral": [REFERRALS],
              "notification": list(map(delivery, config.institutions))}.get(config.stage, [])
    await asyncio.gather(*(producer.partitions_for(t) for t in writes))
    wake = asyncio.Event()
    relaying = asyncio.create_task(relay(relay_conn, producer, wake))
    # The services' process set-up (runtime.service): start-up's objects frozen and the
    # collector's young threshold raised, so the ratio compares work, not collector settings.
    collector.settle(settings.gc_young_threshold)
    announced = False
    while True:
        if not announced and len(consumer.assignment()) >= config.partitions:
            ready.put(config.stage)
            announced = True
        batch = await consumer.getmany(timeout_ms=1000, max_records=most)
        records = [r for rs in batch.values() for r in rs]
        if records:
            await write_batch(consume_conn, config.stage, records, config.institutions)
            await consumer.commit()
            wake.set()
        if relaying.done():
            relaying.result()  # raises what stopped the relay


def stage_main(config: StageConfig, ready: Any) -> None:
    """A stage's process: runs until terminated."""
    event_loop.run(run_stage(config, ready))


# --- the driver ---------------------------------------------------------------------------


async def prepare_databases(url: str) -> None:
    conn = await asyncpg.connect(database_url(url, urlsplit(url).path.lstrip("/") or "postgres"))
    try:
        for stage in STAGES:
            await conn.execute(f"DROP DATABASE IF EXISTS {DB_PREFIX}{stage} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {DB_PREFIX}{stage}")
    finally:
        await conn.close()
    for stage in STAGES:
        db = await asyncpg.connect(database_url(url, DB_PREFIX + stage))
        try:
            await db.execute(SCHEMA)
        finally:
            await db.close()


async def drop_databases(url: str) -> None:
    conn = await asyncpg.connect(database_url(url, urlsplit(url).path.lstrip("/") or "postgres"))
    try:
        for stage in STAGES:
            await conn.execute(f"DROP DATABASE IF EXISTS {DB_PREFIX}{stage} WITH (FORCE)")
    finally:
        await conn.close()


async def drop_topics(bootstrap: str, names: list[str], settings: Settings | None) -> None:
    from runtime.kafka import make_admin

    admin = make_admin(bootstrap, settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


def kafka_fields(settings: Settings | None) -> dict[str, Any]:
    """The Kafka client fields a stage process needs (the rest from its environment)."""
    if settings is None:
        return {}
    return {k: v for k, v in settings.model_dump().items() if k.startswith("kafka_") and k != "kafka_ca_file"}


async def wait_count(url: str, query: str, expected: int, timeout: float, what: str,
                     alive: Callable[[], None] = lambda: None) -> Any:
    """Polls ``query`` (count, latest timestamp) until the count reaches ``expected``;
    returns the count and the latest timestamp then. ``alive`` raises when a stage has died."""
    conn = await asyncpg.connect(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            count, latest = await conn.fetchrow(query)
            if count >= expected:
                return count, latest
            alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"reference pipeline: {what} {count}/{expected} after {timeout}s")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


def group_cpu_rss(pid: int) -> tuple[float, int]:
    """CPU seconds and RSS (bytes) of a process and its children."""
    try:
        process = psutil.Process(pid)
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0
    cpu, rss = 0.0, 0
    for p in members:
        try:
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss
        except psutil.Error:
            pass
    return cpu, rss


async def run(bootstrap: str, url: str, settings: Settings | None, reports: list[Message],
              institutions: tuple[str, ...], replication: int = 1, timeout: float = 600,
              cpu_of: Callable[[], dict[str, float]] = dict) -> dict[str, Any]:
    """The reference pipeline on a broker and PostgreSQL: ``reports`` (messages to
    ``ingress(...)`` topics, headers ID and FROM set) sent at once; figures until the last
    stage published its last notification and until audit wrote its last row. Its topics
    and databases are dropped afterwards. ``cpu_of``: CPU seconds of other components (the
    broker, PostgreSQL), read when the clock starts and when the last row is in, before the
    stages and their database connections go."""
    from runtime.kafka import ensure_topics, make_producer

    names = topics(institutions)
    await drop_topics(bootstrap, [n for n, _ in names], settings)  # a previous run's, if any
    configs = {n: {"min.insync.replicas": "2"} for n, _ in names} if replication > 1 else None
    await ensure_topics(bootstrap, names, replication, configs, settings)
    await prepare_databases(url)
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    partitions = {"intake": len(institutions), "referral": SHARED_PARTITIONS, "notification": SHARED_PARTITIONS,
                  "audit": sum(p for _, p in names)}
    # The function by its module's name, so that the spawned processes find it also when
    # this file runs as __main__.
    target = __import__("bench.reference", fromlist=["stage_main"]).stage_main
    processes = {stage: context.Process(target=target, name=f"bench-ref-{stage}", daemon=True, args=(
        StageConfig(stage, bootstrap, database_url(url, DB_PREFIX + stage), kafka_fields(settings), institutions,
                    partitions[stage]), ready)) for stage in STAGES}
    producer = make_producer(bootstrap, settings)
    try:
        for p in processes.values():
            p.start()
        waiting = set(STAGES)
        deadline = time.monotonic() + 120
        while waiting:
            dead = [s for s, p in processes.items() if not p.is_alive()]
            if dead:
                raise RuntimeError(f"reference stage(s) {dead} exited at start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"reference stages not assigned after 120 s: {sorted(waiting)}")
            try:
                waiting.discard(await asyncio.to_thread(ready.get, True, 0.5))
            except Exception:  # queue.Empty
                pass
        await producer.start()
        # Every ingress topic's metadata before the clock starts, as the network's senders
        # have theirs (Senders.start): a fresh topic's first send waits for it otherwise.
        await asyncio.gather(*(producer.partitions_for(t) for t in {m.topic for m in reports}))
        cpu_before = {s: group_cpu_rss(p.pid or 0)[0] for s, p in processes.items()} | cpu_of()
        rss_max = dict.fromkeys(STAGES, 0)

        async def sample() -> None:
            while True:
                for s, p in processes.items():
                    rss_max[s] = max(rss_max[s], group_cpu_rss(p.pid or 0)[1])
                await asyncio.sleep(0.5)
        sampler = asyncio.create_task(sample())
        start_wall, start = time.time(), time.monotonic()
        sent = [await producer.send(m.topic, value=m.value, key=m.key, headers=m.headers) for m in reports]
        await asyncio.gather(*sent)
        send_s = time.monotonic() - start
        n = len(reports)
        def alive() -> None:
            dead = [s for s, p in processes.items() if not p.is_alive()]
            if dead:
                raise RuntimeError(f"reference stage(s) {dead} exited (exit codes "
                                   f"{[processes[s].exitcode for s in dead]})")
        notified, last = await wait_count(database_url(url, DB_PREFIX + "notification"),
                                "SELECT count(*), max(published_at) FROM outbox WHERE published_at IS NOT NULL",
                                2 * n, timeout, "notifications published", alive)
        audit_rows, audited = await wait_count(database_url(url, DB_PREFIX + "audit"),
                                   "SELECT count(*), max(written_at) FROM state", MESSAGES_PER_REPORT * n, timeout,
                                   "audit rows", alive)
        sampler.cancel()
        cpu_after = {s: group_cpu_rss(p.pid or 0)[0] for s, p in processes.items()} | cpu_of()
    finally:
        await producer.stop()
        for p in processes.values():
            if p.is_alive():
                p.terminate()
        for p in processes.values():
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        await drop_databases(url)
        await drop_topics(bootstrap, [n for n, _ in names], settings)
    last_s, audited_s = last.timestamp() - start_wall, audited.timestamp() - start_wall
    return {
        "reports": n, "messages_per_report": MESSAGES_PER_REPORT, "send_s": send_s,
        "last_stage_s": last_s, "audited_s": audited_s,
        "notifications_published": notified, "audit_rows": audit_rows,  # 2 and 6 per report: none doubled
        "reports_per_s_last_stage": n / last_s, "reports_per_s_audited": n / audited_s,
        "cpu_s": {s: round(cpu_after[s] - cpu_before[s], 2) for s in cpu_after},
        "max_rss_mb": {s: rss_max[s] / 2**20 for s in STAGES},
    }


def reports_from(items: Iterable[tuple[str, str, bytes, Headers]]) -> list[Message]:
    """The reference's input from (institution, id, value, headers): the same bytes the
    network gets, on the institution's reference ingress topic."""
    return [Message(ingress(inst), id_.encode(), value, [*headers, (ID, id_.encode()), (FROM, inst.encode())])
            for inst, id_, value, headers in items]


def synthetic(n: int, seed: int) -> list[Message]:
    """Standalone input: synthetic reports (JSON, about the size of the network's)."""
    from punte.synthetic import reporters, synthetic_report

    rng = random.Random(seed)
    names = list(reporters())
    items = []
    for _ in range(n):
        reporter = rng.choice(names)
        items.append((reporter, str(uuid.UUID(int=rng.getrandbits(128))),
                      json.dumps(synthetic_report(rng, reporter)).encode(), []))
    return reports_from(items)


def main() -> int:
    from bench.e2e import cpu_seconds, stack_processes
    from bench.figures import rounded
    from bench.stacks import stack_settings, started_stack
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=1000, help="reports sent at once (default 1000)")
    parser.add_argument("--broker", choices=("tansu", "kafka"), default="tansu",
                        help="tansu: the embedded default; kafka: a three-node Apache Kafka cluster of its own")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="punte-ref-") as tmp, \
            started_stack(Path(tmp) / "state", args.broker, services=False) as stack:
        assert stack.kafka_bootstrap and stack.database_url
        groups = {k: v for k, v in stack_processes(stack).items() if k in ("broker", "postgres")}
        figures = asyncio.run(run(stack.kafka_bootstrap, stack.database_url, stack_settings(stack),
                                  synthetic(args.reports, args.seed), network_institutions(),
                                  3 if stack.kafka is not None else 1, args.timeout, lambda: cpu_seconds(groups)))
    figures |= {"broker": args.broker, "load_1min_at_start": load}
    print(f"reference pipeline, {args.reports} reports at once on {args.broker}: "
          f"{figures['reports_per_s_last_stage']:.0f} reports/s until the last stage, "
          f"{figures['reports_per_s_audited']:.0f} until audited (load average {load:.2f})", file=sys.stderr)
    print(json.dumps(rounded(figures), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
