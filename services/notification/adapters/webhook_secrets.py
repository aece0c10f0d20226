"""Each institution's webhook secret (Standard Webhooks' symmetric scheme, "v1"): made by
the network, shown once to whoever asked for it, kept only sealed under the data key of
scope ``webhook:<institution>`` (runtime.data_keys), so a copy of the database alone
does not give it away. Making one again replaces the old one at once (rotation)."""
from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.data_keys import DataKeys
from services.notification.adapters.tables import metadata

PREFIX = "whsec_"  # how Standard Webhooks' verifiers recognise a secret
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes
_CONTEXT = b"webhook-secret"

webhook_secrets = sa.Table(
    "webhook_secrets", metadata,
    sa.Column("institution", sa.Text, primary_key=True),
    sa.Column("sealed", sa.LargeBinary, nullable=False),  # the raw key, sealed (never in clear)
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
_t = webhook_secrets


def scope_of(institution: str) -> str:
    return f"webhook:{institution}"


def text_of(key: bytes) -> str:
    """The secret as a Standard Webhooks verifier takes it: ``whsec_`` and base64."""
    return PREFIX + base64.b64encode(key).decode()


async def issue(session: AsyncSession, data_keys: DataKeys, institution: str, now: datetime) -> str:
    """A new secret for ``institution``, replacing any earlier one; returned once, as text."""
    key = secrets.token_bytes(SECRET_BYTES)
    sealed = await data_keys.seal(session, scope_of(institution), key, _CONTEXT, now)
    statement = insert(_t).values(institution=institution, sealed=sealed, created_at=now)
    await session.execute(statement.on_conflict_do_update(
        index_elements=["institution"], set_={"sealed": statement.excluded.sealed, "created_at": now}))
    return text_of(key)


async def keys_of(session: AsyncSession, data_keys: DataKeys, institutions: Iterable[str]) -> dict[str, bytes]:
    """The raw secret of each of ``institutions`` that has one (HMAC keys)."""
    wanted = sorted(set(institutions))
    if not wanted:
        return {}
    rows = (await session.execute(sa.select(_t).where(_t.c.institution.in_(wanted)))).all()
    if not rows:
        return {}
    scopes = await data_keys.existing(session, [scope_of(r.institution) for r in rows])
    return {r.institution: DataKeys.open_with(scopes[scope_of(r.institution)], scope_of(r.institution),
                                              bytes(r.sealed), _CONTEXT)
            for r in rows}


async def created_at(session: AsyncSession, institution: str) -> datetime | None:
    """When ``institution``'s secret was made; None when it has none."""
    return await session.scalar(sa.select(_t.c.created_at).where(_t.c.institution == institution))


async def without_secret(session: AsyncSession, institutions: Iterable[str]) -> list[str]:
    """Those of ``institutions`` that have no secret yet (their webhooks carry v1a only)."""
    wanted = sorted(set(institutions))
    if not wanted:
        return []
    have = set((await session.execute(sa.select(_t.c.institution).where(_t.c.institution.in_(wanted)))).scalars())
    return [i for i in wanted if i not in have]
