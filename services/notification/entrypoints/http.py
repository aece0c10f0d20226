"""The inbox of an institution's people: list what they were told, mark it read."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import Urgency
from runtime.tokens import Principal, require_role
from services.notification.adapters.tables import inbox_entries

Kind = Literal["referral-requested", "case-informed", "referral-accepted", "report-added",
               "referral-updated", "referral-overdue", "referral-returned"]

router = APIRouter(tags=["inbox"])


class InboxEntry(BaseModel):
    notification_id: str
    institution: str
    case_id: str
    referral_id: str | None
    kind: Kind
    urgency: Urgency
    categories: list[str]
    summary_ro: str
    summary_en: str
    created_at: datetime
    read_at: datetime | None
    do_not_contact: bool = False


class Inbox(BaseModel):
    institution: str
    unread: int
    entries: list[InboxEntry]


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.runtime.sessions() as session:
        yield session


def _institution(principal: Principal) -> str:
    # A person or system without an institution has no inbox (e.g. an auditor).
    if not principal.institution:
        raise HTTPException(403, detail={
            "code": "NO_INSTITUTION",
            "message": "Tokenul nu indică o instituție / the token names no institution"})
    return principal.institution


@router.get("/inbox", response_model=Inbox)
async def list_inbox(
    kind: Kind | None = None, urgency: Urgency | None = None,
    limit: int = Query(50, ge=1, le=200),
    principal: Principal = Depends(require_role()),
    session: AsyncSession = Depends(_session),
) -> Inbox:
    institution = _institution(principal)
    own = inbox_entries.c.institution == institution
    query = sa.select(inbox_entries).where(own)
    if kind is not None:
        query = query.where(inbox_entries.c.kind == kind)
    if urgency is not None:
        query = query.where(inbox_entries.c.urgency == urgency.value)
    rows = (await session.execute(
        query.order_by(inbox_entries.c.created_at.desc(), inbox_entries.c.notification_id)
        .limit(limit)
    )).mappings()
    unread = await session.scalar(sa.select(sa.func.count()).select_from(inbox_entries)
                                  .where(own, inbox_entries.c.read_at.is_(None)))
    return Inbox(institution=institution, unread=unread or 0,
                 entries=[InboxEntry.model_validate(dict(r)) for r in rows])


@router.post("/inbox/{notification_id}/read", response_model=InboxEntry)
async def mark_read(
    notification_id: str,
    principal: Principal = Depends(require_role()),
    session: AsyncSession = Depends(_session),
) -> InboxEntry:
    institution = _institution(principal)
    async with session.begin():
        # Marking twice keeps the first time it was read.
        row = (await session.execute(
            sa.update(inbox_entries)
            .where(inbox_entries.c.notification_id == notification_id,
                   inbox_entries.c.institution == institution)
            .values(read_at=sa.func.coalesce(inbox_entries.c.read_at, datetime.now(timezone.utc)))
            .returning(*inbox_entries.c)
        )).mappings().first()
    if row is None:
        # Another institution's entry is indistinguishable from a missing one.
        raise HTTPException(404, detail={"code": "NOT_FOUND",
                                         "message": "Notificare inexistentă / no such notification"})
    return InboxEntry.model_validate(dict(row))
