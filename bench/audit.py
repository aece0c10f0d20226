"""Benchmark of the audit trail (RFC 9162 Merkle log) against a real PostgreSQL.

    python bench/audit.py [--entries N] [--compare-entries M] [--messages-per-case K] [--seed S]

Starts an embedded PostgreSQL in a temporary folder (always stopped), migrates fresh audit
databases on it and measures, in one run on the same machine:

1. append: N synthetic CloudEvent messages (~600-byte JSON bodies on a few punte.* topics and
   partitions, about K per case) through the real ``InboxConsumer.process_reading_ahead``
   (the consumer loop's step: the next batch prepared by ``Trail.read`` while this one
   is written) with ``handlers.append_many`` (the batch handler, as the service runs) and the
   service's own inbox key (``handlers.key_in_epoch``), in batches of 500 (the consumer's
   batch_max). The messages are made as they are appended (a million do not fit in memory).
   Then, each on a fresh database, M of them: in batches of 500 and of 50; without reading
   ahead; one message at a time
   (``handlers.append`` in a savepoint each, the consumer's path after a batch failed); with
   asyncpg's default prepared-statement cache (100) instead of runtime.db's; and with every
   SQL statement timed (where the time goes);
2. integrate: ``handlers.integrate`` until caught up;
3. proofs: 1000 inclusion proofs and 200 consistency proofs, each reading its nodes; root_at;
4. checkpoint: ``handlers.issue_checkpoint`` (sign + publish to the outbox), commit included;
5. verification: ``verify_stored`` over every entry; the export (``handlers.export_files``
   through ``export_archive.tar_stream``, as GET /export streams it) written to a file; and
   ``offline.verify_export`` on that file, as ``punte audit verify`` runs it;
6. baseline: asyncpg ``executemany`` of min(N, 100 000) rows of the same bytes into a scratch
   table.

It prints figures, and issue #14's targets beside them, and never asserts them. See
bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import string
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bench import event_loop  # noqa: E402
from bench.figures import machine, rounded  # noqa: E402
from contracts.events import EventType  # noqa: E402
from contracts.reference import retention  # noqa: E402
from punte.embedded import EmbeddedPostgres  # noqa: E402
from runtime import collector, db  # noqa: E402
from runtime.cloudevents import CloudEvent  # noqa: E402
from runtime.data_keys import DataKeys  # noqa: E402
from runtime.db import make_engine, make_sessions  # noqa: E402
from runtime.inbox import InboxConsumer, Message, UnitOfWork  # noqa: E402
from runtime.outbox import Outbox  # noqa: E402
from runtime.sealing import ConfiguredKeyProvider  # noqa: E402
from runtime.service import migrate  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.signing import Keyring, SigningKey  # noqa: E402
from runtime.telemetry import configure_tracing  # noqa: E402
from services.audit import handlers  # noqa: E402
from services.audit.adapters import export_archive  # noqa: E402
from services.audit.adapters.tables import audit_entries  # noqa: E402
from services.audit.bootstrap import institution_topics  # noqa: E402
from services.audit.domain import merkle, offline  # noqa: E402
from services.audit.domain.entries import Record, canonical  # noqa: E402
from services.audit.domain.subjects import subject_of  # noqa: E402

console = Console()
MIGRATIONS = ROOT / "services" / "audit" / "migrations"
LOG = handlers.Log("punte.bench/audit", SigningKey.generate("punte.bench/audit-1"))
BODY_BYTES = 600
# The raw-insert baseline holds its rows in memory: at most this many.
RAW_MAX = 100_000
# SQLAlchemy's asyncpg dialect prepares every statement, cached per connection: 100 by
# default, runtime.db sets more (each savepoint of a batch has its own name, so its own SQL).
DEFAULT_STMT_CACHE = 100

# (topic, partitions, event type, source): what the audit consumer sees in the network.
TOPICS = [
    ("punte.ingress.isj-bc", 3, EventType.REPORT_SUBMITTED_V2.value, "/institutions/isj-bc"),
    ("punte.cases", 3, EventType.CASE_OPENED.value, "/punte/intake"),
    ("punte.referrals", 3, EventType.REFERRAL_REQUESTED.value, "/punte/referral"),
    ("punte.delivery.dgaspc-bc", 1, EventType.CASE_NOTIFICATION.value, "/punte/notification"),
    ("punte.access", 1, EventType.ACCESS.value, "/punte/intake"),
]


# --- synthetic messages --------------------------------------------------------------------

def make_messages(rng: random.Random, n: int, per_case: int = 8) -> Iterator[Message]:
    """n messages spread over TOPICS' partitions, offsets from 0 without gaps in each, made
    as they are asked for (a million would not fit in memory at once), about ``per_case``
    of them about each case (a case's values share its data key)."""
    cases = max(1, n // per_case)
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    base_ms = 1_795_000_000_000
    for i in range(n):
        topic, partitions, ce_type, source = rng.choice(TOPICS)
        partition = rng.randrange(partitions)
        offset = offsets[(topic, partition)]
        offsets[(topic, partition)] += 1
        case = f"case-{rng.randrange(cases):08d}"
        data: dict[str, Any] = {
            "case_id": case, "child_ref": f"ch-{rng.randrange(10**10):010d}",
            "actor": f"person-{rng.randrange(500)}", "actor_institution": "isj-bc",
            "kind": rng.choice(["report", "referral-requested", "case-informed", "read"]),
            "priority": rng.choice(["P0", "P1", "P2"]), "note": "",
        }
        filler = BODY_BYTES - len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
        data["note"] = "".join(rng.choices(string.ascii_letters + " ", k=max(0, filler)))
        ev = CloudEvent.new(ce_type, source, data, subject=case)
        yield Message(topic, partition, offset, case.encode(), ev.body(), tuple(ev.headers()), base_ms + i)


def batches(messages: Iterable[Message], size: int) -> Iterator[list[Message]]:
    batch: list[Message] = []
    for m in messages:
        batch.append(m)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- a database ----------------------------------------------------------------------------

async def database(server_url: str, name: str, stmt_cache: int | None = None):
    """A fresh migrated database, with runtime.db's engine unless ``stmt_cache`` is given."""
    url = await migrate(Settings(database_url=server_url, database_prefix="bench"), name, MIGRATIONS)
    engine = make_engine(url, pool_size=5) if stmt_cache is None else create_async_engine(
        url, pool_size=5, connect_args={"prepared_statement_cache_size": stmt_cache})
    return url, engine, make_sessions(engine)


def consumer(sessions, batched: bool = True, read_ahead: bool = True) -> InboxConsumer:
    """As the service runs it: the whole batch in one insert, the next batch read ahead
    (services/audit/bootstrap.py); or, not ``batched``, one message at a time in a
    savepoint each (the consumer's path after a batch failed)."""
    trail = handlers.Trail(templates=institution_topics(), data_keys=DataKeys(ConfiguredKeyProvider.from_setting(
        "bench-1:" + "11" * 32)), network_keys=Keyring([]), schedule=retention())
    # The service's own inbox key (bootstrap.py): the record's canonical bytes, hashed.
    return InboxConsumer(service="audit", group_id="bench", bootstrap="unused", sessions=sessions,
                         handler=partial(handlers.append, trail=trail), message_key=handlers.key_in_epoch(lambda: 1),
                         attempts=1,
                         batch_handler=partial(handlers.append_many, trail=trail) if batched else None,
                         prepare=trail.read if read_ahead else None)


async def append_all(sessions, messages: Iterable[Message], batch: int, batched: bool = True,
                     read_ahead: bool = True) -> dict:
    """Every message through the consumer, ``batch`` at a time, as its loop hands them over
    (``InboxConsumer.process_reading_ahead``: the next batch prepared while this one is
    written, when ``read_ahead``); only that is timed (making the synthetic messages is not)."""
    inbox = consumer(sessions, batched, read_ahead)
    elapsed, count = 0.0, 0
    chunks = batches(messages, batch)
    chunk = next(chunks, [])
    while chunk:
        following = next(chunks, [])  # made before the clock starts: the client would hold it

        async def poll_ahead(following: list[Message] = following) -> list[Message]:
            return following
        start = time.perf_counter()
        await inbox.process_reading_ahead(chunk, [], poll_ahead)
        elapsed += time.perf_counter() - start
        count += len(chunk)
        chunk = following  # what was read ahead, prepared when ``read_ahead``
    return {"entries": count, "batch": batch, "s": elapsed, "entries_per_s": count / elapsed,
            "read_ahead": read_ahead, "processed": inbox.processed, "dead_lettered": inbox.dead_lettered}


# --- where the append's time goes ---------------------------------------------------------

STATEMENTS = [  # (label, how the SQL starts), first match wins
    ("SAVEPOINT / RELEASE (per batch)", ("SAVEPOINT", "RELEASE SAVEPOINT")),
    ("advisory lock", ("SELECT pg_advisory_xact_lock",)),
    ("max(seq) head read, with the epoch", ("SELECT (SELECT coalesce(max(audit_entries.seq)",)),
    ("SELECT positions already appended", ("SELECT audit_entries.topic",)),
    ("INSERT audit_entries (one executemany)", ("INSERT INTO audit_entries",)),
    ("SELECT positions already held (unnest of per-partition ranges)", ("SELECT e.topic",)),
    ("data keys: SELECT / INSERT (runtime.data_keys)", ("SELECT punte_data_keys", "INSERT INTO punte_data_keys")),
    ("inbox: SELECT seen keys (per batch)", ("SELECT message_key",)),
    ("inbox: INSERT keys (per batch)", ("INSERT INTO punte_inbox",)),
]


class StatementTimer:
    """Times every SQL statement on an engine (cursor execute, round trip included)."""

    def __init__(self, engine) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self._sync = engine.sync_engine
        event.listen(self._sync, "before_cursor_execute", self._before)
        event.listen(self._sync, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        took = time.perf_counter() - conn.info["bench_t0"].pop()
        label = next((lab for lab, starts in STATEMENTS if statement.lstrip().startswith(starts)),
                     "other: " + " ".join(statement.split()[:2]))
        self.seconds[label] += took
        self.count[label] += 1

    def remove(self) -> None:
        event.remove(self._sync, "before_cursor_execute", self._before)
        event.remove(self._sync, "after_cursor_execute", self._after)


async def breakdown(sessions, engine, messages: list[Message], batch: int) -> dict:
    """The real append (the batch handler) with every statement timed, the commit timed,
    and the handler's pure Python work (canonical bytes, subject, leaf hash) timed on its own."""
    timer = StatementTimer(engine)
    commits: list[float] = []
    templates = institution_topics()

    # The consumer commits by leaving ``session.begin()``: time the outer transaction's exit.
    from sqlalchemy.ext.asyncio.session import AsyncSessionTransaction
    real_aexit = AsyncSessionTransaction.__aexit__

    async def timed_aexit(self, *exc):
        outer = not self.nested
        t0 = time.perf_counter()
        result = await real_aexit(self, *exc)
        if outer:
            commits.append(time.perf_counter() - t0)
        return result

    AsyncSessionTransaction.__aexit__ = timed_aexit
    # COPY goes to asyncpg directly (runtime.db.copy_rows), past SQLAlchemy's events: time it here.
    real_copy = db.copy_rows

    async def timed_copy(session, table, rows):
        t0 = time.perf_counter()
        await real_copy(session, table, rows)
        label = f"COPY {table.name}"
        timer.seconds[label] += time.perf_counter() - t0
        timer.count[label] += 1

    db.copy_rows = timed_copy
    try:
        run = await append_all(sessions, messages, batch)
    finally:
        AsyncSessionTransaction.__aexit__ = real_aexit
        db.copy_rows = real_copy
        timer.remove()
    t0 = time.perf_counter()
    for m in messages:
        record = Record(m.topic, m.partition, m.offset, m.timestamp_ms, m.key, m.headers, m.value)
        merkle.leaf_hash(canonical(record))
        subject_of(record, templates)
    pure_s = time.perf_counter() - t0
    n = len(messages)
    total = run["s"]
    rows = [{"what": label, "statements": timer.count[label], "s": timer.seconds[label]}
            for label in sorted(timer.seconds, key=lambda k: -timer.seconds[k])]
    rows.append({"what": "COMMIT (per batch)", "statements": len(commits), "s": sum(commits)})
    rows.append({"what": "handler's pure Python (canonical JSON, subject, leaf hash)", "statements": 0,
                 "s": pure_s})
    accounted = sum(r["s"] for r in rows)
    rows.append({"what": "rest: SQLAlchemy compile and results, savepoint & span bookkeeping, event loop, this timer",
                 "statements": 0, "s": max(0.0, total - accounted)})
    for r in rows:
        r["us_per_entry"] = r["s"] / n * 1e6
        r["share"] = r["s"] / total
    return {"entries": n, "batch": batch, "s": total, "entries_per_s": n / total, "rows": rows}


# --- the tree, proofs, checkpoints, verification -------------------------------------------

def percentiles(values_s: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values_s)

    def pick(q: float) -> float:
        return ms[min(len(ms) - 1, max(0, round(q * len(ms)) - 1))]
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p99_ms": pick(0.99), "max_ms": ms[-1],
            "mean_ms": statistics.fmean(ms)}


async def integrate_all(sessions) -> dict:
    start = time.perf_counter()
    total, calls = 0, 0
    while True:
        async with sessions() as session, session.begin():
            added = await handlers.integrate(session)
        calls += 1
        total += added
        if not added:
            break
    elapsed = time.perf_counter() - start
    async with sessions() as session:
        nodes = await session.scalar(sa.text("SELECT count(*) FROM tree_nodes"))
    return {"leaves": total, "calls": calls, "s": elapsed, "leaves_per_s": total / elapsed, "tree_nodes": nodes}


async def proofs(sessions, size: int, rng: random.Random, n_inclusion: int, n_consistency: int) -> dict:
    inc, con, roots = [], [], []
    async with sessions() as session:
        for _ in range(n_inclusion):
            index = rng.randrange(size)
            t0 = time.perf_counter()
            await handlers.inclusion(session, index, size)
            inc.append(time.perf_counter() - t0)
        for _ in range(n_consistency):
            first = rng.randrange(1, size) if size > 1 else 1
            t0 = time.perf_counter()
            await handlers.consistency(session, first, size)
            con.append(time.perf_counter() - t0)
        for _ in range(20):
            t0 = time.perf_counter()
            await handlers.root_at(session, size)
            roots.append(time.perf_counter() - t0)
        # Correctness spot check (a wrong proof would make the timings meaningless).
        root = await handlers.root_at(session, size)
        leaf = await session.scalar(sa.select(audit_entries.c.leaf_hash).where(audit_entries.c.seq == size // 2 + 1))
        ok = merkle.verify_inclusion(leaf, size // 2, size, await handlers.inclusion(session, size // 2, size), root)
    return {"inclusion": percentiles(inc), "consistency": percentiles(con), "root_at": percentiles(roots),
            "spot_check_ok": ok}


async def issue(sessions) -> dict:
    t0 = time.perf_counter()
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session, Outbox(session), "/punte/audit")
        note = await handlers.issue_checkpoint(uow, LOG)
        await uow.outbox.flush()
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    from services.audit.domain import checkpoint
    for _ in range(100):
        checkpoint.sign(checkpoint.Checkpoint(LOG.origin, 1, bytes(32)), LOG.origin, LOG.key.private)
    sign_ms = (time.perf_counter() - t1) / 100 * 1000
    return {"ms": elapsed * 1000, "sign_only_ms": sign_ms, "issued": note is not None}


async def verification(sessions, n: int, folder: Path) -> dict:
    async with sessions() as session:
        t0 = time.perf_counter()
        result = await handlers.verify_stored(session)
        verify_s = time.perf_counter() - t0
    # The export as GET /export streams it (a tar of tlog-tiles and entry bundles), written to
    # a file as it comes, then verified from that file as `punte audit verify` does.
    path = folder / "punte-audit.tar"
    t0 = time.perf_counter()
    async with sessions() as session:
        of = await handlers.export_checkpoint(session)
        with path.open("wb") as out:
            async for chunk in export_archive.tar_stream(handlers.export_files(session, LOG, of),
                                                         int(of.issued_at.timestamp())):
                out.write(chunk)
    export_s = time.perf_counter() - t0
    size_bytes = path.stat().st_size
    t0 = time.perf_counter()
    source = export_archive.open_export(path)
    report = offline.verify_export(source, LOG.origin, LOG.public())
    offline_s = time.perf_counter() - t0
    source.close()
    path.unlink()
    return {"verify_stored_s": verify_s, "verify_stored_entries_per_s": result.entries / verify_s,
            "verified": result.verified, "entries": result.entries,
            "export_s": export_s, "export_mb": size_bytes / 1e6, "export_bytes_per_entry": size_bytes / n,
            "export_entries_per_s": n / export_s,
            "offline_s": offline_s, "offline_entries_per_s": report.checked / offline_s,
            "offline_ok": report.ok, "offline_problem": report.problem}


# --- baseline ------------------------------------------------------------------------------

async def raw_insert(url: str, messages: list[Message], batch: int) -> dict:
    """The same rows (same bytes, same columns) with asyncpg executemany, one transaction per
    batch: into a copy of audit_entries with all its indexes, and into a bare table."""
    templates = institution_topics()
    rows = []
    for seq, m in enumerate(messages, start=1):
        record = Record(m.topic, m.partition, m.offset, m.timestamp_ms, m.key, m.headers, m.value)
        entry = canonical(record)
        s = subject_of(record, templates)
        rows.append((seq, m.topic, m.partition, m.offset, s.event_id, s.event_type, s.source, s.case_id,
                     s.child_ref, s.actor, s.institution, entry, merkle.leaf_hash(entry)))
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    out: dict[str, Any] = {"rows": len(rows), "batch": batch,
                           "entry_bytes_mean": statistics.fmean(len(r[11]) for r in rows)}
    cols = ('seq, topic, "partition", "offset", event_id, event_type, source, case_id, child_ref, actor, '
            "institution, recorded_at, entry, leaf_hash")
    sql = "INSERT INTO {} ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,now(),$12,$13)"
    try:
        for label, ddl in (("indexed", "CREATE TABLE bench_scratch (LIKE audit_entries INCLUDING ALL)"),
                           ("bare", "CREATE TABLE bench_scratch (LIKE audit_entries INCLUDING DEFAULTS)")):
            await conn.execute("DROP TABLE IF EXISTS bench_scratch")
            await conn.execute(ddl)
            start = time.perf_counter()
            for i in range(0, len(rows), batch):
                async with conn.transaction():
                    await conn.executemany(sql.format("bench_scratch", cols), rows[i:i + batch])
            elapsed = time.perf_counter() - start
            out[f"{label}_rows_per_s"] = len(rows) / elapsed
        await conn.execute("DROP TABLE bench_scratch")
    finally:
        await conn.close()
    return out


# --- output --------------------------------------------------------------------------------

def machine_line() -> str:
    return machine("embedded PostgreSQL with fsync=off, synchronous_commit=on (decision 0020); benchmark and "
                   "PostgreSQL on the same machine")


def show(f: dict) -> None:
    console.print(f"[bold]Machine:[/bold] {f['machine']}")
    console.print(f"PostgreSQL start-up: {f['startup_s']:.1f} s; 1-min load average before the run: "
                  f"{f['load_1min_at_start']:.2f} (anything else busy skews every figure)\n")
    a, b50, raw = f["append"], f["append_batch50"], f["raw_insert"]
    one, cache = f["append_one_at_a_time"], f["append_stmt_cache_default"]
    a500c = f["append_compare_batch500"]
    t = Table(title=f"Audit trail: {a['entries']} entries of ~{raw['entry_bytes_mean']:.0f} B "
                    f"({BODY_BYTES} B bodies)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("[bold]1. append, batches of 500 (InboxConsumer.process_reading_ahead)[/bold]",
              f"[bold]{a['entries_per_s']:.0f} entries/s[/bold] ({a['s']:.1f} s)")
    t.add_row(f"   same, {a500c['entries']} entries on a fresh database (for the rows below)",
              f"{a500c['entries_per_s']:.0f} entries/s")
    t.add_row(f"   batches of 50, {b50['entries']} entries on a fresh database",
              f"{b50['entries_per_s']:.0f} entries/s (500 is {a500c['entries_per_s'] / b50['entries_per_s']:.2f}x "
              "as fast)")
    na = f["append_without_read_ahead"]
    t.add_row(f"   without reading the next batch ahead, {na['entries']} entries on a fresh database",
              f"{na['entries_per_s']:.0f} entries/s (reading ahead is "
              f"{a500c['entries_per_s'] / na['entries_per_s']:.2f}x as fast)")
    t.add_row(f"   one at a time (a savepoint each, after a failed batch), {one['entries']} entries, "
              "batches of 500",
              f"{one['entries_per_s']:.0f} entries/s (the batch is {a500c['entries_per_s'] / one['entries_per_s']:.2f}x)")
    t.add_row(f"   statement cache {DEFAULT_STMT_CACHE} (asyncpg's default) instead of runtime.db's, "
              f"{cache['entries']} entries",
              f"{cache['entries_per_s']:.0f} entries/s ({cache['entries_per_s'] / a500c['entries_per_s']:.2f}x)")
    i = f["integrate"]
    t.add_row("[bold]2. integrate until caught up[/bold]",
              f"[bold]{i['leaves_per_s']:.0f} leaves/s[/bold] ({i['s']:.1f} s, {i['calls']} calls, "
              f"{i['tree_nodes']} nodes)")
    p = f["proofs"]
    for name in ("inclusion", "consistency", "root_at"):
        q = p[name]
        t.add_row(f"3. {name} at size {f['size']} ({q['n']}): median / p99 / max",
                  f"{q['p50_ms']:.2f} / {q['p99_ms']:.2f} / {q['max_ms']:.2f} ms")
    c = f["checkpoint"]
    t.add_row("[bold]4. issue_checkpoint (sign + outbox + commit)[/bold]",
              f"[bold]{c['ms']:.1f} ms[/bold] (Ed25519 signing alone {c['sign_only_ms']:.3f} ms)")
    v = f["verification"]
    t.add_row("[bold]5. verify_stored over every entry[/bold]",
              f"[bold]{v['verify_stored_entries_per_s']:.0f} entries/s[/bold] ({v['verify_stored_s']:.2f} s, "
              f"verified={v['verified']})")
    t.add_row("   export (tar stream: tlog-tiles + entry bundles), written to a file",
              f"{v['export_s']:.2f} s, {v['export_mb']:.1f} MB, {v['export_bytes_per_entry']:.0f} B/entry "
              f"({v['export_entries_per_s']:.0f} entries/s)")
    t.add_row("[bold]   offline.verify_export from that file[/bold]",
              f"[bold]{v['offline_entries_per_s']:.0f} entries/s[/bold] ({v['offline_s']:.2f} s, ok={v['offline_ok']}"
              + (f", {v['offline_problem']}" if v["offline_problem"] else "") + ")")
    t.add_row(f"[bold]6. raw asyncpg executemany, {raw['rows']} rows, batches of {raw['batch']}[/bold]",
              f"[bold]{raw['indexed_rows_per_s']:.0f} rows/s[/bold] (audit_entries' indexes); "
              f"{raw['bare_rows_per_s']:.0f} rows/s bare")
    t.add_row("   append ÷ raw (indexed)", f"{f['ratios']['append_vs_raw_indexed']:.3f}")
    console.print(t)

    # Issue #14's targets: printed beside the figures, never asserted.
    t = Table(title=f"Targets (issue #14) at {f['size']} entries")
    for col in ("figure", "target", "measured", "met"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    for name, target, measured, met in (
            ("appends/s (batches of 500)", ">= 10000", a["entries_per_s"], a["entries_per_s"] >= 10_000),
            ("inclusion proof p99, ms", "<= 5", p["inclusion"]["p99_ms"], p["inclusion"]["p99_ms"] <= 5),
            ("offline verification entries/s", ">= 100000", v["offline_entries_per_s"],
             v["offline_entries_per_s"] >= 100_000)):
        t.add_row(name, target, f"{measured:.2f}" if measured < 100 else f"{measured:.0f}", "yes" if met else "no")
    console.print(t)

    bd = f["breakdown"]
    t = Table(title=f"Where append's time goes ({bd['entries']} entries, batches of {bd['batch']}, "
                    f"{bd['entries_per_s']:.0f} entries/s with every statement timed)")
    for col in ("part", "statements", "s", "µs / entry", "share"):
        t.add_column(col, justify="left" if col == "part" else "right")
    for r in bd["rows"]:
        t.add_row(r["what"], str(r["statements"] or ""), f"{r['s']:.2f}", f"{r['us_per_entry']:.0f}",
                  f"{r['share'] * 100:.0f} %")
    console.print(t)




async def bench(server_url: str, args) -> dict:
    m = min(args.compare_entries, args.entries)
    # The same first messages every time (same seed): the comparisons append the first m.
    compare = list(make_messages(random.Random(args.seed), m, args.per_case))
    rng = random.Random(args.seed + 1)

    # The comparisons first, on a server with nothing else to do: after the big append,
    # PostgreSQL's vacuum and checkpoints of it slowed whichever comparison came first by up
    # to a third (bench/README.md, step 47).
    console.print(f"1. the comparisons on {m} entries, each on a fresh database ...")
    side = {}
    for label, batch, batched, stmt_cache, ahead in (
            ("append_compare_batch500", 500, True, None, True), ("append_batch50", 50, True, None, True),
            ("append_without_read_ahead", 500, True, None, False),
            ("append_one_at_a_time", 500, False, None, False),
            ("append_stmt_cache_default", 500, True, DEFAULT_STMT_CACHE, True)):
        _, e, s = await database(server_url, label.replace("append_", "a_"), stmt_cache)
        try:
            side[label] = await append_all(s, compare, batch, batched, ahead)
        finally:
            await e.dispose()
    _, e, s = await database(server_url, "a_breakdown")
    try:
        side["breakdown"] = await breakdown(s, e, compare, 500)
    finally:
        await e.dispose()

    console.print(f"   appending {args.entries} entries in batches of 500 ...")
    url, engine, sessions = await database(server_url, "audit")
    try:
        append = await append_all(sessions, make_messages(random.Random(args.seed), args.entries, args.per_case), 500)
        console.print(f"   {append['entries_per_s']:.0f} entries/s")
        console.print("2. integrating ...")
        integrated = await integrate_all(sessions)
        size = integrated["leaves"]
        console.print("3. proofs ...")
        proof = await proofs(sessions, size, rng, 1000, 200)
        console.print("4. checkpoint ...")
        cp = await issue(sessions)
        console.print("5. verify_stored, export, offline verification ...")
        verified = await verification(sessions, size, args.tmp)
        raw_n = min(args.entries, RAW_MAX)
        console.print(f"6. raw asyncpg baseline ({raw_n} rows) ...")
        raw = await raw_insert(url, list(make_messages(random.Random(args.seed), raw_n, args.per_case)), 500)
    finally:
        await engine.dispose()
    return {
        "date": date.today().isoformat(),
        "machine": machine_line(),
        "cores": os.cpu_count(), "python": sys.version.split()[0],
        "startup_s": args.startup_s, "load_1min_at_start": args.load_at_start,
        "size": size, "body_bytes": BODY_BYTES,
        "append": append, **side,
        "integrate": integrated, "proofs": proof, "checkpoint": cp, "verification": verified,
        "raw_insert": raw,
        "ratios": {"append_vs_raw_indexed": append["entries_per_s"] / raw["indexed_rows_per_s"],
                   "append_vs_raw_bare": append["entries_per_s"] / raw["bare_rows_per_s"],
                   "batch500_vs_batch50": side["append_compare_batch500"]["entries_per_s"]
                   / side["append_batch50"]["entries_per_s"],
                   "batch500_vs_one_at_a_time": side["append_compare_batch500"]["entries_per_s"]
                   / side["append_one_at_a_time"]["entries_per_s"],
                   "stmt_cache_default_vs_batch500": side["append_stmt_cache_default"]["entries_per_s"]
                   / side["append_compare_batch500"]["entries_per_s"]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=20000, help="entries appended (default 20000)")
    parser.add_argument("--compare-entries", type=int, default=4000,
                        help="entries in each comparison run on its own fresh database (default 4000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--messages-per-case", dest="per_case", type=int, default=8,
                        help="messages about each case, on average (default 8; 1 = every message its own case)")
    args = parser.parse_args()
    # As the service sets itself up (runtime.service): the SDK's tracer, recording only where
    # an exporter is configured, so the consumer's tracing costs what it costs there.
    configure_tracing("audit")
    # The audit service's process set-up (runtime.service): its collector settled.
    collector.settle(Settings().gc_young_threshold)
    args.load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="punte-bench-audit-") as tmp:
        args.tmp = Path(tmp)
        postgres = EmbeddedPostgres(Path(tmp) / "postgres")
        try:
            console.print(f"starting PostgreSQL in {tmp} ...")
            started = time.perf_counter()
            postgres.start()
            args.startup_s = time.perf_counter() - started
            figures = event_loop.run(bench(postgres.url, args))
        finally:
            postgres.stop()
    show(figures)
    print(json.dumps(rounded(figures), ensure_ascii=False, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
