"""Restriction of a case's processing (GDPR art. 18) as intake announces it on punte.cases
(ro.punte.case.restricted.v1): the services that follow cases keep the latest decision in
their own table ``case_restrictions`` and ask it before acting on a case. Intake, which
decides, keeps a fuller record (who, for which institution, why) in a table of the same
name and shape, so the questions below serve it too."""
from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import CaseRestricted
from contracts.refusals import Refused
from runtime.db import any_of

case_restrictions = sa.table(
    "case_restrictions",
    sa.column("case_id", sa.Text), sa.column("restricted", sa.Boolean),
    sa.column("decided_at", sa.DateTime(timezone=True)), sa.column("decided_by", sa.Text),
)

# The case ids under restriction, for queries that leave them out (lists, timers).
RESTRICTED_CASES = sa.select(case_restrictions.c.case_id).where(case_restrictions.c.restricted)


async def follow(session: AsyncSession, told: CaseRestricted) -> None:
    """Keep intake's latest decision; an older one arriving late changes nothing."""
    values = {"restricted": told.restricted, "decided_at": told.at, "decided_by": told.by}
    await session.execute(
        pg_insert(case_restrictions).values(case_id=told.case_id, **values)
        .on_conflict_do_update(index_elements=["case_id"], set_=values,
                               where=case_restrictions.c.decided_at <= told.at))


async def is_restricted(session: AsyncSession, case_id: str) -> bool:
    return bool(await session.scalar(sa.select(case_restrictions.c.restricted)
                                     .where(case_restrictions.c.case_id == case_id)))


async def restricted_among(session: AsyncSession, case_ids: Iterable[str]) -> set[str]:
    """Which of ``case_ids`` are restricted (one query for a batch)."""
    ids = list(case_ids)
    if not ids:
        return set()
    return set((await session.execute(sa.select(case_restrictions.c.case_id).where(
        any_of(case_restrictions.c.case_id, ids), case_restrictions.c.restricted))).scalars())


async def refuse_if_restricted(session: AsyncSession, case_id: str) -> None:
    """Refused CASE_RESTRICTED (HTTP 409, an outcome on Kafka) on a restricted case."""
    if await is_restricted(session, case_id):
        raise Refused("CASE_RESTRICTED", "the case's processing is restricted (GDPR art. 18)")
