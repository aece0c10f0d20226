"""Audit's use cases: append every message of every topic as a leaf (its value as a digest,
the value itself sealed), integrate the leaves into the Merkle tree, issue signed
checkpoints, take witnesses' cosignatures, serve proofs, verify what is stored, export the
trail for offline verification, open a sealed value (break-glass) and erase values by the
retention schedule."""
from __future__ import annotations

import base64
import hashlib
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from contracts.events import AuditCheckpoint, EventType
from contracts.reference import RetentionSchedule, institutions, topic_names
from contracts.refusals import Refused
from runtime import db, retention
from runtime.cloudevents import CloudEvent, EnvelopeError, derived_id
from runtime.data_keys import DataKeys
from runtime.inbox import Message, UnitOfWork, check_network_signature
from runtime.log import get_logger
from runtime.signing import Keyring, SigningKey
from services.audit.adapters import sealed_values, tree
from services.audit.adapters.tables import (
    audit_entries,
    checkpoints,
    cosignatures,
    holding,
    tree_nodes,
    tree_state,
)
from services.audit.domain import checkpoint, merkle, offline, tiles, values
from services.audit.domain.entries import (
    Record,
    canonical,
    check_leaves,
    gaps,
    read_leaf,
    tails,
    value_sha256,
)
from services.audit.domain.subjects import Subject, body_of, searchable, subject_with

log = get_logger("services.audit")

# Appenders across replicas take one head (seq); the integrator one tree. Transaction locks,
# released at commit or rollback.
APPEND_LOCK = 0x61756474
TREE_LOCK = 0x74726565
CHECKPOINT_TOPIC = "punte.audit"
# Leaves integrated per transaction; a run that fills it is followed by another.
INTEGRATE_BATCH = 5000


@dataclass(frozen=True)
class Log:
    """The audit log's identity: the origin line of its checkpoints and its signing key."""

    origin: str
    key: SigningKey

    def public(self) -> bytes:
        return self.key.public_raw()


# The network's topics: all of them are recorded.
TRAIL_TOPICS = r"^punte\..+"


@dataclass(frozen=True)
class Trail:
    """What appending needs besides the messages: the per-institution topic names, the data
    keys values are sealed with, the network's keys (the trail acts only on events the
    network signed), and the retention schedule."""

    templates: Sequence[str]
    data_keys: DataKeys
    network_keys: Keyring
    schedule: RetentionSchedule
    # The topics the trail records (a regular expression: the consumer's subscription), and
    # whose partitions' ends verification compares the trail with.
    topics: str = TRAIL_TOPICS
    # What each message the consumer holds reads as (``read``), freed with the messages.
    _read: weakref.WeakKeyDictionary[Message, _Read] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, compare=False, repr=False)

    def read(self, message: Message) -> _Read:
        """What appending ``message`` needs of it alone, made once; the consumer's
        ``prepare``, made while the batch before it is written (runtime.inbox,
        ``process_reading_ahead``), the inbox key's bytes with it."""
        found = self._read.get(message)
        if found is None:
            entry = _first_epoch_entry(message)
            body = body_of(message.value)
            found = self._read[message] = _Read(
                entry, merkle.leaf_hash(entry), body,
                subject_with(_record_of(message), self.templates, body, message.header_text))
        return found


@dataclass(frozen=True)
class _Read:
    """A message as the trail reads it, without the database: its entry's bytes in the first
    broker epoch and their leaf hash, its body, and its subject (the searched columns)."""

    entry: bytes
    leaf_hash: bytes
    body: dict[str, Any]
    subject: Subject


# --- appending ------------------------------------------------------------------------------

@dataclass
class _Appended:
    """One message about to be appended: its row, and what the trail reads from its body."""

    row: dict[str, Any]
    value: bytes | None
    body: dict[str, Any]
    trusted: bool


def _row(message: Message, seq: int, recorded_at: datetime, trail: Trail, epoch: int = 1) -> _Appended:
    """The audit_entries row of one message: its version 2 bytes (the value as a digest),
    leaf hash and subject; the value is sealed apart."""
    read = trail.read(message)
    body, subject = read.body, read.subject
    # The first epoch's bytes are those the inbox key was made of.
    entry, leaf_hash = read.entry, read.leaf_hash
    if epoch != 1:
        entry = canonical(_record_of(message), epoch)
        leaf_hash = merkle.leaf_hash(entry)
    row = {"seq": seq, "topic": message.topic, "partition": message.partition, "offset": message.offset,
           "event_id": subject.event_id, "event_type": subject.event_type, "source": subject.source,
           "case_id": subject.case_id, "child_ref": subject.child_ref, "actor": subject.actor,
           "institution": subject.institution, "purpose": subject.purpose, "recorded_at": recorded_at,
           "epoch": epoch, "entry": entry, "leaf_hash": leaf_hash, "value_scope": None}
    return _Appended(row, message.value, body, trusted=False)


