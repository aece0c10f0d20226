"""Audit's use cases: append every message of every topic as a leaf, integrate the leaves
into the Merkle tree, issue signed checkpoints, take witnesses' cosignatures, serve proofs,
verify what is stored, and export the trail for offline verification."""
from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import AuditCheckpoint, EventType
from contracts.refusals import Refused
from runtime.cloudevents import CloudEvent
from runtime.inbox import Message, UnitOfWork
from runtime.signing import Keyring, SigningKey
from services.audit.adapters import tree
from services.audit.adapters.tables import audit_entries, checkpoints, cosignatures, tree_state
from services.audit.domain import checkpoint, merkle, offline
from services.audit.domain.entries import Record, canonical, check_leaves, gaps
from services.audit.domain.subjects import subject_of

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


# --- appending ------------------------------------------------------------------------------

def _row(message: Message, seq: int, recorded_at: datetime, templates: Sequence[str]) -> dict[str, Any]:
    """The audit_entries row of one message: its exact bytes, leaf hash and subject."""
    record = Record(topic=message.topic, partition=message.partition, offset=message.offset,
                    timestamp_ms=message.timestamp_ms, key=message.key, headers=message.headers,
                    value=message.value)
    entry = canonical(record)
    subject = subject_of(record, templates)
    return {"seq": seq, "topic": message.topic, "partition": message.partition, "offset": message.offset,
            "event_id": subject.event_id, "event_type": subject.event_type, "source": subject.source,
            "case_id": subject.case_id, "child_ref": subject.child_ref, "actor": subject.actor,
            "institution": subject.institution, "recorded_at": recorded_at, "entry": entry,
            "leaf_hash": merkle.leaf_hash(entry)}


async def append_many(uow: UnitOfWork, messages: Sequence[Message], templates: Sequence[str]) -> None:
    """A whole polled batch in one insert, numbered on from the head under the append lock
    (held to the end of the transaction, so replicas never number alike); positions a
    replica already appended (a rebalance overlap) are left out, so numbering stays gapless."""
    session = uow.session
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK)))
    head = await session.scalar(sa.select(sa.func.coalesce(sa.func.max(audit_entries.c.seq), 0)))
    positions = [(m.topic, m.partition, m.offset) for m in messages]
    present = {tuple(r) for r in await session.execute(
        sa.select(audit_entries.c.topic, audit_entries.c.partition, audit_entries.c.offset).where(
            sa.tuple_(audit_entries.c.topic, audit_entries.c.partition, audit_entries.c.offset).in_(positions)))}
    rows = []
    for message, position in zip(messages, positions, strict=True):
        if position not in present:
            present.add(position)
            rows.append(_row(message, head + len(rows) + 1, uow.now, templates))
    if rows:
        await session.execute(sa.insert(audit_entries), rows)


async def append(uow: UnitOfWork, message: Message, templates: Sequence[str]) -> None:
    """One message: the consumer's path when a batch must be applied one by one."""
    await append_many(uow, [message], templates)


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
    uow.outbox.emit(CHECKPOINT_TOPIC, CloudEvent.new(
        EventType.AUDIT_CHECKPOINT.value, uow.source, published.model_dump(mode="json"), subject=str(size)),
        key=log.origin)
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


async def verify_stored(session: AsyncSession, page: int = 5000) -> Verification:
    """Every stored entry against its leaf hash, numbered without gaps (a page at a time);
    every partition's offsets without gaps; the tree's root against the latest signed
    checkpoint."""
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
        sa.select(audit_entries.c.topic, audit_entries.c.partition, audit_entries.c.offset)
        .order_by(audit_entries.c.topic, audit_entries.c.partition, audit_entries.c.offset))).all()
    skipped = [g.__dict__ for g in gaps((p.topic, p.partition, p.offset) for p in positions)]
    if skipped:
        problems.append(f"{len(skipped)} offset gaps")
    size = await tree_size(session)
    root = await root_at(session, size) if size else None
    latest = (await session.execute(sa.select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1))).first()
    if latest is not None and await root_at(session, latest.size) != latest.root:
        problems.append(f"the tree at size {latest.size} does not match its signed checkpoint")
    return Verification(not problems, entries, size, root.hex() if root else None,
                        first_bad, problems, skipped, latest.size if latest else None)


async def _checkpointed(session: AsyncSession, size: int | None) -> tuple[str, checkpoint.Checkpoint, list[sa.Row]]:
    """A signed checkpoint (the latest when ``size`` is None) and the entries it covers."""
    note = await signed_note(session, size)
    cp = checkpoint.parse(note).checkpoint
    rows = (await session.execute(
        sa.select(audit_entries).where(audit_entries.c.seq <= cp.size).order_by(audit_entries.c.seq))).all()
    return note, cp, list(rows)


def _described(row: sa.Row) -> dict[str, Any]:
    """What an exported entry is, for people (not verified)."""
    return {"topic": row.topic, "partition": row.partition, "offset": row.offset, "event_type": row.event_type,
            "case_id": row.case_id, "recorded_at": row.recorded_at.isoformat()}


async def export(session: AsyncSession, log: Log, size: int | None = None) -> list[str]:
    """JSON Lines for ``punte audit verify``: the signed checkpoint, then every entry with
    its inclusion proof (entries from the checkpoint's size only)."""
    note, cp, rows = await _checkpointed(session, size)
    # Every proof of an export touches most of the tree: read the nodes once, not per proof.
    nodes = await tree.read(session)
    return list(offline.export_lines(log.origin, note, [r.entry for r in rows], nodes, cp.size,
                                     [_described(r) for r in rows]))


async def export_table(session: AsyncSession, size: int | None = None) -> list[dict[str, Any]]:
    """The entries of the same checkpoint as ``export``, one row each for a spreadsheet:
    no proofs, the leaf hash of the exact bytes."""
    _, _, rows = await _checkpointed(session, size)
    return [{"index": r.seq - 1, **_described(r), "leaf_hash": merkle.leaf_hash(r.entry).hex()} for r in rows]


async def stats(session: AsyncSession) -> dict:
    event_type = sa.func.coalesce(audit_entries.c.event_type, "unknown")
    by_type = await session.execute(sa.select(event_type, sa.func.count()).group_by(event_type))
    return {
        "audit_entries": await session.scalar(sa.select(sa.func.count()).select_from(audit_entries)),
        "tree_size": await tree_size(session),
        "checkpoints": await session.scalar(sa.select(sa.func.count()).select_from(checkpoints)),
        "by_type": dict(by_type.tuples().all()),
    }
