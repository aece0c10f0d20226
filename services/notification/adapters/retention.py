"""Notification's SQL for erasing what it keeps of closed cases and for its delivery logs,
on the caller's session."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification.adapters.deliveries import webhook_deliveries
from services.notification.adapters.tables import (
    alerts,
    facts,
    inbox_entries,
    people_deliveries,
    referral_owners,
)


async def delete_cases(session: AsyncSession, case_ids: Sequence[str]) -> None:
    """Every notice of the cases (inbox entries) with its e-mails, SMS, webhooks and alerts,
    and the facts of the cases and their referrals."""
    ids = list(case_ids)
    if not ids:
        return
    notices = sa.select(inbox_entries.c.notification_id).where(inbox_entries.c.case_id.in_(ids)).scalar_subquery()
    for table in (people_deliveries, webhook_deliveries, alerts):
        await session.execute(sa.delete(table).where(table.c.notification_id.in_(notices)))
    await session.execute(sa.delete(inbox_entries).where(inbox_entries.c.case_id.in_(ids)))
    subjects = sa.select(facts.c.subject_id).where(facts.c.case_id.in_(ids)).scalar_subquery()
    await session.execute(sa.delete(referral_owners).where(referral_owners.c.referral_id.in_(subjects)))
    await session.execute(sa.delete(facts).where(facts.c.case_id.in_(ids)))


async def delete_webhook_log(session: AsyncSession, before: datetime) -> int:
    """Webhook deliveries done (delivered or given up) before ``before``; pending ones stay."""
    t = webhook_deliveries
    result = await session.execute(sa.delete(t).where(
        t.c.status != "pending", sa.func.coalesce(t.c.delivered_at, t.c.created_at) <= before))
    return result.rowcount or 0


async def delete_people_log(session: AsyncSession, before: datetime) -> int:
    """E-mails and SMS sent (or given up) before ``before``; pending ones stay."""
    t = people_deliveries
    result = await session.execute(sa.delete(t).where(
        t.c.status != "pending", sa.func.coalesce(t.c.sent_at, t.c.created_at) <= before))
    return result.rowcount or 0