def _signed_by_network(message: Message, keys: Keyring) -> bool:
    """Whether the network signed ``message``: only then does the trail act on what it
    says (links, erasures). Everything is recorded all the same, forgeries too."""
    try:
        check_network_signature(message, keys)
    except (Refused, EnvelopeError):
        return False
    return True


async def append_many(uow: UnitOfWork, messages: Sequence[Message], trail: Trail) -> None:
    """A whole polled batch in one insert, numbered on from the head under the append lock
    (held to the end of the transaction, so replicas never number alike); positions a
    replica already appended (a rebalance overlap) are left out, so numbering stays gapless.
    Each value is sealed under its scope's data key; what the network's own events say
    about cases and reports (links, closures, refusals) schedules erasures."""
    session = uow.session
    # The head is read in a statement of its own after the lock's: its snapshot then holds
    # what the replica that had the lock before committed.
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK)))
    head, epoch = (await session.execute(sa.select(
        sa.select(sa.func.coalesce(sa.func.max(audit_entries.c.seq), 0)).scalar_subquery(), _CURRENT_EPOCH))).one()
    positions = [(m.topic, m.partition, m.offset) for m in messages]
    held = await _held(session, epoch, positions)
    appended: list[_Appended] = []
    for message, position in zip(messages, positions, strict=True):
        item = _row(message, head + len(appended) + 1, uow.now, trail, epoch)
        if position in held:
            if held[position] == item.row["entry"]:
                continue  # the same record again (a rebalance overlap, a redelivery)
            # Another record where the trail holds one: the broker lost its log and numbers
            # from 0 again. A new epoch begins; what it holds is new (decision 0025).
            epoch += 1
            log.warning("a new broker epoch: another record at an audited position", epoch=epoch,
                        position=f"{message.topic}/{message.partition}/{message.offset}")
            held = {}
            item = _row(message, head + len(appended) + 1, uow.now, trail, epoch)
        held[position] = item.row["entry"]
        if item.row["event_type"] in values.ACTED_ON:
            item.trusted = _signed_by_network(message, trail.network_keys)
        appended.append(item)
    if not appended:
        return
    links = await _links(session, appended)
    await _seal(session, appended, links, trail.data_keys, uow.now)
    await db.copy_rows(session, audit_entries, [a.row for a in appended])
    await _keep_or_erase(session, appended, links, trail.schedule, uow.now)


# The canonical bytes (first broker epoch) of the messages the consumer holds: it keys a
# batch just before appending it, and both need the same bytes, whose JSON built twice was
# a sixth of the append's time (bench/README.md). Freed with the messages.
_first_epoch_bytes: weakref.WeakKeyDictionary[Message, bytes] = weakref.WeakKeyDictionary()


def _first_epoch_entry(message: Message) -> bytes:
    entry = _first_epoch_bytes.get(message)
    if entry is None:
        entry = _first_epoch_bytes[message] = canonical(_record_of(message))
    return entry


def _record_of(message: Message) -> Record:
    return Record(topic=message.topic, partition=message.partition, offset=message.offset,
                  timestamp_ms=message.timestamp_ms, key=message.key, headers=message.headers,
                  value=message.value)


def key_by_record(message: Message) -> str:
    """The audit consumer's inbox key: the record itself, not only where it sits. A broker
    that lost its log puts other records at the same positions, and they are new; the same
    record delivered again has the same key (decision 0025)."""
    return f"@{message.position}#{hashlib.sha256(_first_epoch_entry(message)).hexdigest()[:32]}"


epoch_starts = sa.table("audit_epoch_starts", sa.column("epoch", sa.Integer), sa.column("broker_epoch", sa.Text))


# The broker epoch the trail records in now: the latest it saw or was told of (a new broker
# epoch, decision 0026), 1 at first.
_CURRENT_EPOCH = sa.func.greatest(
    sa.select(sa.func.coalesce(sa.func.max(audit_entries.c.epoch), 1)).scalar_subquery(),
    sa.select(sa.func.coalesce(sa.func.max(epoch_starts.c.epoch), 1)).scalar_subquery())


async def current_epoch(session: AsyncSession | AsyncConnection) -> int:
    """The broker epoch the trail records in now (``_CURRENT_EPOCH``)."""
    return await session.scalar(sa.select(_CURRENT_EPOCH)) or 1


