"""Audit's use case: every message on every topic is appended to the chain."""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from runtime.inbox import Message, UnitOfWork
from services.audit.adapters.tables import audit_entries
from services.audit.domain import chain
from services.audit.domain.subjects import subject_of

# Serialises appenders across replicas, so seq and prev-hash come from one head. Taken per
# transaction (re-entrant within it), released by its commit or rollback.
APPEND_LOCK = 0x61756474


async def append(uow: UnitOfWork, message: Message, templates: Sequence[str]) -> None:
    record = chain.Record(
        topic=message.topic, partition=message.partition, offset=message.offset,
        timestamp_ms=message.timestamp_ms, key=message.key, headers=message.headers,
        value=message.value,
    )
    entry = chain.canonical(record)
    subject = subject_of(record, templates)
    session = uow.session
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK)))
    last = (await session.execute(
        sa.select(audit_entries.c.seq, audit_entries.c.hash)
        .order_by(audit_entries.c.seq.desc()).limit(1)
    )).first()
    seq, prev = (last.seq, last.hash) if last is not None else (0, chain.GENESIS)
    # A replica that lost this partition in a rebalance may have appended it already;
    # then nothing is added here and the inbox sees the duplicate on the batch's retry.
    await session.execute(pg_insert(audit_entries).values(
        seq=seq + 1, topic=message.topic, partition=message.partition, offset=message.offset,
        event_id=subject.event_id, event_type=subject.event_type, source=subject.source,
        case_id=subject.case_id, institution=subject.institution, recorded_at=uow.now,
        entry=entry, hash=chain.entry_hash(prev, entry),
    ).on_conflict_do_nothing(constraint="uq_audit_entries_position"))


async def stats(session) -> dict:
    by_type = await session.execute(
        sa.select(audit_entries.c.event_type, sa.func.count()).group_by(audit_entries.c.event_type))
    counts: dict[str, int] = {}
    for event_type, n in by_type:
        counts[event_type or "unknown"] = counts.get(event_type or "unknown", 0) + n
    return {
        "audit_entries": await session.scalar(sa.select(sa.func.count()).select_from(audit_entries)),
        "by_type": counts,
    }
