"""The auditors' API: search the trail, and check that it is whole."""
from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import datetime

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.tokens import Principal, require_role
from services.audit.adapters.tables import audit_entries
from services.audit.domain.chain import Verifier

router = APIRouter(tags=["audit"])
VERIFY_PAGE = 5000


class Entry(BaseModel):
    seq: int
    topic: str
    partition: int
    offset: int
    event_id: str | None
    event_type: str | None
    source: str | None
    case_id: str | None
    institution: str | None
    recorded_at: datetime
    entry_base64: str  # the exact bytes that were hashed
    hash: str  # hex


class Entries(BaseModel):
    entries: list[Entry]
    limit: int
    offset: int


class Verification(BaseModel):
    verified: bool
    entries: int
    head: str
    first_bad: int | None


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.runtime.sessions() as session:
        yield session


@router.get("/entries", response_model=Entries)
async def search(
    case_id: str | None = None, event_type: str | None = None, institution: str | None = None,
    topic: str | None = None, since: datetime | None = None, until: datetime | None = None,
    limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0),
    principal: Principal = Depends(require_role("auditor")),
    session: AsyncSession = Depends(_session),
) -> Entries:
    c = audit_entries.c
    filters = [column == value for column, value in (
        (c.case_id, case_id), (c.event_type, event_type), (c.institution, institution),
        (c.topic, topic)) if value is not None]
    if since is not None:
        filters.append(c.recorded_at >= since)
    if until is not None:
        filters.append(c.recorded_at < until)
    rows = (await session.execute(
        sa.select(audit_entries).where(*filters).order_by(c.seq).limit(limit).offset(offset)
    )).mappings()
    return Entries(limit=limit, offset=offset, entries=[Entry(
        **{k: v for k, v in row.items() if k not in ("entry", "hash")},
        entry_base64=base64.b64encode(row["entry"]).decode("ascii"), hash=row["hash"].hex(),
    ) for row in rows])


@router.get("/verify", response_model=Verification)
async def verify(
    principal: Principal = Depends(require_role("auditor", "operator")),
    session: AsyncSession = Depends(_session),
) -> Verification:
    """Recompute the whole chain from the stored bytes, a page at a time."""
    c = audit_entries.c
    verifier = Verifier()
    after = 0
    while True:
        page = (await session.execute(
            sa.select(c.seq, c.entry, c.hash).where(c.seq > after).order_by(c.seq).limit(VERIFY_PAGE)
        )).all()
        for seq, entry, stored_hash in page:
            verifier.feed(seq, entry, stored_hash)
        if len(page) < VERIFY_PAGE:
            break
        after = page[-1].seq
    result = verifier.result()
    return Verification(verified=result.verified, entries=result.entries, head=result.head,
                        first_bad=result.first_bad)