async def start_epoch(conn: AsyncConnection, broker_epoch: str) -> int:
    """A new broker epoch (runtime.broker_epoch): the next record starts a new trail epoch,
    in the transaction that records the broker's; the trail's number for it."""
    epoch = await current_epoch(conn) + 1
    await conn.execute(sa.insert(epoch_starts).values(epoch=epoch, broker_epoch=broker_epoch))
    log.warning("a new broker epoch: the trail starts a new epoch", epoch=epoch, broker_epoch=broker_epoch)
    return epoch


def key_in_epoch(broker_epoch: Callable[[], int]) -> Callable[[Message], str]:
    """The audit consumer's inbox key in the service's broker epoch ``broker_epoch()`` (its
    ordinal): a record the consumer took from the new log before the service noticed the
    epoch (recorded in the old trail epoch) is recorded again in the new one when the
    consumer reads the new log from its beginning. The first epoch keeps the bare key."""
    def key(message: Message) -> str:
        ordinal = broker_epoch()
        bare = key_by_record(message)
        return bare if ordinal <= 1 else f"e{ordinal}{bare}"
    return key


# The positions a batch asks about, as one range of offsets per partition: the statement's
# text is the same for every batch (prepared once), where a tuple IN list of 500 positions
# was new SQL for each batch size and cost more than the insert (bench/README.md). OFFSET 0
# keeps the per-range subquery apart, so each range is an index range scan: joined freely,
# PostgreSQL's generic plan for the prepared statement (after five runs) scanned the whole
# table, a second per batch at a million entries.
_HELD = sa.text("""
    SELECT e.topic, e.partition, e."offset", e.entry
    FROM unnest(:topics, :partitions, :lows, :highs) AS r(topic, partition, low, high)
    CROSS JOIN LATERAL (
        SELECT a.topic, a.partition, a."offset", a.entry FROM audit_entries a
        WHERE a.epoch = :epoch AND a.topic = r.topic AND a.partition = r.partition
          AND a."offset" BETWEEN r.low AND r.high
        OFFSET 0) e
""").bindparams(sa.bindparam("topics", type_=ARRAY(sa.Text)), sa.bindparam("partitions", type_=ARRAY(sa.Integer)),
                sa.bindparam("lows", type_=ARRAY(sa.BigInteger)), sa.bindparam("highs", type_=ARRAY(sa.BigInteger)),
                sa.bindparam("epoch", type_=sa.Integer))


async def _held(session: AsyncSession, epoch: int, positions: Sequence[tuple[str, int, int]]) -> dict[tuple, bytes]:
    """The entries the trail holds at ``positions`` in ``epoch``, by position."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for topic, partition, offset in positions:
        low, high = ranges.get((topic, partition), (offset, offset))
        ranges[(topic, partition)] = (min(low, offset), max(high, offset))
    rows = await session.execute(_HELD, {
        "topics": [t for t, _ in ranges], "partitions": [p for _, p in ranges],
        "lows": [lo for lo, _ in ranges.values()], "highs": [hi for _, hi in ranges.values()], "epoch": epoch})
    wanted = set(positions)
    return {(r.topic, r.partition, r.offset): bytes(r.entry) for r in rows
            if (r.topic, r.partition, r.offset) in wanted}


async def append(uow: UnitOfWork, message: Message, trail: Trail) -> None:
    """One message: the consumer's path when a batch must be applied one by one."""
    await append_many(uow, [message], trail)


async def _links(session: AsyncSession, appended: Sequence[_Appended]) -> dict[str, str]:
    """report id -> case id for the reports this batch names: those already known, and
    those the network's case events in the batch link (kept for later batches)."""
    fresh: dict[str, str] = {}
    for item in appended:
        link = values.report_link(item.row["event_type"], item.body) if item.trusted else None
        if link is not None:
            fresh.setdefault(*link)
    named = {r for a in appended
             if (r := values.report_named(a.row["event_type"], a.row["event_id"], a.body))}
    links = await sealed_values.links(session, named - fresh.keys())
    if fresh:
        await sealed_values.add_links(session, fresh)
    return {**links, **fresh}


