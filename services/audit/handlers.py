"""Audit's use cases: append every message of every topic as a leaf, integrate the leaves
into the Merkle tree, issue signed checkpoints, take witnesses' cosignatures, serve proofs,
verify what is stored, and export the trail for offline verification."""
from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import AuditCheckpoint, EventType
from contracts.refusals import Refused
from runtime.cloudevents import CloudEvent
from runtime.inbox import Message, UnitOfWork
from runtime.signing import Keyring, SigningKey
from services.audit.adapters.tables import audit_entries, checkpoints, cosignatures, tree_nodes, tree_state
from services.audit.adapters.tree import StoredNodes
from services.audit.domain import checkpoint, merkle, offline
from services.audit.domain.entries import LeafCheck, Record, canonical, check_leaves, gaps
from services.audit.domain.subjects import subject_of

# Appenders across replicas take one head (seq); the integrator one tree. Transaction locks,
# released at commit or rollback.
APPEND_LOCK = 0x61756474
TREE_LOCK = 0x74726565
CHECKPOINT_TOPIC = "punte.audit"
HEAD = "audit_head"


@dataclass(frozen=True)
class Log:
    """The audit log's identity: the origin line of its checkpoints and its signing key."""

    origin: str
    key: SigningKey

    def public(self) -> bytes:
        return self.key.public_raw()


# --- appending ------------------------------------------------------------------------------

async def append(uow: UnitOfWork, message: Message, templates: Sequence[str]) -> None:
    record = Record(topic=message.topic, partition=message.partition, offset=message.offset,
                    timestamp_ms=message.timestamp_ms, key=message.key, headers=message.headers,
                    value=message.value)
    entry = canonical(record)
    subject = subject_of(record, templates)
    session = uow.session
    # The lock is held to the end of the batch's transaction, so the head read once per
    # batch stays ours; it is kept on the session (one session per batch).
    head = session.info.get(HEAD)
    if head is None:
        await session.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK)))
        head = await session.scalar(sa.select(sa.func.coalesce(sa.func.max(audit_entries.c.seq), 0)))
    # A replica that lost this partition in a rebalance may have appended it already;
    # then nothing is added here and the inbox sees the duplicate on the batch's retry.
    appended = await session.scalar(pg_insert(audit_entries).values(
        seq=head + 1, topic=message.topic, partition=message.partition, offset=message.offset,
        event_id=subject.event_id, event_type=subject.event_type, source=subject.source,
        case_id=subject.case_id, child_ref=subject.child_ref, actor=subject.actor,
        institution=subject.institution, recorded_at=uow.now, entry=entry,
        leaf_hash=merkle.leaf_hash(entry),
    ).on_conflict_do_nothing(constraint="uq_audit_entries_position").returning(audit_entries.c.seq))
    session.info[HEAD] = head + 1 if appended is not None else head


async def append_many(uow: UnitOfWork, messages: list[Message], templates: Sequence[str]) -> None:
    """A whole polled batch in one insert, numbered on from the head under the lock;
    positions a replica already appended (a rebalance overlap) are left out, so the
    numbering stays gapless."""
    session = uow.session
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK)))
    head = await session.scalar(sa.select(sa.func.coalesce(sa.func.max(audit_entries.c.seq), 0)))
    positions = [(m.topic, m.partition, m.offset) for m in messages]
    found = await session.execute(
        sa.select(audit_entries.c.topic, audit_entries.c.partition, audit_entries.c.offset).where(
            sa.tuple_(audit_entries.c.topic, audit_entries.c.partition, audit_entries.c.offset).in_(positions)))
    present = {(r.topic, r.partition, r.offset) for r in found}
    rows = []
    for message in messages:
        if (message.topic, message.partition, message.offset) in present:
            continue
        present.add((message.topic, message.partition, message.offset))
        record = Record(topic=message.topic, partition=message.partition, offset=message.offset,
                        timestamp_ms=message.timestamp_ms, key=message.key, headers=message.headers,
                        value=message.value)
        entry = canonical(record)
        subject = subject_of(record, templates)
        rows.append({
            "seq": head + len(rows) + 1, "topic": message.topic, "partition": message.partition,
            "offset": message.offset, "event_id": subject.event_id, "event_type": subject.event_type,
            "source": subject.source, "case_id": subject.case_id, "child_ref": subject.child_ref,
            "actor": subject.actor, "institution": subject.institution, "recorded_at": uow.now,
            "entry": entry, "leaf_hash": merkle.leaf_hash(entry),
        })
    if rows:
        await session.execute(sa.insert(audit_entries), rows)


# --- the tree -------------------------------------------------------------------------------

async def tree_size(session: AsyncSession) -> int:
    return await session.scalar(sa.select(tree_state.c.size).where(tree_state.c.id == 1)) or 0


async def integrate(session: AsyncSession, limit: int = 5000) -> int:
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
    nodes = await session.run_sync(lambda s: merkle.new_nodes(size, run, StoredNodes(s)))
    await session.execute(pg_insert(tree_nodes).values(
        [{"level": level, "index": index, "hash": digest} for level, index, digest in nodes]
    ).on_conflict_do_nothing())
    await session.execute(sa.update(tree_state).where(tree_state.c.id == 1).values(size=size + len(run)))
    return len(run)


async def root_at(session: AsyncSession, size: int) -> bytes:
    return await session.run_sync(lambda s: merkle.root(StoredNodes(s), size))


