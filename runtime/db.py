"""The service's own PostgreSQL database: creation, engine and sessions (SQLAlchemy 2
async over asyncpg)."""
from __future__ import annotations

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


async def ensure_database(url: str) -> None:
    """Create the database named in ``url`` when the server does not have it yet."""
    parsed = make_url(url)
    name = parsed.database
    admin = parsed.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
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
    return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True,
                               connect_args={"prepared_statement_cache_size": 2500})


def make_sessions(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