async def _seal(session: AsyncSession, appended: Sequence[_Appended], links: dict[str, str], data_keys: DataKeys,
                now: datetime) -> None:
    """Seal every value under its scope's data key, bound to its entry's leaf hash. A value
    whose scope was already erased (a late message about an erased case) is not kept."""
    for item in appended:
        if item.value is not None:
            # Storable and indexable like the searchable columns (an odd id is still recorded).
            item.row["value_scope"] = searchable(
                values.scope_of(item.row["event_type"], item.row["event_id"], item.body, links))
    scopes = {a.row["value_scope"] for a in appended if a.row["value_scope"]}
    keys = await data_keys.keys_unless_erased(session, scopes, now)
    rows = [{"seq": a.row["seq"],
             "sealed": DataKeys.seal_with(keys[a.row["value_scope"]], a.row["value_scope"], a.value or b"",
                                          a.row["leaf_hash"])}
            for a in appended if a.row["value_scope"] in keys]
    if rows:
        await sealed_values.store(session, rows)


async def _keep_or_erase(session: AsyncSession, appended: Sequence[_Appended], links: dict[str, str],
                         schedule: RetentionSchedule, now: datetime) -> None:
    """The retention schedule as the network's events move it: a closed case's values (and
    its reports') are erased ``closed-case`` days after closing, unless it is reopened
    first; a refused report's ``unconfirmed-report`` days after the refusal, unless it
    joined a case. Cancellations, most of what a batch holds (every report that opens or
    joins a case), go in one statement per run of them, in the batch's order with the
    schedulings between them."""
    cancelled: list[str] = []

    async def cancel_now() -> None:
        if cancelled:
            await retention.cancel(session, cancelled)
            cancelled.clear()

    for item in appended:
        if not item.trusted:
            continue
        event_type = item.row["event_type"]
        link = values.report_link(event_type, item.body)
        closed = values.closed_case(event_type, item.body)
        reopened = values.reopened_case(event_type, item.body)
        refused = values.refused_report(event_type, item.body)
        if link is not None:
            # A report that joined a case is kept with it, whatever a refusal said before.
            cancelled.append(values.report_scope(link[0]))
        elif closed is not None:
            await cancel_now()
            rule = schedule.rule("closed-case")
            scopes = closed.scopes(await sealed_values.reports_of(session, closed.case_id))
            await retention.schedule(session, scopes, rule.id, closed.closed_at + timedelta(days=rule.days))
        elif reopened is not None:
            reports = await sealed_values.reports_of(session, reopened)
            cancelled.extend([values.case_scope(reopened), *map(values.report_scope, reports)])
        elif refused is not None and refused not in links:
            await cancel_now()
            rule = schedule.rule("unconfirmed-report")
            await retention.schedule(session, [values.report_scope(refused)], rule.id, now + timedelta(days=rule.days))
    await cancel_now()


async def erase_due(session: AsyncSession, data_keys: DataKeys, now: datetime) -> int:
    """The purge job's step: every erasure due now destroys its scope's data key and the
    sealed values under it. The entries, their leaves and the tree stay as they were."""
    return await retention.erase_due(session, data_keys, now, on_erase=_delete_values)


async def _delete_values(session: AsyncSession, due: Sequence[retention.Due]) -> None:
    await sealed_values.delete_scopes(session, [d.scope for d in due])


# --- the tree -------------------------------------------------------------------------------

async def tree_size(session: AsyncSession) -> int:
    return await session.scalar(sa.select(tree_state.c.size).where(tree_state.c.id == 1)) or 0


async def integrate(session: AsyncSession, limit: int = INTEGRATE_BATCH) -> int:
    """Add appended leaves to the tree: every perfect subtree they complete is stored.
    Returns how many leaves were integrated (run again while it returns ``limit``)."""
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(TREE_LOCK)))
    size = await tree_size(session)
    leaves = (await session.execute(
        sa.select(audit_entries.c.seq, audit_entries.c.leaf_hash)
        .where(audit_entries.c.seq > size).order_by(audit_entries.c.seq).limit(limit)
    )).all()
    # Only a gapless run of seqs joins the tree (an appender may still be committing).
    run: list[bytes] = []
    for leaf in leaves:
        if leaf.seq != size + len(run) + 1:
            break
        run.append(leaf.leaf_hash)
    if not run:
        return 0
    nodes = await tree.compute(session, lambda stored: merkle.new_nodes(size, run, stored))
    await tree.store(session, nodes)
    await session.execute(sa.update(tree_state).where(tree_state.c.id == 1).values(size=size + len(run)))
    return len(run)


async def catch_up(session: AsyncSession) -> None:
    """Integrate every leaf appended so far."""
    while await integrate(session) == INTEGRATE_BATCH:
        pass


async def root_at(session: AsyncSession, size: int) -> bytes:
    return await tree.compute(session, lambda nodes: merkle.root(nodes, size))


