"""Audit's SQL for the person's rights: who leads and who takes part in each case (from
case.opened and referral.requested, so the trail tells the lead's officer from anyone else
by the one access rule), and the case's entries as auditors see them, for the export."""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.adapters.tables import audit_entries, metadata

# case id -> the lead and the participants (the lead, the informed, those referred to).
case_sides = sa.Table(
    "case_sides", metadata,
    sa.Column("case_id", sa.Text, primary_key=True),
    sa.Column("lead", sa.Text, nullable=False),
    sa.Column("participants", sa.JSON, nullable=False),
)


async def case_opened(session: AsyncSession, case_id: str, lead: str, informed: list[str]) -> None:
    await session.execute(pg_insert(case_sides).values(
        case_id=case_id, lead=lead, participants=list(dict.fromkeys([lead, *informed]))).on_conflict_do_nothing())


async def referred_to(session: AsyncSession, case_id: str, institution: str) -> None:
    """``institution`` takes part in the case from its referral on (once)."""
    row = (await session.execute(sa.select(case_sides).where(case_sides.c.case_id == case_id)
                                 .with_for_update())).first()
    if row is not None and institution not in row.participants:
        await session.execute(sa.update(case_sides).where(case_sides.c.case_id == case_id)
                              .values(participants=[*row.participants, institution]))


async def sides_of(session: AsyncSession, case_id: str) -> tuple[str | None, list[str]]:
    row = (await session.execute(sa.select(case_sides).where(case_sides.c.case_id == case_id))).first()
    return (row.lead, list(row.participants)) if row is not None else (None, [])


async def entries_of(session: AsyncSession, case_id: str) -> Sequence[sa.Row]:
    """The case's entries: what an auditor's search shows, without the recorded bytes (which
    only a break-glass opens); the leaf hash lets the person's adviser check inclusion."""
    return (await session.execute(
        sa.select(audit_entries.c.seq, audit_entries.c.recorded_at, audit_entries.c.topic,
                  audit_entries.c.event_id, audit_entries.c.event_type, audit_entries.c.source,
                  audit_entries.c.institution, audit_entries.c.actor, audit_entries.c.leaf_hash)
        .where(audit_entries.c.case_id == case_id).order_by(audit_entries.c.seq))).all()
