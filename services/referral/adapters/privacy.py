"""Referral's SQL for the person's rights: the restriction of a case's processing as
intake announced it (ro.punte.case.restricted.v1), and what the export reads."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import CaseRestricted
from contracts.refusals import Refused
from services.referral.adapters.tables import history, metadata, referrals

# The latest restriction decision about each case (GDPR art. 18), from punte.cases.
case_restrictions = sa.Table(
    "case_restrictions", metadata,
    sa.Column("case_id", sa.Text, primary_key=True),
    sa.Column("restricted", sa.Boolean, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_by", sa.Text, nullable=False),
)

# The case ids under restriction, for queries that leave them out (lists, timers).
RESTRICTED_CASES = sa.select(case_restrictions.c.case_id).where(case_restrictions.c.restricted)


async def follow_restriction(session: AsyncSession, told: CaseRestricted) -> None:
    """Keep intake's latest decision; an older one arriving late changes nothing."""
    values = {"restricted": told.restricted, "decided_at": told.at, "decided_by": told.by}
    await session.execute(
        pg_insert(case_restrictions).values(case_id=told.case_id, **values)
        .on_conflict_do_update(index_elements=["case_id"], set_=values,
                               where=case_restrictions.c.decided_at <= told.at))


async def is_restricted(session: AsyncSession, case_id: str) -> bool:
    return bool(await session.scalar(sa.select(case_restrictions.c.restricted)
                                     .where(case_restrictions.c.case_id == case_id)))


async def refuse_if_restricted(session: AsyncSession, case_id: str) -> None:
    """Refused CASE_RESTRICTED (HTTP 409, an outcome on Kafka) on a restricted case."""
    if await is_restricted(session, case_id):
        raise Refused("CASE_RESTRICTED", "the case's processing is restricted (GDPR art. 18)")


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