async def inclusion(session: AsyncSession, index: int, size: int) -> list[bytes]:
    _check_sizes(index + 1, size, await tree_size(session))
    return await tree.compute(session, lambda nodes: merkle.inclusion_proof(nodes, index, size))


async def consistency(session: AsyncSession, first: int, second: int) -> list[bytes]:
    _check_sizes(first, second, await tree_size(session))
    return await tree.compute(session, lambda nodes: merkle.consistency_proof(nodes, first, second))


def _check_sizes(low: int, high: int, size: int) -> None:
    if not 0 < low <= high <= size:
        raise Refused("UNKNOWN_CHECKPOINT", f"need 0 < {low} <= {high} <= tree size {size}")


# --- checkpoints and witnesses ---------------------------------------------------------------

async def issue_checkpoint(uow: UnitOfWork, log: Log, only_if_grown: bool = False) -> str | None:
    """Sign the tree as it is now and publish the note; with ``only_if_grown``, not when
    nothing but checkpoint messages arrived since the last one (they would never end)."""
    await catch_up(uow.session)
    size = await tree_size(uow.session)
    last = await uow.session.scalar(sa.select(sa.func.max(checkpoints.c.size)))
    if last == size:
        return None
    if only_if_grown and last is not None:
        news = await uow.session.scalar(sa.select(sa.func.count()).select_from(audit_entries).where(
            audit_entries.c.seq > last, audit_entries.c.seq <= size,
            audit_entries.c.topic != CHECKPOINT_TOPIC))
        if not news:
            return None
    root = await root_at(uow.session, size)
    note = checkpoint.sign(checkpoint.Checkpoint(log.origin, size, root), log.origin, log.key.private)
    await uow.session.execute(pg_insert(checkpoints).values(
        size=size, root=root, note=note, issued_at=uow.now).on_conflict_do_nothing())
    published = AuditCheckpoint(origin=log.origin, size=size, root=base64.b64encode(root).decode(), note=note)
    # One checkpoint per log and size: issued again (after a restore), it is the same event (ADR 0023).
    uow.outbox.emit(CHECKPOINT_TOPIC, CloudEvent.new(
        EventType.AUDIT_CHECKPOINT.value, uow.source, published.model_dump(mode="json"), subject=str(size),
        id=derived_id(log.origin, EventType.AUDIT_CHECKPOINT.value, str(size))), key=log.origin)
    return note


async def signed_note(session: AsyncSession, size: int | None = None, with_cosignatures: bool = True) -> str:
    """A checkpoint's note (the latest when ``size`` is None) with every witness's
    cosignature line appended."""
    query = sa.select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)
    if size is not None:
        query = query.where(checkpoints.c.size == size)
    row = (await session.execute(query)).first()
    if row is None:
        raise Refused("UNKNOWN_CHECKPOINT", f"no checkpoint {size if size is not None else 'yet'}")
    if not with_cosignatures:
        return row.note
    lines = (await session.execute(sa.select(cosignatures.c.line).where(cosignatures.c.size == row.size)
                                   .order_by(cosignatures.c.witness))).scalars()
    return row.note + "".join(f"{line}\n" for line in lines)


async def add_cosignature(session: AsyncSession, size: int, witness: str, line: str, keyring: Keyring) -> str:
    """A peer institution witnesses a checkpoint: its cosignature must verify with one of
    its keys before it is kept (one line per witness; a newer one replaces it)."""
    line = line.rstrip("\n")
    # The new line alone is checked, against the log's own note: another witness line for
    # the same name already stored must not vouch for it.
    candidate = await signed_note(session, size, with_cosignatures=False) + line + "\n"
    for public in keyring.public_keys_of(witness):
        try:
            signed_at = checkpoint.verify_cosignature(candidate, witness, public)
        except checkpoint.CheckpointError:
            continue
        await session.execute(pg_insert(cosignatures).values(
            size=size, witness=witness, line=line, signed_at=signed_at,
        ).on_conflict_do_update(index_elements=["size", "witness"], set_={"line": line, "signed_at": signed_at}))
        return await signed_note(session, size)
    raise Refused("BAD_COSIGNATURE", f"no key of {witness} verifies this cosignature")


# --- verification and export ---------------------------------------------------------------

@dataclass(frozen=True)
class Verification:
    verified: bool
    entries: int
    tree_size: int
    root: str | None
    first_bad: int | None
    problems: list[str]
    gaps: list[dict[str, Any]]
    checkpoint_size: int | None
    # "verified"; "lagging": intact, but messages on the broker are not audited yet;
    # "failed": a problem (tampering, a hole, a message lost before it was audited).
    state: str = "verified"
    # Partitions whose end on the broker is past what the trail holds, and how many messages.
    lagging: list[dict[str, Any]] = field(default_factory=list)
    not_audited: int = 0
    # Whether the trail was compared with the broker's end offsets at all.
    tail_checked: bool = False


