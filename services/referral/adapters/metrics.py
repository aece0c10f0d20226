"""Referral's own gauges at GET /metrics (runtime/metrics.py): the deadlines missed now."""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.reference import REFERRAL_STEPS
from runtime.metrics import Gauge
from runtime.service import Runtime
from services.referral.adapters.tables import referrals, timers
from services.referral.domain.deadlines import OWED

URGENCIES = ("P0", "P1", "P2", "P3")


async def gauges(rt: Runtime, session: AsyncSession) -> list[Gauge]:
    """Open referrals past a step's deadline that still owe the step (domain.deadlines.OWED),
    by step and urgency; every pair given, zeros too. Escalation tells the institutions
    (referral.overdue); this tells the operator how many wait."""
    now = datetime.now(timezone.utc)
    owed = sa.or_(*(sa.and_(timers.c.step == step, referrals.c.state.in_([s.value for s in states]))
                    for step, states in OWED.items()))
    rows = (await session.execute(
        sa.select(timers.c.step, referrals.c.urgency, sa.func.count())
        .join(referrals, referrals.c.referral_id == timers.c.referral_id)
        .where(timers.c.due_at <= now, owed).group_by(timers.c.step, referrals.c.urgency))).all()
    missed = {(step, urgency): count for step, urgency, count in rows}
    return [Gauge("punte_referral_deadlines_missed",
                  "open referrals past a step's deadline that still owe it, by step and urgency",
                  ("step", "urgency"),
                  [((step, urgency), missed.get((step, urgency), 0)) for step in REFERRAL_STEPS for urgency in URGENCIES])]
