"""Intake's queries and writes, one function per question the handler asks."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.ingress import keep_answer
from services.intake.adapters.tables import (
    case_reports,
    cases,
    duplicate_candidates,
    household_links,
    identities,
    reports,
)
from services.intake.adapters.vault import IdentityVault, Sealed

# Notified with a message key when its answer is recorded (the reports table's trigger,
# migration 0004; LISTENed by the HTTP gateway).
OUTCOME_CHANNEL = "punte_outcome"


async def open_cases_of(session: AsyncSession, child_ref: str) -> Sequence[sa.Row]:
    """The child's open cases, newest first, locked for a merge."""
    return (await session.execute(
        sa.select(cases.c.case_id, cases.c.categories, cases.c.urgency, cases.c.lead, cases.c.informed)
        .where(cases.c.child_ref == child_ref, cases.c.status == "open")
        .order_by(cases.c.opened_at.desc()).with_for_update()
    )).all()


async def open_cases_of_siblings(session: AsyncSession, child_ref: str) -> list[str]:
    """The open cases of every child known to share the household, from this and earlier
    reports, oldest first."""
    return list((await session.execute(
        sa.select(cases.c.case_id)
        .join(household_links, household_links.c.sibling_ref == cases.c.child_ref)
        .where(household_links.c.child_ref == child_ref, cases.c.status == "open")
        .order_by(cases.c.opened_at)
    )).scalars())


def _current_identities() -> sa.Subquery:
    """The latest identity version of every child."""
    return (sa.select(identities).ext(distinct_on(identities.c.child_ref))
            .order_by(identities.c.child_ref, identities.c.version.desc()).subquery("current_identities"))


async def lookalikes(session: AsyncSession, county: str, uat: int | None, birth_year: int | None,
                     other_than: str) -> Sequence[sa.Row]:
    """Open cases of other children of about the same age and place, with their current
    sealed identity: the only ones worth decrypting for a name comparison."""
    current = _current_identities()
    query = (
        sa.select(cases.c.case_id, cases.c.child_ref, cases.c.birth_year, cases.c.uat_siruta,
                  cases.c.county, cases.c.lead, cases.c.informed,
                  current.c.key_id, current.c.nonce, current.c.ciphertext)
        .join(current, current.c.child_ref == cases.c.child_ref)
        .where(cases.c.status == "open", cases.c.county == county, cases.c.child_ref != other_than)
    )
    if uat is not None:
        query = query.where(sa.or_(cases.c.uat_siruta == uat, cases.c.uat_siruta.is_(None)))
    if birth_year is not None:
        query = query.where(cases.c.birth_year.between(birth_year - 1, birth_year + 1))
    return (await session.execute(query.limit(200))).all()


async def add_identity_version(session: AsyncSession, child_ref: str, sealed: Sealed, *, report_id: str,
                               reporter: str, now: datetime) -> None:
    """Who the child is as this report tells it: a new version, earlier ones kept as they
    were (a report never overwrites another's account; a rectification adds a version)."""
    await session.execute(sa.insert(identities).values(
        child_ref=child_ref, report_id=report_id, reporter=reporter, key_id=sealed.key_id,
        nonce=sealed.nonce, ciphertext=sealed.ciphertext, recorded_at=now))


async def current_identity(session: AsyncSession, child_ref: str) -> sa.Row | None:
    """The child's latest identity version, sealed."""
    return (await session.execute(
        sa.select(identities).where(identities.c.child_ref == child_ref)
        .order_by(identities.c.version.desc()).limit(1)
    )).first()


async def open_case(session: AsyncSession, **values: Any) -> None:
    await session.execute(sa.insert(cases).values(status="open", **values))


async def add_report_to_case(session: AsyncSession, case_id: str, report_id: str, reporter: str,
                             categories: list[str], received_at: datetime) -> None:
    await session.execute(sa.insert(case_reports).values(
        case_id=case_id, report_id=report_id, reporter=reporter, categories=categories,
        received_at=received_at))


async def update_case(session: AsyncSession, case_id: str, categories: list[str], urgency: str) -> None:
    await session.execute(sa.update(cases).where(cases.c.case_id == case_id)
                          .values(categories=categories, urgency=urgency))


async def link_household(session: AsyncSession, child_ref: str, sibling_refs: Iterable[str]) -> None:
    rows = [{"child_ref": a, "sibling_ref": b} for s in sibling_refs if s != child_ref
            for a, b in ((child_ref, s), (s, child_ref))]
    if rows:
        await session.execute(pg_insert(household_links).values(rows).on_conflict_do_nothing())


async def flag_duplicates(session: AsyncSession, case_id: str, scored: dict[str, float]) -> None:
    if scored:
        await session.execute(sa.insert(duplicate_candidates).values([
            {"case_id": case_id, "candidate_case_id": other, "score": score, "status": "pending"}
            for other, score in scored.items()
        ]))


async def record_answer(session: AsyncSession, replaying: bool = False, **values: Any) -> None:
    """Keep the answer to a message (a replay's replaces PROCESSING_FAILED: keep_answer); on
    commit, the gateway's requests waiting for it wake (the table's trigger notifies
    OUTCOME_CHANNEL: migration 0004)."""
    await keep_answer(session, reports, values, replaying)


async def answer_to(session: AsyncSession, message_key: str) -> dict[str, Any] | None:
    return (await session.execute(
        sa.select(reports.c.answer).where(reports.c.message_key == message_key)
    )).scalar_one_or_none()


async def reseal_identities(session: AsyncSession, vault: IdentityVault, batch: int = 500) -> int:
    """Re-encrypt, under the vault's current key, every identity sealed with another key;
    run after adding a key in front of PUNTE_IDENTITY_KEYS, then the old key can go."""
    done = 0
    while True:
        rows = (await session.execute(
            sa.select(identities).where(identities.c.key_id != vault.current)
            .limit(batch).with_for_update(skip_locked=True)
        )).all()
        for row in rows:
            sealed = vault.rotate(Sealed(row.key_id, row.nonce, row.ciphertext), row.child_ref)
            await session.execute(sa.update(identities).where(identities.c.version == row.version)
                                  .values(key_id=sealed.key_id, nonce=sealed.nonce,
                                          ciphertext=sealed.ciphertext))
        await session.commit()
        done += len(rows)
        if len(rows) < batch:
            return done
