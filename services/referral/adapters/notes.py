"""Notes on referrals, kept in the case file: each note sealed under its case's data key
(scope ``case:<case_id>``, runtime.data_keys), so erasing the case's key erases every note
of the case, and the table holds no free text in clear. Events and notifications name a
note by its id only; referral's API opens it for readers with a full view."""
from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.reference import ReferralReason
from runtime.data_keys import DataKeys, Erased
from services.referral.adapters.tables import history, notes, referrals


def scope_of(case_id: str) -> str:
    return f"case:{case_id}"


def _context(note_id: str, referral_id: str) -> bytes:
    # Binds the sealed text to its row: a note copied onto another referral does not open.
    return f"referral-note|{note_id}|{referral_id}".encode()


async def add(session: AsyncSession, data_keys: DataKeys, *, referral_id: str, case_id: str, command: str,
              author_institution: str | None, author_person: str | None, text: str, now: datetime,
              note_id: str | None = None) -> str:
    """Seal ``text`` into the case file; the new note's id (``note_id``, derived from the
    step's cause, or a random one). ``Erased`` when the case was erased."""
    note_id = note_id or f"note-{uuid.uuid4().hex[:20]}"
    sealed = await data_keys.seal(session, scope_of(case_id), text.encode(), _context(note_id, referral_id), now)
    await session.execute(sa.insert(notes).values(
        note_id=note_id, referral_id=referral_id, case_id=case_id, at=now, command=command,
        author_institution=author_institution, author_person=author_person, sealed=sealed))
    return note_id


async def of_referral(session: AsyncSession, referral_id: str) -> list[sa.Row]:
    return list((await session.execute(
        sa.select(notes).where(notes.c.referral_id == referral_id).order_by(notes.c.at, notes.c.note_id))).all())


async def opened(session: AsyncSession, data_keys: DataKeys, case_id: str,
                 rows: Sequence[sa.Row]) -> dict[str, str | None]:
    """Each note's text; None for all of them once the case's key was erased."""
    if not rows:
        return {}
    scope = scope_of(case_id)
    try:
        key = (await data_keys.existing(session, [scope])).get(scope)
    except Erased:
        return {row.note_id: None for row in rows}
    if key is None:
        return {row.note_id: None for row in rows}
    return {row.note_id: DataKeys.open_with(key, scope, bytes(row.sealed),
                                            _context(row.note_id, row.referral_id)).decode()
            for row in rows}


_CODED = re.compile(r"^([A-Za-z_-]+): (.*)$", re.DOTALL)


async def seal_legacy(session: AsyncSession, data_keys: DataKeys, reasons: Mapping[str, ReferralReason],
                      now: datetime) -> int:
    """Steps recorded before notes were sealed: their note, and a reason that was free text
    ("code: details" from the web inbox, or anything else), become a sealed note; the reason
    becomes its code (or ``other``). Idempotent; how many steps were changed."""
    known = set(reasons)
    rows = (await session.execute(
        sa.select(history, referrals.c.case_id).join(referrals, referrals.c.referral_id == history.c.referral_id)
        .where(sa.or_(history.c.note.is_not(None),
                      sa.and_(history.c.reason.is_not(None), history.c.reason.notin_(known))))
        .with_for_update(of=history))).all()
    for row in rows:
        reason, texts = row.reason, []
        if reason is not None and reason not in known:
            coded = _CODED.match(reason)
            if coded and coded.group(1) in known:
                reason, detail = coded.group(1), coded.group(2).strip()
            else:
                reason, detail = "other", reason
            if detail:
                texts.append(detail)
        if row.note:
            texts.append(row.note)
        note_id = row.note_id
        if texts and note_id is None:
            note_id = await add(session, data_keys, referral_id=row.referral_id, case_id=row.case_id,
                                command=row.command, author_institution=row.actor_institution,
                                author_person=row.actor_person, text="\n\n".join(texts), now=row.at or now)
        await session.execute(sa.update(history).where(history.c.id == row.id)
                              .values(reason=reason, note=None, note_id=note_id))
    return len(rows)
