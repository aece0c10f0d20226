"""The webhook delivery log: one row per notification sent to an institution's system,
which is also the queue the sender polls (pending rows whose ``next_attempt_at`` has come).

The row keeps the exact body and headers that go on the wire, so a delivery can be shown
and replayed byte for byte. The ``Punte-Delivery-Id`` header is the row's id, added when
sending, so receivers deduplicate replays and retries by it."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification.adapters.tables import metadata

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

webhook_deliveries = sa.Table(
    "webhook_deliveries", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("notification_id", sa.Text, nullable=False),
    sa.Column("institution", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),  # the exact request body
    sa.Column("headers", sa.JSON, nullable=False),  # the exact request headers, but those of each attempt
    sa.Column("status", sa.Text, nullable=False, server_default=PENDING),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_institution", "institution", "id"),
)

_t = webhook_deliveries
_ERROR_MAX = 500


async def enqueue_many(session: AsyncSession, queued: list[tuple[str, str, str, bytes, Mapping[str, str]]],
                       now: datetime) -> None:
    """New pending deliveries, due at once, with one insert: (notification id, institution,
    url, body, headers) each."""
    if queued:
        await session.execute(insert(_t), [
            dict(notification_id=notification_id, institution=institution, url=url, payload=bytes(body),
                 headers=dict(headers), status=PENDING, attempts=0, next_attempt_at=now, created_at=now)
            for notification_id, institution, url, body, headers in queued])


async def due(session: AsyncSession, now: datetime, limit: int = 50) -> list[sa.Row]:
    """Pending deliveries whose time has come, oldest first, locked for this transaction;
    rows another sender holds are skipped, so several senders can run side by side."""
    return list((await session.execute(
        sa.select(_t)
        .where(_t.c.status == PENDING, _t.c.next_attempt_at <= now)
        .order_by(_t.c.next_attempt_at, _t.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )).all())


async def mark_delivered(session: AsyncSession, id: int, status_code: int, now: datetime) -> None:
    await session.execute(sa.update(_t).where(_t.c.id == id).values(
        status=DELIVERED, attempts=_t.c.attempts + 1, last_status_code=status_code,
        last_error=None, delivered_at=now,
    ))


async def mark_retry(session: AsyncSession, id: int, status_code: int | None,
                     next_attempt_at: datetime, error: str | None) -> None:
    """One more failed attempt; the delivery stays pending until ``next_attempt_at``."""
    await session.execute(sa.update(_t).where(_t.c.id == id).values(
        status=PENDING, attempts=_t.c.attempts + 1, last_status_code=status_code,
        last_error=(error or "")[:_ERROR_MAX] or None, next_attempt_at=next_attempt_at,
    ))


async def mark_failed(session: AsyncSession, id: int, status_code: int | None, error: str | None) -> None:
    """The last attempt failed and no more will be made (until someone replays it)."""
    await session.execute(sa.update(_t).where(_t.c.id == id).values(
        status=FAILED, attempts=_t.c.attempts + 1, last_status_code=status_code,
        last_error=(error or "")[:_ERROR_MAX] or None,
    ))


async def replay(session: AsyncSession, *, now: datetime, ids: Sequence[int] | None = None,
                 institution: str | None = None, status: str | None = None) -> int:
    """Send deliveries again: by ``ids``, or every delivery of ``institution`` (optionally
    only those in ``status``, e.g. 'failed'). They go back to pending, due now, with their
    attempts reset; body, headers and id are kept, so the receiver sees the same
    Punte-Delivery-Id again. The number of rows replayed."""
    if ids is None and institution is None:
        raise ValueError("replay needs ids or an institution")
    where = []
    if ids is not None:
        where.append(_t.c.id.in_(list(ids)))
    if institution is not None:
        where.append(_t.c.institution == institution)
    if status is not None:
        where.append(_t.c.status == status)
    result = await session.execute(sa.update(_t).where(*where).values(
        status=PENDING, attempts=0, next_attempt_at=now, delivered_at=None,
        last_status_code=None, last_error=None,
    ))
    return result.rowcount


async def of_notification(session: AsyncSession, notification_id: str) -> list[sa.Row]:
    """Every webhook delivery of a notification, oldest first."""
    return list((await session.execute(
        sa.select(_t).where(_t.c.notification_id == notification_id).order_by(_t.c.id))).all())


async def list_for(session: AsyncSession, institution: str, limit: int = 100,
                   status: str | None = None) -> list[sa.Row]:
    """An institution's delivery log, newest first (optionally only those in ``status``)."""
    where = [_t.c.institution == institution]
    if status is not None:
        where.append(_t.c.status == status)
    return list((await session.execute(
        sa.select(_t).where(*where).order_by(_t.c.id.desc()).limit(limit)
    )).all())
