"""The service's own PostgreSQL database: creation, engine and sessions (SQLAlchemy 2
async over asyncpg)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from runtime import json_bytes


def connect_arguments(url: str, database: str | None = None) -> dict[str, Any]:
    """What asyncpg.connect needs to reach ``url`` (or another ``database`` on its server)
    as the engine does: SQLAlchemy's own translation of the URL, so options such as
    ``?ssl=require`` mean the same to a plain driver connection."""
    parsed = make_url(url)
    if database is not None:
        parsed = parsed.set(database=database)
    _, arguments = PGDialect_asyncpg().create_connect_args(parsed)
    return arguments


# Every connection of the services commits durably, whatever the server, the database or
# the role says (decision 0020): a setting in the connection's start-up packet overrides
# all of them, so a server tuned for speed cannot make a consumer commit its offset, or a
# relay publish, after a commit PostgreSQL may still forget. "on" also waits for
# synchronous standbys where there are any.
DURABLE_SESSION = {"synchronous_commit": "on"}


def _durable(arguments: dict[str, Any]) -> dict[str, Any]:
    return {**arguments, "server_settings": {**arguments.get("server_settings", {}), **DURABLE_SESSION}}


async def connect(url: str, database: str | None = None, **options: Any) -> asyncpg.Connection:
    """A plain asyncpg connection to ``url`` (``options``: asyncpg.connect's, e.g. timeout)."""
    return await asyncpg.connect(**_durable({**connect_arguments(url, database), **options}))


# What passes when waited for: nothing listens yet, the server is starting, restarting or
# shutting down (57P01-57P03), its connection slots are full, a connection was cut.
_PASSING = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError, asyncpg.CrashShutdownError, asyncpg.TooManyConnectionsError)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps: SQLAlchemy and Alembic wrap the driver's errors)
    says the database is not reachable now, rather than refusing us for good (a wrong
    password, a missing role: those do not pass by waiting)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _PASSING):
            return True
        current = current.__cause__ or current.__context__
    return False


async def ensure_database(url: str) -> None:
    """Create the database named in ``url`` when the server does not have it yet."""
    name = make_url(url).database
    conn = await connect(url, database="postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                # Another replica created it first: after our check (duplicate database) or
                # while we were creating it too (unique violation on pg_database's name).
                pass
    finally:
        await conn.close()


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    # asyncpg prepares each distinct statement (savepoint names, IN lists and multi-row
    # inserts of every length), so a small cache churns: 1.7x on per-message appends
    # (bench/audit.py, 2026-11-22).
    # hide_parameters: a failed statement's text never carries its values (CNPs, names).
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=10, hide_parameters=True,
                                 json_serializer=_json_text,
                                 connect_args={"prepared_statement_cache_size": 2500,
                                               "server_settings": dict(DURABLE_SESSION)})
    sa.event.listen(engine.sync_engine, "checkout", _closed_is_replaced)
    return engine


def _closed_is_replaced(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection the server closed (PostgreSQL restarted, or ended the session)
    is replaced before it is used: asyncpg saw the socket close, so no round trip is needed.
    SQLAlchemy's pre-ping made three on every checkout (BEGIN, an empty query, ROLLBACK):
    3 of an audit batch's 19 round trips, and more of a small transaction's (decision 0047)."""
    if dbapi_connection.driver_connection.is_closed():
        raise sa.exc.DisconnectionError("the server closed the connection")


def _json_text(value: Any) -> str:
    """A JSON column's text (outbox headers, categories): runtime.json_bytes, not json.dumps."""
    return json_bytes.compact(value).decode()


def any_of(column: sa.ColumnElement[Any], values: Iterable[Any]) -> sa.ColumnElement[bool]:
    """``column = ANY(:values)``, the values as one array parameter: the same statement text
    for any number of values, where ``in_`` renders a parameter per value (a new statement
    for every batch size, rendered again in Python at each execution)."""
    return column == sa.any_(sa.bindparam(None, list(values), type_=ARRAY(column.type)))


def as_rows(name: str, **columns: tuple[sa.types.TypeEngine[Any], Iterable[Any]]) -> sa.TableValuedAlias:
    """``unnest(:a, :b, ...) AS name(a, b, ...)``: a batch's values as rows, one array
    parameter per column (``column=(type, values)``, values in step), to join a table on or
    update it from. The same statement text for any number of rows; and a join stays an index
    or hash lookup in any plan, where ``any_of`` in a prepared statement's generic plan over a
    table not analyzed yet compares every row scanned with every value (250 values over 1 250
    rows: 4.3 ms, joined 0.5; bench/README.md, step 32)."""
    arrays = [sa.bindparam(None, list(values), type_=ARRAY(type_)) for type_, values in columns.values()]
    return sa.func.unnest(*arrays).table_valued(*columns).render_derived(name=name)


async def copy_rows(session: AsyncSession, table: sa.TableClause, rows: Sequence[Mapping[str, Any]]) -> None:
    """``rows`` (dicts with the same keys, column names of ``table``) into ``table`` with
    PostgreSQL's COPY (asyncpg's binary copy), in the session's own transaction; columns not
    given take their defaults. A batch's inbox keys and the audit's entries: COPY takes half
    an executemany insert's time, and SQLAlchemy renders nothing (bench/README.md)."""
    if not rows:
        return
    columns = list(rows[0])
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    await raw.copy_records_to_table(table.name, columns=columns,
                                    records=[tuple(row[c] for c in columns) for row in rows])


def make_sessions(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
