"""Intake's SQL for closing cases and erasing them, and for refused reports, on the
caller's session (the caller owns the transaction)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.tables import (
    case_reports,
    cases,
    duplicate_candidates,
    household_links,
    identities,
    reports,
)
from services.intake.domain.closure import CLOSED, OPEN, IdentityVersion


async def close(session: AsyncSession, case_id: str, *, at: datetime, by: str, reason: str) -> bool:
    """Mark an open case closed; False when it was not open."""
    result = await session.execute(
        sa.update(cases).where(cases.c.case_id == case_id, cases.c.status == OPEN)
        .values(status=CLOSED, closed_at=at, closed_by=by, closure_reason=reason))
    return bool(result.rowcount)


async def reopen(session: AsyncSession, case_id: str) -> bool:
    """Mark a closed case open again; False when it was not closed (or is erased)."""
    result = await session.execute(
        sa.update(cases).where(cases.c.case_id == case_id, cases.c.status == CLOSED)
        .values(status=OPEN, closed_at=None, closed_by=None, closure_reason=None))
    return bool(result.rowcount)


async def report_ids_of(session: AsyncSession, case_id: str) -> list[str]:
    """Every report the case holds, oldest first."""
    return list((await session.execute(
        sa.select(case_reports.c.report_id).where(case_reports.c.case_id == case_id)
        .order_by(case_reports.c.received_at, case_reports.c.report_id))).scalars())


async def child_of(session: AsyncSession, case_id: str) -> str | None:
    return await session.scalar(sa.select(cases.c.child_ref).where(cases.c.case_id == case_id))


async def other_cases_of(session: AsyncSession, child_ref: str, case_id: str) -> bool:
    """Whether the child has a case besides ``case_id`` that is still kept."""
    return bool(await session.scalar(sa.select(sa.func.count()).select_from(cases).where(
        cases.c.child_ref == child_ref, cases.c.case_id != case_id)))


async def identity_versions_of(session: AsyncSession, child_ref: str) -> list[IdentityVersion]:
    rows = (await session.execute(sa.select(identities.c.version, identities.c.report_id)
                                  .where(identities.c.child_ref == child_ref))).all()
    return [IdentityVersion(r.version, r.report_id) for r in rows]


async def delete_identity_versions(session: AsyncSession, versions: Sequence[int]) -> None:
    if versions:
        await session.execute(sa.delete(identities).where(identities.c.version.in_(list(versions))))


async def delete_case(session: AsyncSession, case_id: str, report_ids: Sequence[str]) -> None:
    """The case, the reports it holds and their answers, and its duplicate decisions."""
    await session.execute(sa.delete(duplicate_candidates).where(sa.or_(
        duplicate_candidates.c.case_id == case_id, duplicate_candidates.c.candidate_case_id == case_id)))
    await session.execute(sa.delete(reports).where(sa.or_(
        reports.c.case_id == case_id, reports.c.event_id.in_(list(report_ids)))))
    await session.execute(sa.delete(case_reports).where(case_reports.c.case_id == case_id))
    await session.execute(sa.delete(cases).where(cases.c.case_id == case_id))


async def delete_household_links(session: AsyncSession, child_ref: str) -> None:
    """The child's household links, once no case of the child is kept."""
    await session.execute(sa.delete(household_links).where(sa.or_(
        household_links.c.child_ref == child_ref, household_links.c.sibling_ref == child_ref)))


async def delete_refused(session: AsyncSession, before: datetime, limit: int = 500) -> list[str]:
    """Answers to refused reports received before ``before``; their event ids."""
    keys = (sa.select(reports.c.message_key)
            .where(reports.c.outcome == "rejected", reports.c.received_at <= before)
            .limit(limit).with_for_update(skip_locked=True).scalar_subquery())
    deleted = await session.execute(sa.delete(reports).where(reports.c.message_key.in_(keys))
                                    .returning(reports.c.event_id))
    return [event_id for event_id in deleted.scalars() if event_id is not None]
