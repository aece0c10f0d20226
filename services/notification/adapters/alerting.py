"""P0 alerts: opened with the notice, acknowledged from the inbox, re-sent and escalated
by the alert loop until someone acknowledges them."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification.adapters.tables import alerts, inbox_entries


async def open_alerts(session: AsyncSession, opened: list[tuple[str, str, datetime]], now: datetime) -> None:
    """Alerts whose first send (level 0, round 1) was just queued, each to be looked at
    again at its ``next_at``: (notification id, institution, next_at), one insert."""
    if opened:
        await session.execute(insert(alerts).on_conflict_do_nothing(index_elements=["notification_id"]), [
            dict(notification_id=notification_id, institution=institution, level=0, round=1, sends=1,
                 next_at=next_at, created_at=now) for notification_id, institution, next_at in opened])


async def acknowledge(session: AsyncSession, notification_id: str, institution: str, person: str,
                      now: datetime) -> RowMapping | None:
    """Mark the institution's entry acknowledged (and read), keeping the first who and
    when; its alert, if any, stops. The entry, or None if the institution has no such one."""
    e = inbox_entries
    row = (await session.execute(
        sa.update(e)
        .where(e.c.notification_id == notification_id, e.c.institution == institution)
        .values(acknowledged_at=sa.func.coalesce(e.c.acknowledged_at, now),
                acknowledged_by=sa.func.coalesce(e.c.acknowledged_by, person),
                read_at=sa.func.coalesce(e.c.read_at, now))
        .returning(*e.c)
    )).mappings().first()
    if row is not None:
        await session.execute(sa.update(alerts).where(
            alerts.c.notification_id == notification_id, alerts.c.acknowledged_at.is_(None),
        ).values(acknowledged_at=now, next_at=None))
    return row


async def due(session: AsyncSession, now: datetime, limit: int = 100) -> list[sa.Row]:
    """Unacknowledged alerts whose time to look again has come, locked for this transaction."""
    return list((await session.execute(
        sa.select(alerts)
        .where(alerts.c.next_at <= now, alerts.c.acknowledged_at.is_(None))
        .order_by(alerts.c.next_at).limit(limit)
        .with_for_update(skip_locked=True))).all())


async def advance(session: AsyncSession, notification_id: str, level: int, round: int,
                  next_at: datetime | None) -> None:
    """Record one more send (at ``level``, its ``round``-th there); None: nothing more to do."""
    await session.execute(sa.update(alerts).where(alerts.c.notification_id == notification_id).values(
        level=level, round=round, sends=alerts.c.sends + 1, next_at=next_at))


async def stop(session: AsyncSession, notification_id: str) -> None:
    """Every level was tried: the alert stays unacknowledged, with nobody left to tell."""
    await session.execute(sa.update(alerts).where(alerts.c.notification_id == notification_id)
                          .values(next_at=None))
