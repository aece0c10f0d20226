"""Intake's queries and writes, one function per question the handler asks."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.db import any_of
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
from services.intake.domain.casebook import LOOKALIKES_COMPARED
from services.intake.domain.matching import Described

# Notified with a message key when its answer is recorded (the reports table's trigger,
# migration 0004; LISTENed by the HTTP gateway).
OUTCOME_CHANNEL = "punte_outcome"


async def open_cases_of_children(session: AsyncSession, child_refs: Iterable[str]) -> Sequence[sa.Row]:
    """The open cases of these children (a batch's, and their siblings'), locked for a merge;
    in case id order, so that two batches lock what they share in the same order."""
    return (await session.execute(
        sa.select(cases.c.case_id, cases.c.child_ref, cases.c.county, cases.c.uat_siruta, cases.c.birth_year,
                  cases.c.categories, cases.c.urgency, cases.c.lead, cases.c.informed, cases.c.opened_at)
        .where(any_of(cases.c.child_ref, sorted(set(child_refs))), cases.c.status == "open")
        .order_by(cases.c.case_id).with_for_update()
    )).all()


async def households_of(session: AsyncSession, child_refs: Iterable[str]) -> Sequence[sa.Row]:
    """Every child known to share a household with one of these, from earlier reports."""
    return (await session.execute(
        sa.select(household_links.c.child_ref, household_links.c.sibling_ref)
        .where(any_of(household_links.c.child_ref, sorted(set(child_refs))))
    )).all()


def _current_identities() -> sa.Subquery:
    """The latest identity version of every child."""
    return (sa.select(identities).ext(distinct_on(identities.c.child_ref))
            .order_by(identities.c.child_ref, identities.c.version.desc()).subquery("current_identities"))


async def lookalikes(session: AsyncSession, described: Iterable[tuple[Described, str]],
                     limit: int = LOOKALIKES_COMPARED) -> Sequence[sa.Row]:
    """Open cases of other children of about the same age and place as any of ``described``
    (a child, and its pseudonym), with their current sealed identity: the only ones worth
    decrypting for a name comparison. One query for a batch; the caller keeps, for each
    child, the rows that fit it (Casebook.lookalikes)."""
    wanted = []
    for child, child_ref in described:
        fits = [cases.c.county == child.county, cases.c.child_ref != child_ref]
        if child.uat_siruta is not None:
            fits.append(sa.or_(cases.c.uat_siruta == child.uat_siruta, cases.c.uat_siruta.is_(None)))
        if child.birth_year is not None:
            fits.append(cases.c.birth_year.between(child.birth_year - 1, child.birth_year + 1))
        wanted.append(sa.and_(*fits))
    if not wanted:
        return []
    current = _current_identities()
    return (await session.execute(
        sa.select(cases.c.case_id, cases.c.child_ref, cases.c.county, cases.c.uat_siruta, cases.c.birth_year,
                  cases.c.categories, cases.c.urgency, cases.c.lead, cases.c.informed, cases.c.opened_at,
                  current.c.key_id, current.c.nonce, current.c.ciphertext)
        .join(current, current.c.child_ref == cases.c.child_ref)
        .where(cases.c.status == "open", sa.or_(*wanted))
        .limit(limit * len(wanted))
    )).all()


async def add_identity_version(session: AsyncSession, child_ref: str, sealed: Sealed, *, report_id: str,
                               reporter: str, now: datetime) -> None:
    """Who the child is as this report tells it: a new version, earlier ones kept as they
    were (a report never overwrites another's account; a rectification adds a version)."""
    await add_identity_versions(session, [identity_version(child_ref, sealed, report_id=report_id,
                                                           reporter=reporter, now=now)])


def identity_version(child_ref: str, sealed: Sealed, *, report_id: str, reporter: str,
                     now: datetime) -> dict[str, Any]:
    return {"child_ref": child_ref, "report_id": report_id, "reporter": reporter, "key_id": sealed.key_id,
            "nonce": sealed.nonce, "ciphertext": sealed.ciphertext, "recorded_at": now}


async def add_identity_versions(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """New identity versions (identity_version), in order: the last of a child is current."""
    if rows:
        await session.execute(sa.insert(identities), rows)


async def current_identity(session: AsyncSession, child_ref: str) -> sa.Row | None:
    """The child's latest identity version, sealed."""
    return (await session.execute(
        sa.select(identities).where(identities.c.child_ref == child_ref)
        .order_by(identities.c.version.desc()).limit(1)
    )).first()


# A batch's writes (decision 0033): one statement per table, whatever the batch's size.

async def open_cases(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(sa.insert(cases), [{"status": "open", **row} for row in rows])


async def add_reports_to_cases(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Which case holds each report (case_id, report_id, reporter, categories, received_at)."""
    if rows:
        await session.execute(sa.insert(case_reports), rows)


async def update_cases(session: AsyncSession, changed: Iterable[tuple[str, list[str], str]]) -> None:
    """Categories and urgency of cases reports joined: (case_id, categories, urgency)."""
    rows = [{"id": case_id, "categories": categories, "urgency": urgency} for case_id, categories, urgency in changed]
    if rows:
        await session.execute(
            sa.update(cases).where(cases.c.case_id == sa.bindparam("id"))
            .values(categories=sa.bindparam("categories"), urgency=sa.bindparam("urgency"))
            .execution_options(synchronize_session=False), rows)


async def link_households(session: AsyncSession, pairs: Iterable[tuple[str, str]]) -> None:
    """Children known to share a household, both ways; a known pair stays as it was."""
    rows = [{"child_ref": a, "sibling_ref": b}
            for a, b in sorted({pair for x, y in pairs if x != y for pair in ((x, y), (y, x))})]
    if rows:
        await session.execute(pg_insert(household_links).on_conflict_do_nothing(), rows)


async def flag_duplicates(session: AsyncSession, scored: Iterable[tuple[str, str, float]]) -> None:
    """Possible duplicates for a person to decide: (case_id, candidate_case_id, score)."""
    rows = [{"case_id": case_id, "candidate_case_id": other, "score": score, "status": "pending"}
            for case_id, other, score in scored]
    if rows:
        await session.execute(sa.insert(duplicate_candidates), rows)


async def record_answers(session: AsyncSession, answers: list[dict[str, Any]], replaying: bool = False) -> None:
    """Keep the answers to messages (a replay's replaces PROCESSING_FAILED: keep_answer); on
    commit, the gateway's requests waiting for them wake (the table's trigger notifies
    OUTCOME_CHANNEL: migration 0004)."""
    if replaying:
        for values in answers:
            await keep_answer(session, reports, values, replaying)
    elif answers:
        await session.execute(sa.insert(reports), answers)


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
