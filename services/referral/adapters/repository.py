"""Referral's SQL for cases and referrals: what the HTTP reads and the use cases look up,
in one place, on the caller's session (the caller owns the transaction)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.control_characters import has_control_characters
from runtime.restrictions import RESTRICTED_CASES
from services.referral.adapters.tables import cases, history, referrals, services, timers
from services.referral.domain.referral import OPEN, TERMINAL
from services.referral.domain.visibility import Sides


def storable(key: str) -> bool:
    """Whether an id could name a row: no id holds a control character (and PostgreSQL's
    text no NUL), so such an id names nothing and is never sent to the database."""
    return not has_control_characters(key)


def sides_of(case: sa.Row) -> Sides:
    return Sides(case.lead, tuple(case.participants), tuple(case.reporters))


async def case_of(session: AsyncSession, case_id: str, *, for_update: bool = False) -> sa.Row | None:
    if not storable(case_id):
        return None
    query = sa.select(cases).where(cases.c.case_id == case_id)
    return (await session.execute(query.with_for_update() if for_update else query)).first()


async def sides_of_case(session: AsyncSession, case_id: str) -> Sides | None:
    case = await case_of(session, case_id)
    return sides_of(case) if case is not None else None


async def referral_of(session: AsyncSession, referral_id: str, *, for_update: bool = False) -> sa.Row | None:
    if not storable(referral_id):
        return None
    query = sa.select(referrals).where(referrals.c.referral_id == referral_id)
    return (await session.execute(query.with_for_update() if for_update else query)).first()


async def steps_of(session: AsyncSession, referral_id: str) -> list[sa.Row]:
    return list((await session.execute(
        sa.select(history).where(history.c.referral_id == referral_id).order_by(history.c.id))).all())


# A referral with the sides of its case, for lists that show each as its reader may see it.
_WITH_CASE = (sa.select(referrals, cases.c.lead.label("case_lead"), cases.c.participants.label("case_participants"),
                        cases.c.reporters.label("case_reporters"))
              .select_from(referrals.outerjoin(cases, cases.c.case_id == referrals.c.case_id)))


def case_sides(row: sa.Row) -> Sides | None:
    """The sides of the case joined to a referral of ``_WITH_CASE`` (None: case unknown)."""
    if row.case_lead is None:
        return None
    return Sides(row.case_lead, tuple(row.case_participants), tuple(row.case_reporters))


async def inbox_of(session: AsyncSession, institution: str | None, *, person: str, owner: str,
                   include_closed: bool, limit: int) -> list[sa.Row]:
    """Referrals to ``institution``, most urgent and oldest first."""
    query = _WITH_CASE.where(referrals.c.to_institution == institution,
                             referrals.c.case_id.not_in(RESTRICTED_CASES))  # GDPR art. 18
    if not include_closed:
        query = query.where(referrals.c.state.in_([s.value for s in OPEN]))
    if owner == "mine":
        query = query.where(referrals.c.owner == person)
    elif owner == "unassigned":
        query = query.where(referrals.c.owner.is_(None))
    return list((await session.execute(
        query.order_by(referrals.c.urgency, referrals.c.requested_at).limit(limit))).all())


async def sent_by(session: AsyncSession, institution: str | None, *, limit: int) -> list[sa.Row]:
    """Referrals ``institution`` made, newest first."""
    return list((await session.execute(
        _WITH_CASE.where(referrals.c.referrer == institution, referrals.c.case_id.not_in(RESTRICTED_CASES))
        .order_by(referrals.c.requested_at.desc()).limit(limit))).all())


async def directory(session: AsyncSession) -> list[sa.RowMapping]:
    """Every service of the directory, as its table holds it."""
    return list((await session.execute(sa.select(services))).mappings())


async def plan_of(session: AsyncSession, case_id: str) -> list[sa.Row]:
    return list((await session.execute(
        sa.select(referrals).where(referrals.c.case_id == case_id).order_by(referrals.c.requested_at))).all())


async def open_in_plan(session: AsyncSession, case_id: str) -> int:
    return await session.scalar(
        sa.select(sa.func.count()).select_from(referrals)
        .where(referrals.c.case_id == case_id, referrals.c.state.notin_([s.value for s in TERMINAL]))) or 0


async def set_status(session: AsyncSession, case_id: str, *, closed: bool, at: datetime,
                     lead_manager: str | None) -> None:
    await session.execute(sa.update(cases).where(cases.c.case_id == case_id).values(
        status="closed" if closed else "open", closed_at=at if closed else None, lead_manager=lead_manager))


async def add_participant(session: AsyncSession, case_id: str, institution: str) -> None:
    """``institution`` takes part in the case from now on (once)."""
    case = await case_of(session, case_id, for_update=True)
    if case is not None and institution not in case.participants:
        await session.execute(sa.update(cases).where(cases.c.case_id == case_id)
                              .values(participants=[*case.participants, institution]))


async def add_reporter(session: AsyncSession, case_id: str, institution: str) -> None:
    """Record that ``institution`` reported the case too (once)."""
    case = await case_of(session, case_id, for_update=True)
    if case is not None and institution not in case.reporters:
        await session.execute(sa.update(cases).where(cases.c.case_id == case_id)
                              .values(reporters=[*case.reporters, institution]))


# --- bulk writes of a consumed batch (decision 0033): one statement for many rows ---------

async def open_cases(session: AsyncSession, rows: list[dict]) -> None:
    """Cases as their case.opened tell them; one seen already is left as it is."""
    if rows:
        await session.execute(pg_insert(cases).on_conflict_do_nothing(), rows)


async def open_referrals(session: AsyncSession, rows: list[dict]) -> set[str]:
    """Referrals in one insert; the ids of those that were new (a redelivered one is not)."""
    if not rows:
        return set()
    inserted = await session.execute(pg_insert(referrals).on_conflict_do_nothing()
                                     .returning(referrals.c.referral_id), rows)
    return set(inserted.scalars())


async def add_timers(session: AsyncSession, rows: list[dict]) -> None:
    if rows:
        await session.execute(sa.insert(timers), rows)