async def verify_stored(session: AsyncSession, page: int = 5000,
                        ends: Mapping[tuple[str, int], tuple[int, int]] | None = None,
                        ends_error: str | None = None) -> Verification:
    """Every stored entry against its leaf hash, numbered without gaps (a page at a time);
    every partition's offsets without gaps; the tree's root against the latest signed
    checkpoint; and, given the broker's partitions (``ends``: runtime.kafka.partition_bounds
    of the trail's topics), every partition's tail: a message on the broker the trail does not
    hold is lagging, one that left the broker unaudited is a hole. When the broker could not
    be asked (``ends_error``) the trail is not verified: its tail is unknown. Without
    either, only what is stored is checked (``tail_checked`` False: tests, benchmarks)."""
    problems: list[str] = []
    entries, first_bad = 0, None
    while True:
        chunk = (await session.execute(
            sa.select(audit_entries.c.seq, audit_entries.c.entry, audit_entries.c.leaf_hash)
            .where(audit_entries.c.seq > entries).order_by(audit_entries.c.seq).limit(page))).all()
        leaves = check_leaves(chunk, merkle.leaf_hash, first=entries + 1)
        entries += leaves.entries
        if leaves.problem:
            problems.append(leaves.problem)
            first_bad = leaves.first_bad
            break
        if len(chunk) < page:
            break
    positions = (await session.execute(
        sa.select(audit_entries.c.epoch, audit_entries.c.topic, audit_entries.c.partition, audit_entries.c.offset)
        .order_by(audit_entries.c.epoch, audit_entries.c.topic, audit_entries.c.partition,
                  audit_entries.c.offset))).all()
    # Each broker epoch numbers from 0; the broker's ends speak of the current one only (one
    # a new broker epoch started may hold nothing yet: the new log is all lagging then).
    skipped = [g.__dict__ for g in gaps((p.epoch, p.topic, p.partition, p.offset) for p in positions)]
    epoch = await current_epoch(session)
    positions = [p for p in positions if p.epoch == epoch]
    if skipped:
        problems.append(f"{len(skipped)} offset gaps")
    lagging: list[dict[str, Any]] = []
    if ends is not None:
        audited_next: dict[tuple[str, int], int] = {}
        for p in positions:
            audited_next[(p.topic, p.partition)] = max(audited_next.get((p.topic, p.partition), 0), p.offset + 1)
        behind, lost = tails(audited_next, ends)
        lagging = [t.__dict__ for t in behind]
        if lost:
            skipped += [g.__dict__ for g in lost]
            problems.append(f"{sum(g.last_missing - g.first_missing + 1 for g in lost)} messages "
                            "left the broker before they were audited")
    elif ends_error is not None:
        problems.append(f"the broker's end offsets could not be read ({ends_error}): the trail's tail is unchecked")
    size = await tree_size(session)
    root = await root_at(session, size) if size else None
    latest = (await session.execute(sa.select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1))).first()
    if latest is not None and await root_at(session, latest.size) != latest.root:
        problems.append(f"the tree at size {latest.size} does not match its signed checkpoint")
    state = "failed" if problems else "lagging" if lagging else "verified"
    return Verification(state == "verified", entries, size, root.hex() if root else None,
                        first_bad, problems, skipped, latest.size if latest else None,
                        state, lagging, sum(t["missing"] for t in lagging), ends is not None)


def _described(row: sa.Row, value: sealed_values.ValueState, version: int | None = None) -> dict[str, Any]:
    """What an exported entry is, for people (not verified): never the value, only what
    became of it (sealed, erased when and by which rule)."""
    return {"topic": row.topic, "partition": row.partition, "offset": row.offset, "event_type": row.event_type,
            "case_id": row.case_id, "recorded_at": row.recorded_at.isoformat(),
            "log_version": read_leaf(row.entry).version if version is None else version, "value": value.public()}


async def value_states(session: AsyncSession, rows: Sequence[sa.Row]) -> dict[int, sealed_values.ValueState]:
    """What became of each entry's value; a version 1 entry's value is in its own bytes."""
    found = await sealed_values.states(session, rows)
    for row in rows:
        if row.value_scope is None:
            leaf = read_leaf(row.entry)
            if leaf.version == 1 and leaf.v1_value is not None:
                found[row.seq] = sealed_values.ValueState("in-v1-leaf")
    return found


