"""Referral's SQL for the person's rights: the restriction of a case's processing as
intake announced it (ro.punte.case.restricted.v1), and what the export reads."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.restrictions import case_restrictions
from services.referral.adapters.tables import history, referrals


async def referrals_of(session: AsyncSession, case_id: str) -> Sequence[sa.Row]:
    return (await session.execute(sa.select(referrals).where(referrals.c.case_id == case_id)
                                  .order_by(referrals.c.requested_at))).all()


async def history_of(session: AsyncSession, referral_ids: list[str]) -> Sequence[sa.Row]:
    if not referral_ids:
        return []
    return (await session.execute(sa.select(history).where(history.c.referral_id.in_(referral_ids))
                                  .order_by(history.c.id))).all()


def restriction_state(row: sa.Row | None) -> dict[str, object] | None:
    if row is None:
        return None
    at: datetime = row.decided_at
    return {"restricted": row.restricted, "at": at.isoformat(), "by": row.decided_by}


async def restriction_of(session: AsyncSession, case_id: str) -> sa.Row | None:
    return (await session.execute(sa.select(case_restrictions)
                                  .where(case_restrictions.c.case_id == case_id))).first()
