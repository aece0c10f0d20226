"""SQL for the values entries commit to: sealed rows, which case each report joined, and
what became of each entry's value (sealed, erased, none)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from runtime import db
from runtime.data_keys import DataKeys
from runtime.db import any_of
from services.audit.adapters.tables import audit_entries, audit_report_cases, audit_sealed_values, holding_any


async def store(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await db.copy_rows(session, audit_sealed_values, rows)


async def links(session: AsyncSession, report_ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(report_ids))
    if not wanted:
        return {}
    rows = await session.execute(sa.select(audit_report_cases.c.report_id, audit_report_cases.c.case_id)
                                 .where(any_of(audit_report_cases.c.report_id, wanted)))
    return {r.report_id: r.case_id for r in rows}


async def reports_of(session: AsyncSession, case_id: str) -> list[str]:
    """The reports the trail knows joined ``case_id``."""
    return list((await session.execute(sa.select(audit_report_cases.c.report_id)
                                        .where(audit_report_cases.c.case_id == case_id))).scalars())


async def add_links(session: AsyncSession, found: dict[str, str]) -> None:
    """A report's first case is its case (a later event naming another does not move it)."""
    await session.execute(pg_insert(audit_report_cases).values(
        [{"report_id": r, "case_id": c} for r, c in found.items()]).on_conflict_do_nothing())


async def delete_scopes(session: AsyncSession, scopes: Sequence[str]) -> None:
    """Delete the sealed values of erased scopes (their keys are destroyed as well)."""
    await session.execute(sa.delete(audit_sealed_values).where(audit_sealed_values.c.seq.in_(
        sa.select(audit_entries.c.seq).where(holding_any("value_scope", scopes)))))


@dataclass(frozen=True)
class ValueState:
    """What became of an entry's value, as auditors are told (never the value)."""

    state: str  # sealed | erased | none (a tombstone) | in-v1-leaf (log version 1)
    scope: str | None = None
    erased_at: datetime | None = None
    erased_rule: str | None = None

    def public(self) -> dict[str, Any]:
        return {"state": self.state, "scope": self.scope,
                "erased_at": self.erased_at.isoformat() if self.erased_at else None,
                "erased_rule": self.erased_rule}


async def states(session: AsyncSession, rows: Sequence[Any]) -> dict[int, ValueState]:
    """The value state of each entry row (seq, value_scope, entry), in two queries."""
    scopes = {r.value_scope for r in rows if r.value_scope}
    erased = await DataKeys.erased(session, scopes) if scopes else {}
    seqs = [r.seq for r in rows if r.value_scope]
    kept: set[int] = set()
    for start in range(0, len(seqs), 10000):
        kept |= set((await session.execute(sa.select(audit_sealed_values.c.seq).where(
            audit_sealed_values.c.seq.in_(seqs[start:start + 10000])))).scalars())
    found: dict[int, ValueState] = {}
    for row in rows:
        if row.value_scope is None:
            found[row.seq] = ValueState("none")  # a tombstone, or a version 1 entry (see handlers)
        elif row.value_scope in erased:
            at, rule = erased[row.value_scope]
            found[row.seq] = ValueState("erased", row.value_scope, at, rule)
        elif row.seq in kept:
            found[row.seq] = ValueState("sealed", row.value_scope)
        else:
            found[row.seq] = ValueState("missing", row.value_scope)
    return found


async def sealed(session: AsyncSession, seq: int) -> bytes | None:
    return await session.scalar(sa.select(audit_sealed_values.c.sealed).where(audit_sealed_values.c.seq == seq))
