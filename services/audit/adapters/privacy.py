"""Audit's SQL for the person's rights: which institution leads each case (from
case.opened on punte.cases, so the trail can tell the lead's officer from anyone else),
and the case's entries as auditors see them, for the person's export."""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.adapters.tables import audit_entries, metadata

# case id -> the lead institution, as intake opened the case.
case_leads = sa.Table(
    "case_leads", metadata,
    sa.Column("case_id", sa.Text, primary_key=True),
    sa.Column("lead", sa.Text, nullable=False),
)


async def remember_lead(session: AsyncSession, case_id: str, lead: str) -> None:
    await session.execute(pg_insert(case_leads).values(case_id=case_id, lead=lead).on_conflict_do_nothing())


async def lead_of(session: AsyncSession, case_id: str) -> str | None:
    return await session.scalar(sa.select(case_leads.c.lead).where(case_leads.c.case_id == case_id))


async def entries_of(session: AsyncSession, case_id: str) -> Sequence[sa.Row]:
    """The case's entries: what an auditor's search shows, without the recorded bytes (which
    only a break-glass opens); the leaf hash lets the person's adviser check inclusion."""
    return (await session.execute(
        sa.select(audit_entries.c.seq, audit_entries.c.recorded_at, audit_entries.c.topic,
                  audit_entries.c.event_id, audit_entries.c.event_type, audit_entries.c.source,
                  audit_entries.c.institution, audit_entries.c.actor, audit_entries.c.leaf_hash)
        .where(audit_entries.c.case_id == case_id).order_by(audit_entries.c.seq))).all()