async def inclusion(session: AsyncSession, index: int, size: int) -> list[bytes]:
    _check_sizes(index + 1, size, await tree_size(session))
    return await session.run_sync(lambda s: merkle.inclusion_proof(StoredNodes(s), index, size))


async def consistency(session: AsyncSession, first: int, second: int) -> list[bytes]:
    _check_sizes(first, second, await tree_size(session))
    return await session.run_sync(lambda s: merkle.consistency_proof(StoredNodes(s), first, second))


def _check_sizes(low: int, high: int, size: int) -> None:
    if not 0 < low <= high <= size:
        raise Refused("UNKNOWN_CHECKPOINT", f"need 0 < {low} <= {high} <= tree size {size}")


# --- checkpoints and witnesses ---------------------------------------------------------------

async def issue_checkpoint(uow: UnitOfWork, log: Log, only_if_grown: bool = False) -> str | None:
    """Sign the tree as it is now and publish the note; with ``only_if_grown``, not when
    nothing but checkpoint messages arrived since the last one (they would never end)."""
    while await integrate(uow.session) == 5000:
        pass
    size = await tree_size(uow.session)
    last = (await uow.session.execute(sa.select(checkpoints.c.size).order_by(checkpoints.c.size.desc())
                                      .limit(1))).scalar_one_or_none()
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
    """A checkpoint's note with every witness's cosignature line appended."""
    query = sa.select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1) if size is None \
        else sa.select(checkpoints).where(checkpoints.c.size == size)
    row = (await session.execute(query)).first()
    if row is None:
        raise Refused("UNKNOWN_CHECKPOINT", f"no checkpoint {size if size is not None else 'yet'}")
    if not with_cosignatures:
        return row.note
    lines = (await session.execute(sa.select(cosignatures.c.line).where(cosignatures.c.size == row.size)
                                   .order_by(cosignatures.c.witness))).scalars().all()
    return row.note + "".join(line if line.endswith("\n") else line + "\n" for line in lines)


async def add_cosignature(session: AsyncSession, size: int, witness: str, line: str, keyring: Keyring) -> str:
    """A peer institution witnesses a checkpoint: its cosignature must verify with one of
    its keys before it is kept."""
    # The new line alone is checked, against the log's own note: another witness line for
    # the same name already stored must not vouch for it.
    note = await signed_note(session, size, with_cosignatures=False)
    candidate = note + (line if line.endswith("\n") else line + "\n")
    for public in keyring.public_keys_of(witness):
        try:
            signed_at = checkpoint.verify_cosignature(candidate, witness, public)
        except checkpoint.CheckpointError:
            continue
        await session.execute(pg_insert(cosignatures).values(
            size=size, witness=witness, line=line.rstrip("\n"), signed_at=signed_at,
        ).on_conflict_do_update(index_elements=["size", "witness"], set_={"line": line.rstrip("\n"),
                                                                            "signed_at": signed_at}))
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
    """Every stored entry against its leaf hash, numbered without gaps; every partition's
    offsets without gaps; the tree's root against the latest signed checkpoint."""
    problems: list[str] = []

    async def rows() -> list[tuple[int, bytes, bytes]]:
        out, after = [], 0
        while True:
            chunk = (await session.execute(
                sa.select(audit_entries.c.seq, audit_entries.c.entry, audit_entries.c.leaf_hash)
                .where(audit_entries.c.seq > after).order_by(audit_entries.c.seq).limit(page))).all()
            out.extend((r.seq, r.entry, r.leaf_hash) for r in chunk)
            if len(chunk) < page:
                return out
            after = chunk[-1].seq

    leaves: LeafCheck = check_leaves(await rows(), merkle.leaf_hash)
    if not leaves.ok and leaves.problem:
        problems.append(leaves.problem)
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
    return Verification(not problems, leaves.entries, size, root.hex() if root else None,
                        leaves.first_bad, problems, skipped, latest.size if latest else None)


async def export(session: AsyncSession, log: Log, size: int | None = None) -> Iterator[str]:
    """JSON Lines for ``punte audit verify``: the signed checkpoint, then every entry with
    its inclusion proof (entries from the checkpoint's size only)."""
    note = await signed_note(session, size)
    cp = checkpoint.parse(note).checkpoint
    rows = (await session.execute(
        sa.select(audit_entries).where(audit_entries.c.seq <= cp.size).order_by(audit_entries.c.seq))).all()
    extra = [{"topic": r.topic, "partition": r.partition, "offset": r.offset, "event_type": r.event_type,
              "case_id": r.case_id, "recorded_at": r.recorded_at.isoformat()} for r in rows]
    entries = [r.entry for r in rows]
    # Every proof of an export touches most of the tree: read the nodes once, not per proof.
    nodes = {(n.level, n.index): n.hash for n in (await session.execute(sa.select(tree_nodes))).all()}
    return await session.run_sync(lambda s: list(offline.export_lines(
        log.origin, note, entries, StoredNodes(s, nodes), cp.size, extra)))


async def stats(session) -> dict:
    by_type = await session.execute(
        sa.select(audit_entries.c.event_type, sa.func.count()).group_by(audit_entries.c.event_type))
    counts: dict[str, int] = {}
    for event_type, n in by_type:
        counts[event_type or "unknown"] = counts.get(event_type or "unknown", 0) + n
    return {
        "audit_entries": await session.scalar(sa.select(sa.func.count()).select_from(audit_entries)),
        "tree_size": await tree_size(session),
        "checkpoints": await session.scalar(sa.select(sa.func.count()).select_from(checkpoints)),
        "by_type": counts,
    }
