"""The service's own PostgreSQL database: creation, engine and sessions (SQLAlchemy 2
async over asyncpg)."""
from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def connect_arguments(url: str, database: str | None = None) -> dict[str, Any]:
    """What asyncpg.connect needs to reach ``url`` (or another ``database`` on its server)
    as the engine does: SQLAlchemy's own translation of the URL, so options such as
    ``?ssl=require`` mean the same to a plain driver connection."""
    parsed = make_url(url)
    if database is not None:
        parsed = parsed.set(database=database)
    _, arguments = PGDialect_asyncpg().create_connect_args(parsed)
    return arguments


async def connect(url: str, database: str | None = None, **options: Any) -> asyncpg.Connection:
    """A plain asyncpg connection to ``url`` (``options``: asyncpg.connect's, e.g. timeout)."""
    return await asyncpg.connect(**connect_arguments(url, database), **options)


async def ensure_database(url: str) -> None:
    """Create the database named in ``url`` when the server does not have it yet."""
    name = make_url(url).database
    conn = await connect(url, database="postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.DuplicateDatabaseError:
                pass  # another replica created it first
    finally:
        await conn.close()


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    # A consumer batch names one savepoint per message (sa_savepoint_<n>); asyncpg prepares
    # each distinct statement, so a small cache churns: 1.7x on per-message appends
    # (bench/audit.py, 2026-11-22). Intake, referral and notification take that path; the
    # audit's batch handler does not, and there the size makes no difference.
    # hide_parameters: a failed statement's text never carries its values (CNPs, names).
    return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True,
                               hide_parameters=True,
                               connect_args={"prepared_statement_cache_size": 2500})


def make_sessions(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
