"""Where a report's time goes, hop by hop: paced reports through a fresh stack, every
message of the network read as it is published, and the record timestamps (stamped by the
producer: the institution, then each service's outbox relay) compared along the path

    report -> outcome (intake)      report -> case.opened (intake)
    case.opened -> referral.requested (referral)
    referral.requested -> lead's referral-requested notification (notification)

Each hop is one consumer poll, the handler's transaction and the outbox relay's publish;
beside them, the broker's own one hop (produce -> consume with the services' consumer
settings) in the same run.

    python bench/hops.py [--reports N] [--rate R] [--broker tansu|kafka]

It prints figures only; nothing here asserts a timing.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from aiokafka import AIOKafkaConsumer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.e2e import make_reports, percentiles, raw_hop_latency, send_all  # noqa: E402
from bench.stacks import Senders, stack_settings, started_stack  # noqa: E402
from contracts.events import EventType  # noqa: E402
from contracts.reference import ingress_topic  # noqa: E402
from punte.stack import Stack  # noqa: E402
from runtime.cloudevents import decode  # noqa: E402
from runtime.kafka import client_options  # noqa: E402
from runtime.settings import Settings  # noqa: E402

console = Console()


class Timeline:
    """Every punte.* message from now on: for each event, its record timestamp (s)."""

    def __init__(self, bootstrap: str, settings: Settings | None = None) -> None:
        self.consumer = AIOKafkaConsumer(**client_options(settings), bootstrap_servers=bootstrap, group_id=None,
                                         auto_offset_reset="latest",
                                         enable_auto_commit=False, metadata_max_age_ms=1000,
                                         fetch_max_wait_ms=20)
        self.outcome: dict[str, float] = {}  # report id -> outcome's timestamp
        self.opened: dict[str, tuple[str, float]] = {}  # report id -> (case id, case.opened's timestamp)
        self.requested: dict[str, float] = {}  # case id -> referral.requested's timestamp
        self.notified: dict[str, float] = {}  # case id -> lead's referral-requested notification
        self.at: dict[str, float] = {}  # event id -> record timestamp
        self._task: asyncio.Task | None = None

    async def start(self, partitions: int) -> None:
        self.consumer.subscribe(pattern=r"^punte\..*")
        await self.consumer.start()
        deadline = time.monotonic() + 60
        while len(self.consumer.assignment()) < partitions:
            if time.monotonic() > deadline:
                raise TimeoutError("not every partition was assigned")
            await asyncio.sleep(0.1)
        for tp in self.consumer.assignment():
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=100, max_records=5000)).values():
                for record in records:
                    try:
                        event = decode(record.headers, record.value)
                    except Exception:
                        continue
                    at = record.timestamp / 1000
                    self.at.setdefault(event.id, at)
                    if event.type == EventType.OUTCOME.value:
                        self.outcome.setdefault(event.data["subject_id"], at)
                    elif event.type == EventType.CASE_OPENED.value:
                        self.opened.setdefault(event.data["report_id"], (event.data["case_id"], at))
                    elif event.type == EventType.REFERRAL_REQUESTED.value:
                        self.requested.setdefault(event.data["case_id"], at)
                    elif (event.type == EventType.CASE_NOTIFICATION.value
                          and event.data["kind"] == "referral-requested"):
                        self.notified.setdefault(event.data["case_id"], at)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


async def run(stack: Stack, n: int, rate: float, seed: int) -> dict:
    from contracts.reference import institutions, topic_partitions
    reports = make_reports(stack, random.Random(seed), n)
    timeline = Timeline(stack.kafka_bootstrap or "", stack_settings(stack))
    await timeline.start(sum(p for _, p in topic_partitions(institutions())))
    senders = Senders(stack)
    await senders.start({ingress_topic(reporter) for reporter, _ in reports})
    sent: dict[str, float] = {}
    try:
        await send_all(senders, reports, sent, rate=rate)
        await asyncio.sleep(5)
    finally:
        await senders.stop()
        await timeline.stop()
    # The reports' own record timestamps are the producer's: wall-clock, like the relays'.
    sent_wall = {i: time.time() - (time.monotonic() - t) for i, t in sent.items()}
    hops: dict[str, list[float]] = {"report -> outcome": [], "report -> case.opened": [],
                                    "case.opened -> referral.requested": [],
                                    "referral.requested -> notification": [], "report -> notification": []}
    for report_id, at in sent_wall.items():
        if report_id in timeline.outcome:
            hops["report -> outcome"].append(timeline.outcome[report_id] - at)
        if report_id not in timeline.opened:
            continue
        case_id, opened = timeline.opened[report_id]
        hops["report -> case.opened"].append(opened - at)
        if case_id in timeline.requested:
            hops["case.opened -> referral.requested"].append(timeline.requested[case_id] - opened)
            if case_id in timeline.notified:
                hops["referral.requested -> notification"].append(timeline.notified[case_id] - timeline.requested[case_id])
                hops["report -> notification"].append(timeline.notified[case_id] - at)
    broker = await raw_hop_latency(stack.kafka_bootstrap or "", reports, rate, min(n, 100), stack_settings(stack),
                                   **({"replication": 3} if stack.kafka is not None else {}))
    return {"hops": {k: percentiles(v) for k, v in hops.items()}, "broker_one_hop": broker,
            "stages": await stages(stack, timeline)}


async def stages(stack: Stack, timeline: "Timeline") -> dict[str, dict[str, dict]]:
    """Inside each service, from its own database: from the message's record timestamp to
    the start of the transaction that applied it (inbox received_at: polled, batched,
    waiting for the loop), to the start of the relay's transaction that published its
    event (outbox published_at), to the event's record timestamp (the relay's send)."""
    out: dict[str, dict[str, dict]] = {}
    for service in ("intake", "referral", "notification"):
        url = Settings(database_url=stack.database_url).database_for(service).replace("+asyncpg", "")
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT i.message_key, extract(epoch FROM i.received_at) AS received, "
                "extract(epoch FROM o.published_at) AS published, o.headers::text AS headers "
                "FROM punte_inbox i JOIN punte_outbox o "
                "ON o.created_at = i.received_at AND o.published_at IS NOT NULL "
                "WHERE i.received_at > now() - interval '10 minutes'")
        finally:
            await conn.close()
        read, relay, send = [], [], []
        for row in rows:
            headers = dict(json.loads(row["headers"]))
            source_at = timeline.at.get(row["message_key"].split("|", 1)[-1])
            sent_at = timeline.at.get(headers.get("ce_id", ""))
            if source_at is None or sent_at is None:
                continue
            read.append(float(row["received"]) - source_at)
            relay.append(float(row["published"]) - float(row["received"]))
            send.append(sent_at - float(row["published"]))
        out[service] = {"record -> transaction": percentiles(read), "transaction -> relay": percentiles(relay),
                        "relay -> record": percentiles(send)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="punte-hops-") as tmp:
        with started_stack(Path(tmp) / "state", args.broker) as stack:
            figures = asyncio.run(run(stack, args.reports, args.rate, args.seed))
    table = Table(title=f"{args.reports} reports at {args.rate:g}/s: hop latency from record timestamps")
    for column in ("hop", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "hop" else "right")
    for hop, p in figures["hops"].items():
        table.add_row(hop, str(p.get("n", 0)), *(f"{p.get(k, 0):.0f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")))
    b = figures["broker_one_hop"]
    table.add_row("broker one hop (same run)", str(b["n"]), *(f"{b[k]:.0f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")))
    console.print(table)
    table = Table(title="inside each service (p50 / p99 ms), from its inbox and outbox rows")
    for column in ("service", "record -> transaction", "transaction -> relay", "relay -> record"):
        table.add_column(column, justify="left" if column == "service" else "right")
    for service, parts in figures["stages"].items():
        table.add_row(service, *(f"{p.get('p50_ms', 0):.0f} / {p.get('p99_ms', 0):.0f} (n {p.get('n', 0)})"
                                 for p in parts.values()))
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
