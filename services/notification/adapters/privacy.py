"""Notification's SQL for the person's rights: the restriction of a case's processing as
intake announced it (ro.punte.case.restricted.v1), and what the person's export reads."""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification.adapters.deliveries import webhook_deliveries
from services.notification.adapters.tables import facts, inbox_entries, people_deliveries


async def sides_of(session: AsyncSession, case_id: str) -> tuple[str | None, list[str]]:
    """The case's lead (the institution it was referred to first, as handlers._lead_of) and
    its participants: the lead, every institution a referral of it went to, and those
    informed of it when it opened (their case-informed notices)."""
    receivers = list((await session.execute(
        sa.select(facts.c.lead).where(facts.c.case_id == case_id, facts.c.lead.is_not(None))
        .order_by(facts.c.created_at))).scalars())
    informed = list((await session.execute(
        sa.select(inbox_entries.c.institution).where(inbox_entries.c.case_id == case_id,
                                                     inbox_entries.c.kind == "case-informed"))).scalars())
    return (receivers[0] if receivers else None), list(dict.fromkeys([*receivers, *informed]))


async def entries_of(session: AsyncSession, case_id: str) -> Sequence[sa.Row]:
    return (await session.execute(sa.select(inbox_entries).where(inbox_entries.c.case_id == case_id)
                                  .order_by(inbox_entries.c.created_at))).all()


async def messages_of(session: AsyncSession, notification_ids: list[str]) -> Sequence[sa.Row]:
    """E-mails and SMS sent about those notifications: channel, purpose, status, when; not
    the professionals' addresses (their data, not the child's)."""
    if not notification_ids:
        return []
    return (await session.execute(
        sa.select(people_deliveries.c.notification_id, people_deliveries.c.institution,
                  people_deliveries.c.channel, people_deliveries.c.purpose, people_deliveries.c.status,
                  people_deliveries.c.created_at, people_deliveries.c.sent_at)
        .where(people_deliveries.c.notification_id.in_(notification_ids))
        .order_by(people_deliveries.c.id))).all()


async def webhooks_of(session: AsyncSession, notification_ids: list[str]) -> Sequence[sa.Row]:
    if not notification_ids:
        return []
    return (await session.execute(
        sa.select(webhook_deliveries.c.notification_id, webhook_deliveries.c.institution,
                  webhook_deliveries.c.status, webhook_deliveries.c.created_at,
                  webhook_deliveries.c.delivered_at)
        .where(webhook_deliveries.c.notification_id.in_(notification_ids))
        .order_by(webhook_deliveries.c.id))).all()
