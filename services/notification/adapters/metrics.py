"""Notification's own gauges at GET /metrics (runtime/metrics.py): deliveries to webhooks,
e-mail and SMS by status, and the P0 alerts nobody acknowledged yet."""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.metrics import Gauge
from runtime.service import Runtime
from services.notification.adapters import deliveries, people
from services.notification.adapters.tables import alerts, people_deliveries

CHANNELS = ("webhook", "email", "sms")
# Each table's status as one word: "retrying" is pending after a failed attempt.
STATUSES = ("pending", "retrying", "delivered", "failed")
ESCALATION_LEVELS = (0, 1, 2)  # on call, supervisor, county coordinator


def _status(status: sa.ColumnElement, attempts: sa.ColumnElement, delivered: str) -> sa.ColumnElement:
    return sa.case((sa.and_(status == deliveries.PENDING, attempts > 0), "retrying"),
                   (status == delivered, "delivered"), else_=status)


async def gauges(rt: Runtime, session: AsyncSession) -> list[Gauge]:
    w, p = deliveries.webhook_deliveries, people_deliveries
    webhook_status = _status(w.c.status, w.c.attempts, deliveries.DELIVERED)
    people_status = _status(p.c.status, p.c.attempts, people.SENT)
    counted = {("webhook", status): n for status, n in (await session.execute(
        sa.select(webhook_status, sa.func.count()).group_by(webhook_status))).all()}
    counted |= {(channel, status): n for channel, status, n in (await session.execute(
        sa.select(p.c.channel, people_status, sa.func.count()).group_by(p.c.channel, people_status))).all()}
    waiting = (await session.execute(
        sa.select(alerts.c.level, sa.func.count(), sa.func.min(alerts.c.created_at))
        .where(alerts.c.acknowledged_at.is_(None)).group_by(alerts.c.level))).all()
    unacknowledged = {level: n for level, n, _ in waiting}
    oldest = min((first for _, _, first in waiting), default=None)
    age = (datetime.now(timezone.utc) - oldest).total_seconds() if oldest is not None else 0.0
    return [
        Gauge("punte_deliveries", "deliveries to institutions' webhooks and to people by e-mail and SMS, by "
              "channel and status (retrying: pending after a failed attempt; failed: given up)",
              ("channel", "status"),
              [((c, s), counted.get((c, s), 0)) for c in CHANNELS for s in STATUSES]),
        Gauge("punte_p0_alerts_unacknowledged", "P0 alerts nobody acknowledged yet, by escalation level "
              "(0 on call, 1 supervisor, 2 county coordinator)", ("level",),
              [((str(level),), unacknowledged.get(level, 0))
               for level in sorted(set(ESCALATION_LEVELS) | set(unacknowledged))]),
        Gauge("punte_p0_alerts_oldest_unacknowledged_age_seconds",
              "age of the oldest P0 alert nobody acknowledged; 0 when none", (), [((), max(0.0, age))]),
    ]
