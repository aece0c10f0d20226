"""People's own choice of channels and digest (set in the inbox, within their
institution's limits)."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.db import any_of
from services.notification.adapters.tables import preferences as _t
from services.notification.domain.recipients import Preference


async def of(session: AsyncSession, people: Iterable[str]) -> dict[str, Preference]:
    """The preferences those of ``people`` who set their own have."""
    rows = (await session.execute(sa.select(_t).where(any_of(_t.c.person, people)))).all()
    return {row.person: Preference(channels=row.channels, digest=row.digest) for row in rows}


async def save(session: AsyncSession, person: str, chosen: Preference, now: datetime) -> None:
    values = {"channels": list(chosen.channels), "digest": chosen.digest, "updated_at": now}
    await session.execute(insert(_t).values(person=person, **values)
                          .on_conflict_do_update(index_elements=["person"], set_=values))
