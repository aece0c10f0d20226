"""Data keys per scope in a service's own database (table ``punte_data_keys``), wrapped by
the service's ``KeyProvider`` (runtime.sealing). A service seals a personal value with
``seal`` and opens it with ``open``; ``erase`` destroys the data keys of some scopes, after
which their values say when and by which rule they were erased."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.db import any_of, as_rows
from runtime.sealing import ConfiguredKeyProvider, KeyProvider, new_data_key, open_sealed, seal
from runtime.settings import Settings

data_keys_table = sa.table(
    "punte_data_keys",
    sa.column("scope", sa.Text), sa.column("kek_id", sa.Text), sa.column("wrapped", sa.LargeBinary),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("erased_at", sa.DateTime(timezone=True)), sa.column("erased_rule", sa.Text),
)


@dataclass(frozen=True)
class Erased(Exception):
    """The scope's data key was destroyed: its values are gone for good."""

    scope: str
    erased_at: datetime
    rule: str | None

    def __str__(self) -> str:
        return f"{self.scope} erased at {self.erased_at.isoformat()} by rule {self.rule}"


class DataKeys:
    """Get-or-create and erase data keys; seal and open values under them."""

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider

    async def keys_for(self, session: AsyncSession, scopes: Iterable[str], now: datetime) -> dict[str, bytes]:
        """The data key of each scope, created where missing (two statements for a whole
        batch). An erased scope raises ``Erased``: nothing new is sealed into it."""
        wanted = sorted(set(scopes))
        found = await self._unwrapped(session, wanted)
        return found | await self._created(session, [s for s in wanted if s not in found], now)

    async def keys_unless_erased(self, session: AsyncSession, scopes: Iterable[str], now: datetime) -> dict[str, bytes]:
        """``keys_for`` the scopes not erased, the erased ones left out: what a batch that
        keeps each value it still may asks, from one read of the scopes' keys (a second
        statement creates the missing ones)."""
        wanted = sorted(set(scopes))
        found, erased = await self._read(session, wanted)
        return found | await self._created(session, [s for s in wanted if s not in found and s not in erased], now)

    async def _created(self, session: AsyncSession, missing: list[str], now: datetime) -> dict[str, bytes]:
        """New data keys for ``missing`` (scopes without one when they were read). A scope a
        concurrent writer created first keeps that writer's key (``Erased`` if it has been
        erased since)."""
        if not missing:
            return {}
        fresh = {scope: new_data_key() for scope in missing}
        wrapped = [self.provider.wrap(key, scope) for scope, key in fresh.items()]
        given = as_rows("fresh", scope=(sa.Text(), missing), kek_id=(sa.Text(), [k for k, _ in wrapped]),
                        wrapped=(sa.LargeBinary(), [w for _, w in wrapped]))
        # One statement text for any number of keys; the keys it created come back, and are
        # used as made (not read and unwrapped again).
        created = set((await session.execute(
            pg_insert(data_keys_table)
            .from_select(["scope", "kek_id", "wrapped", "created_at"],
                         sa.select(given.c.scope, given.c.kek_id, given.c.wrapped,
                                   sa.bindparam("now", now, type_=sa.DateTime(timezone=True))))
            .on_conflict_do_nothing(index_elements=["scope"])
            .returning(data_keys_table.c.scope))).scalars())
        found = {scope: fresh[scope] for scope in created}
        lost = [scope for scope in missing if scope not in created]
        if lost:
            found |= await self._unwrapped(session, lost)
        return found

    async def existing(self, session: AsyncSession, scopes: Iterable[str]) -> dict[str, bytes]:
        """The data keys of scopes that have one (none is created); ``Erased`` if any was erased."""
        return await self._unwrapped(session, sorted(set(scopes)))

    async def _read(self, session: AsyncSession, scopes: list[str]) -> tuple[dict[str, bytes], dict[str, Erased]]:
        """The keys of ``scopes`` that have one, unwrapped, and the erased ones: one statement
        (none for no scopes)."""
        found: dict[str, bytes] = {}
        erased: dict[str, Erased] = {}
        if not scopes:
            return found, erased
        given = as_rows("given", scope=(sa.Text(), scopes))
        for row in (await session.execute(sa.select(data_keys_table).join_from(
                data_keys_table, given, data_keys_table.c.scope == given.c.scope))).all():
            if row.erased_at is not None:
                erased[row.scope] = Erased(row.scope, row.erased_at, row.erased_rule)
            else:
                found[row.scope] = self.provider.unwrap(row.kek_id, row.wrapped, row.scope)
        return found, erased

    async def _unwrapped(self, session: AsyncSession, scopes: list[str]) -> dict[str, bytes]:
        """``_read``'s keys; ``Erased`` if any of ``scopes`` was erased."""
        found, erased = await self._read(session, scopes)
        if erased:
            raise next(iter(erased.values()))
        return found

    async def seal(self, session: AsyncSession, scope: str, plaintext: bytes, context: bytes,
                   now: datetime) -> bytes:
        key = (await self.keys_for(session, [scope], now))[scope]
        return seal(key, plaintext, scope.encode() + b"\x00" + context)

    async def open(self, session: AsyncSession, scope: str, sealed: bytes, context: bytes) -> bytes:
        """The plaintext; ``Erased`` when the scope's key was destroyed, KeyError when the
        scope never had one."""
        keys = await self.existing(session, [scope])
        if scope not in keys:
            raise KeyError(f"no data key for {scope}")
        return open_sealed(keys[scope], sealed, scope.encode() + b"\x00" + context)

    @staticmethod
    def open_with(key: bytes, scope: str, sealed: bytes, context: bytes) -> bytes:
        """``open`` with a key already fetched by ``keys_for``/``existing`` (batches)."""
        return open_sealed(key, sealed, scope.encode() + b"\x00" + context)

    @staticmethod
    def seal_with(key: bytes, scope: str, plaintext: bytes, context: bytes) -> bytes:
        return seal(key, plaintext, scope.encode() + b"\x00" + context)

    @staticmethod
    async def erase(session: AsyncSession, scopes: Iterable[str], rule: str, now: datetime) -> int:
        """Destroy the data keys of ``scopes`` (a row stays, saying when and why); returns
        how many were erased now. Erasing twice changes nothing."""
        scopes = sorted(set(scopes))
        if not scopes:
            return 0
        result = await session.execute(
            sa.update(data_keys_table)
            .where(any_of(data_keys_table.c.scope, scopes), data_keys_table.c.erased_at.is_(None))
            .values(wrapped=None, kek_id=None, erased_at=now, erased_rule=rule))
        return result.rowcount or 0

    @staticmethod
    async def erased(session: AsyncSession, scopes: Iterable[str]) -> dict[str, tuple[datetime, str | None]]:
        """When and by which rule each of ``scopes`` was erased (only the erased ones)."""
        given = as_rows("given", scope=(sa.Text(), sorted(set(scopes))))
        rows = (await session.execute(
            sa.select(data_keys_table.c.scope, data_keys_table.c.erased_at, data_keys_table.c.erased_rule)
            .join_from(data_keys_table, given, data_keys_table.c.scope == given.c.scope)
            .where(data_keys_table.c.erased_at.is_not(None)))).all()
        return {r.scope: (r.erased_at, r.erased_rule) for r in rows}


def from_settings(settings: Settings) -> DataKeys:
    """The service's data keys under the configured KEKs; without usable ones the service
    does not start (fail closed: no personal value is ever kept in clear instead)."""
    try:
        return DataKeys(ConfiguredKeyProvider.from_setting(settings.data_keys))
    except ValueError as exc:
        raise RuntimeError(f"{exc}: give PUNTE_DATA_KEYS as kid:64-hex-digits "
                           "(`punte up` creates them for the embedded network)") from None
