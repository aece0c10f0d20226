"""Rows written with PostgreSQL's COPY (asyncpg's binary copy) in the session's own
transaction: the audit writes every message of the network, and COPY took half the time of
an executemany insert of the same rows (bench/README.md)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession


async def copy_rows(session: AsyncSession, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``rows`` (dicts with the same keys, column names of ``table``) into ``table``."""
    if not rows:
        return
    columns = list(rows[0])
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    await raw.copy_records_to_table(table.name, columns=columns,
                                    records=[tuple(row[c] for c in columns) for row in rows])
