"""Referral's SQL for closing and erasing cases, on the caller's session: the reports each
case holds (for ro.punte.case.closed.v1), and the rows referral keeps of a case."""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral.adapters.tables import cases, history, metadata, referrals, timers

# The reports each case holds, from case.opened and case.report-added (migration 0004).
case_reports = sa.Table(
    "case_reports", metadata,
    sa.Column("case_id", sa.Text, primary_key=True),
    sa.Column("report_id", sa.Text, primary_key=True),
)


async def add_report(session: AsyncSession, case_id: str, report_id: str) -> None:
    await session.execute(pg_insert(case_reports).values(case_id=case_id, report_id=report_id)
                          .on_conflict_do_nothing())


async def add_reports(session: AsyncSession, pairs: Sequence[tuple[str, str]]) -> None:
    """(case id, report id) pairs in one insert."""
    if pairs:
        await session.execute(pg_insert(case_reports).on_conflict_do_nothing(),
                              [{"case_id": case_id, "report_id": report_id} for case_id, report_id in pairs])


async def report_ids_of(session: AsyncSession, case_id: str) -> list[str]:
    return sorted((await session.execute(
        sa.select(case_reports.c.report_id).where(case_reports.c.case_id == case_id))).scalars())


async def delete_cases(session: AsyncSession, case_ids: Sequence[str]) -> None:
    """Every row referral keeps of the cases: the case, its referrals, their steps and
    timers, its reports. (Notes sealed under the case's scope are erased with its key.)"""
    ids = list(case_ids)
    if not ids:
        return
    of_cases = sa.select(referrals.c.referral_id).where(referrals.c.case_id.in_(ids)).scalar_subquery()
    await session.execute(sa.delete(history).where(history.c.referral_id.in_(of_cases)))
    await session.execute(sa.delete(timers).where(timers.c.referral_id.in_(of_cases)))
    await session.execute(sa.delete(referrals).where(referrals.c.case_id.in_(ids)))
    await session.execute(sa.delete(case_reports).where(case_reports.c.case_id.in_(ids)))
    await session.execute(sa.delete(cases).where(cases.c.case_id.in_(ids)))
