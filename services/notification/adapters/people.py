"""The queue of e-mails and SMS to people, which is also their delivery status.

Rows are written in the same transaction as the inbox entry they come from; the sender
(channels/people.py) takes due rows with SKIP LOCKED, so several replicas can send."""
from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.db import any_of, as_rows
from services.notification.adapters.tables import inbox_entries, people_deliveries
from services.notification.domain.dispatch import Outgoing

PENDING, SENT, FAILED = "pending", "sent", "failed"
_t = people_deliveries
_ERROR_MAX = 500


async def enqueue(session: AsyncSession, notification_id: str, institution: str,
                  messages: Iterable[Outgoing], now: datetime, round: int = 0) -> int:
    """Queue ``messages``; one already queued (same notification, person, channel, purpose
    and round) is not queued again. The number queued."""
    return await enqueue_many(session, [(notification_id, institution, messages)], now, round)


async def enqueue_many(session: AsyncSession, queued: Iterable[tuple[str, str, Iterable[Outgoing]]],
                       now: datetime, round: int = 0) -> int:
    """``enqueue`` for several notifications' (id, institution, messages) in one insert."""
    rows = [dict(notification_id=notification_id, institution=institution, person=m.person,
                 channel=m.channel, address=m.address, purpose=m.purpose, round=round,
                 status=PENDING, due_at=m.due_at, created_at=now)
            for notification_id, institution, messages in queued for m in messages]
    if not rows:
        return 0
    result = await session.execute(
        insert(_t).on_conflict_do_nothing(constraint="uq_people_deliveries_once").returning(_t.c.id), rows)
    return len(result.all())


async def pages_since(session: AsyncSession, persons: Collection[str], since: datetime) -> dict[str, int]:
    """How many times each of ``persons`` was paged (alert sends, whatever their channels
    or status) since ``since``, in this transaction's view."""
    rows = await session.execute(
        sa.select(_t.c.person, sa.func.count(sa.distinct(sa.tuple_(_t.c.notification_id, _t.c.round))))
        .where(any_of(_t.c.person, persons), _t.c.purpose == "alert", _t.c.created_at >= since)
        .group_by(_t.c.person))
    return {person: count for person, count in rows.all()}


async def due(session: AsyncSession, now: datetime, limit: int) -> list[sa.Row]:
    """Pending rows whose time has come, with what their message says, locked for this
    transaction (rows another sender holds are skipped)."""
    e = inbox_entries
    return list((await session.execute(
        sa.select(_t, e.c.kind, e.c.urgency, e.c.case_id,
                  sa.func.coalesce(e.c.mail_summary_ro, e.c.summary_ro).label("summary_ro"),
                  sa.func.coalesce(e.c.mail_summary_en, e.c.summary_en).label("summary_en"),
                  e.c.do_not_contact, e.c.deadline)
        .join(e, e.c.notification_id == _t.c.notification_id)
        .where(_t.c.status == PENDING, _t.c.due_at <= now)
        .order_by(_t.c.due_at, _t.c.id)
        .limit(limit)
        .with_for_update(of=_t, skip_locked=True)
    )).all())


async def mark_sent(session: AsyncSession, sent: Sequence[tuple[int, str]], now: datetime) -> None:
    """Record rows sent, each (id, the provider's id for it), in one update: a pass's
    outcomes as two array parameters, whatever their number."""
    if not sent:
        return
    given = as_rows("sent", id=(sa.BigInteger(), [i for i, _ in sent]),
                    provider_id=(sa.Text(), [p for _, p in sent]))
    await session.execute(sa.update(_t).where(_t.c.id == given.c.id).values(
        status=SENT, attempts=_t.c.attempts + 1, provider_id=given.c.provider_id, sent_at=now, last_error=None))


async def mark_retry(session: AsyncSession, ids: list[int], next_at: datetime, error: str) -> None:
    await session.execute(sa.update(_t).where(any_of(_t.c.id, ids)).values(
        attempts=_t.c.attempts + 1, due_at=next_at, last_error=error[:_ERROR_MAX]))


async def mark_failed(session: AsyncSession, ids: list[int], error: str) -> None:
    await session.execute(sa.update(_t).where(any_of(_t.c.id, ids)).values(
        status=FAILED, attempts=_t.c.attempts + 1, last_error=error[:_ERROR_MAX]))


async def of_notification(session: AsyncSession, notification_id: str) -> list[sa.Row]:
    """Every message a notification became, in the order they were queued."""
    return list((await session.execute(
        sa.select(_t).where(_t.c.notification_id == notification_id).order_by(_t.c.id))).all())