def exported_entry(row: sa.Row, version: int | None = None) -> bytes | offline.Withheld:
    """What an export carries of an entry: its bytes when they hold no value (version 2),
    else its leaf hash only."""
    version = read_leaf(row.entry).version if version is None else version
    return row.entry if version >= 2 else offline.Withheld(row.leaf_hash)


@dataclass(frozen=True)
class ExportOf:
    """The signed checkpoint an export is made of."""

    note: str  # with the witnesses' cosignatures
    checkpoint: checkpoint.Checkpoint
    issued_at: datetime


async def export_checkpoint(session: AsyncSession, size: int | None = None) -> ExportOf:
    """The checkpoint (the latest when ``size`` is None) an export will be made of; refused
    (UNKNOWN_CHECKPOINT) before anything is streamed when there is none."""
    note = await signed_note(session, size)
    cp = checkpoint.parse(note).checkpoint
    issued_at = await session.scalar(sa.select(checkpoints.c.issued_at).where(checkpoints.c.size == cp.size))
    return ExportOf(note, cp, issued_at)


# Entries read per query while exporting: a multiple of a tile's width, so bundles never
# straddle two pages.
EXPORT_PAGE = 16 * tiles.TILE_WIDTH
_EXPORTED = [audit_entries.c[name] for name in ("seq", "topic", "partition", "offset", "event_type", "case_id",
                                                "recorded_at", "entry", "leaf_hash", "value_scope")]


async def _pages(session: AsyncSession, size: int,
                 page: int) -> AsyncIterator[tuple[Sequence[sa.Row], dict[int, sealed_values.ValueState]]]:
    """The first ``size`` entries a page at a time, with what became of their values."""
    after = 0
    while after < size:
        rows = (await session.execute(
            sa.select(*_EXPORTED).where(audit_entries.c.seq > after, audit_entries.c.seq <= min(size, after + page))
            .order_by(audit_entries.c.seq))).all()
        yield rows, await value_states(session, rows)
        after += page


