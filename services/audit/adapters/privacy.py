"""Audit's SQL for the person's rights: who leads and who takes part in each case (from
case.opened and referral.requested, so the trail tells the lead's officer from anyone else
by the one access rule), and the case's entries as auditors see them, for the export."""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.adapters.tables import audit_entries, holding, metadata

# case id -> the lead and the participants (the lead, the informed, those referred to).
case_sides = sa.Table(
    "case_sides", metadata,
    sa.Column("case_id", sa.Text, primary_key=True),
    sa.Column("lead", sa.Text, nullable=False),
    sa.Column("participants", sa.JSON, nullable=False),
)


async def cases_opened(session: AsyncSession, opened: Sequence[tuple[str, str, list[str]]]) -> None:
    """(case id, lead, informed) of cases opened, in one insert; a case known already stays."""
    if opened:
        await session.execute(pg_insert(case_sides).on_conflict_do_nothing(), [
            {"case_id": case_id, "lead": lead, "participants": list(dict.fromkeys([lead, *informed]))}
            for case_id, lead, informed in opened])


async def referred_to(session: AsyncSession, referrals: Sequence[tuple[str, str]]) -> None:
    """Each (case id, institution): the institution takes part in the case from its referral
    on (once); the cases read in one query and the changed ones written in one statement."""
    if not referrals:
        return
    rows = (await session.execute(sa.select(case_sides).where(
        case_sides.c.case_id.in_(sorted({case_id for case_id, _ in referrals}))).with_for_update())).all()
    participants = {row.case_id: list(row.participants) for row in rows}
    changed: set[str] = set()
    for case_id, institution in referrals:
        if case_id in participants and institution not in participants[case_id]:
            participants[case_id].append(institution)
            changed.add(case_id)
    if changed:
        await session.execute(
            sa.update(case_sides).where(case_sides.c.case_id == sa.bindparam("id"))
            .values(participants=sa.bindparam("participants")),
            [{"id": case_id, "participants": participants[case_id]} for case_id in sorted(changed)])


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
        .where(holding(case_id=case_id)).order_by(audit_entries.c.seq))).all()
