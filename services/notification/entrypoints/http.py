"""The inbox of an institution's people: list what they were told, mark it read."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import Urgency
from runtime.tokens import Principal, require_role
from services.notification.adapters import alerting
from services.notification.adapters.tables import inbox_entries

Kind = Literal["referral-requested", "case-informed", "referral-accepted", "report-added",
               "referral-updated", "referral-overdue", "referral-returned", "case-accessed"]

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
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


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


@router.post("/inbox/{notification_id}/ack", response_model=InboxEntry,
             summary="Confirm că am preluat / acknowledge (stops a P0 alert's re-sending and escalation)")
async def acknowledge(
    notification_id: str,
    principal: Principal = Depends(require_role()),
    session: AsyncSession = Depends(_session),
) -> InboxEntry:
    """Anyone of the institution may acknowledge; the first acknowledgement is kept (who
    and when), and it counts as reading the entry too."""
    institution = _institution(principal)
    async with session.begin():
        row = await alerting.acknowledge(session, notification_id, institution, principal.subject,
                                         datetime.now(timezone.utc))
    if row is None:
        raise HTTPException(404, detail={"code": "NOT_FOUND",
                                         "message": "Notificare inexistentă / no such notification"})
    return InboxEntry.model_validate(dict(row))


STREAM_POLL_SECONDS = 1.0


@router.get("/inbox/stream", summary="Inboxul în timp real / the inbox, live (server-sent events)")
async def stream(request: Request, principal: Principal = Depends(require_role())) -> StreamingResponse:
    """New entries of my institution's inbox as server-sent events (`event: entry`, the
    entry as JSON), from the moment of connecting; a comment line every poll keeps proxies
    from closing an idle stream."""
    institution = _institution(principal)
    sessions = request.app.state.runtime.sessions

    async def events() -> AsyncIterator[str]:
        # Entries are stamped when their event was taken up, a moment before they commit:
        # look a little back, and never send one twice.
        since = datetime.now(timezone.utc) - timedelta(seconds=5)
        seen: set[str] = set()
        yield ": connected\n\n"
        while not await request.is_disconnected():
            async with sessions() as session:
                rows = (await session.execute(
                    sa.select(inbox_entries).where(inbox_entries.c.institution == institution,
                                                   inbox_entries.c.created_at >= since)
                    .order_by(inbox_entries.c.created_at))).mappings().all()
            for row in rows:
                if row["notification_id"] in seen:
                    continue
                seen.add(row["notification_id"])
                entry = InboxEntry.model_validate(dict(row))
                yield f"event: entry\nid: {entry.notification_id}\ndata: {entry.model_dump_json()}\n\n"
            yield ": keep-alive\n\n"
            await asyncio.sleep(STREAM_POLL_SECONDS)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