async def export_files(session: AsyncSession, log: Log, of: ExportOf,
                       page: int = EXPORT_PAGE) -> AsyncIterator[tuple[str, bytes]]:
    """The export for ``punte audit verify`` (domain/offline.py, decision 0034), file by file
    as the entries are read a page at a time: the signed checkpoint, the tree as
    tlog-tiles, the entries in bundles, and what each entry is for people (what became of
    its value). Never the whole log in memory, never a value."""
    size = of.checkpoint.size
    yield offline.header(log.origin, size)
    yield offline.CHECKPOINT, of.note.encode("utf-8")
    async for rows, states in _pages(session, size, page):
        by_tile: dict[int, list[sa.Row]] = {}
        for row in rows:
            by_tile.setdefault((row.seq - 1) // tiles.TILE_WIDTH, []).append(row)
        for n, chunk in by_tile.items():
            versions = [read_leaf(r.entry).version for r in chunk]  # parsed once per entry
            for file in offline.bundle_files(
                    n, [exported_entry(r, v) for r, v in zip(chunk, versions, strict=True)],
                    [r.leaf_hash for r in chunk],
                    [_described(r, states[r.seq], v) for r, v in zip(chunk, versions, strict=True)]):
                yield file
    # The tiles above level 0 are the stored tree's nodes of tree levels 8, 16, ...
    for level in tiles.levels(size)[1:]:
        height = tiles.TILE_HEIGHT * level
        nodes = (await session.execute(
            sa.select(tree_nodes.c.hash).where(tree_nodes.c.level == height,
                                               tree_nodes.c.index < size >> height)
            .order_by(tree_nodes.c.index))).scalars().all()
        for file in offline.upper_tile_files(level, list(nodes), size):
            yield file


async def table_rows(session: AsyncSession, of: ExportOf, page: int = EXPORT_PAGE) -> AsyncIterator[dict[str, Any]]:
    """The entries of the same checkpoint as the export, one row each for a spreadsheet, a
    page at a time: no proofs, the leaf hash of the entry, what became of its value."""
    async for rows, states in _pages(session, of.checkpoint.size, page):
        for r in rows:
            leaf = read_leaf(r.entry)
            described = _described(r, states[r.seq], leaf.version)
            value = described.pop("value")
            yield {"index": r.seq - 1, **described, "leaf_hash": r.leaf_hash.hex(),
                   "value_sha256": leaf.digest_form.get("value_sha256"),
                   "value_state": value["state"], "erased_at": value["erased_at"],
                   "erased_rule": value["erased_rule"]}


async def export_table(session: AsyncSession, size: int | None = None) -> list[dict[str, Any]]:
    """``table_rows`` of a checkpoint (the latest when ``size`` is None), all at once."""
    of = await export_checkpoint(session, size)
    return [row async for row in table_rows(session, of)]


# --- break-glass -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Opened:
    """A value opened by break-glass, and the case whose lead is told."""

    seq: int
    scope: str | None
    case_id: str | None
    value: bytes
    value_sha256: str


async def open_value(session: AsyncSession, data_keys: DataKeys, seq: int) -> Opened:
    """The value entry ``seq`` commits to, opened. Refused: NOT_FOUND (no such entry, or a
    tombstone), ERASED (its scope was erased: Refused carries when and by which rule).
    The opened value must hash to the digest its leaf holds, or it is not given out."""
    row = (await session.execute(sa.select(audit_entries).where(audit_entries.c.seq == seq))).first()
    if row is None:
        raise Refused("NOT_FOUND", f"no entry {seq}")
    leaf = read_leaf(row.entry)
    digest = leaf.digest_form.get("value_sha256")
    if leaf.version == 1:
        if leaf.v1_value is None:
            raise Refused("NOT_FOUND", f"entry {seq} has no value")
        value = leaf.v1_value
    else:
        if row.value_scope is None:
            raise Refused("NOT_FOUND", f"entry {seq} has no value")
        erased = await DataKeys.erased(session, [row.value_scope])
        if row.value_scope in erased:
            at, rule = erased[row.value_scope]
            raise ValueErased(seq, row.value_scope, at, rule)
        sealed = await sealed_values.sealed(session, seq)
        if sealed is None:
            raise Refused("NOT_FOUND", f"entry {seq}: its sealed value is missing")
        value = await data_keys.open(session, row.value_scope, sealed, row.leaf_hash)
        if value_sha256(value) != digest:
            raise Refused("NOT_FOUND", f"entry {seq}: the sealed value does not match its leaf")
    links = await sealed_values.links(session, [row.value_scope.partition(":")[2]]
                                      if row.value_scope and row.value_scope.startswith("report:") else [])
    # The case is the scope's (a sender's body does not choose whose lead is told); a
    # version 1 entry has no scope, so its searchable case id stands in.
    case_id = values.case_of_scope(row.value_scope, links) if row.value_scope else row.case_id
    return Opened(seq, row.value_scope, case_id, value, value_sha256(value))


class ValueErased(Refused):
    """The value was erased under the retention schedule: when, and by which rule."""

    def __init__(self, seq: int, scope: str, erased_at: datetime, rule: str | None) -> None:
        super().__init__("ERASED", f"entry {seq}: erased at {erased_at.isoformat()} by rule {rule}")
        self.scope = scope
        self.erased_at = erased_at
        self.rule = rule


# The search terms of GET /entries and the timeline's case, by the column each is an id of.
# An auditor's access event records a term as given only when the trail holds it there
# (``held_terms``), else NOT_IN_TRAIL.
TERMS = {"case_id": "case_id", "child_ref": "child_ref", "institution": "institution", "actor": "actor",
         "event_type": "event_type", "topic": "topic", "timeline": "case_id"}
NOT_IN_TRAIL = "(not in the trail)"


async def held_terms(session: AsyncSession, terms: Mapping[str, str]) -> dict[str, bool]:
    """Whether the trail holds each search term (``TERMS``' names) in its column: one
    statement for all, each an index lookup; a topic is held when it is one of the
    network's (topics have no index of their own)."""
    held: dict[str, bool] = {}
    checks = []
    for name, value in terms.items():
        if TERMS[name] == "topic":
            held[name] = value in topic_names(institutions())
        else:
            checks.append(sa.exists().where(holding(**{TERMS[name]: value})).label(name))
    if checks:
        row = (await session.execute(sa.select(*checks))).one()
        held |= {name: bool(found) for name, found in row._mapping.items()}
    return held


async def stats(session: AsyncSession) -> dict:
    event_type = sa.func.coalesce(audit_entries.c.event_type, "unknown")
    by_type = await session.execute(sa.select(event_type, sa.func.count()).group_by(event_type))
    return {
        "audit_entries": await session.scalar(sa.select(sa.func.count()).select_from(audit_entries)),
        "tree_size": await tree_size(session),
        "checkpoints": await session.scalar(sa.select(sa.func.count()).select_from(checkpoints)),
        "by_type": dict(by_type.tuples().all()),
    }
