"""Which database errors a starting service waits out, and which stop it at once."""
from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import OperationalError

from runtime.db import unreachable


def _wrapped(error: Exception) -> Exception:
    """The driver's error as SQLAlchemy (and Alembic through it) raises it."""
    try:
        try:
            raise error
        except Exception as exc:
            raise OperationalError("SELECT 1", None, exc) from exc
    except OperationalError as wrapped:
        return wrapped


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(111, "Connect call failed"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    TimeoutError(),
])
def test_a_database_down_starting_or_full_is_waited_for(error: Exception):
    assert unreachable(error) and unreachable(_wrapped(error))


@pytest.mark.parametrize("error", [
    asyncpg.InvalidPasswordError("password authentication failed"),
    asyncpg.InvalidCatalogNameError("database does not exist"),
    ValueError("a bad URL"),
])
def test_a_database_that_refuses_us_for_good_stops_the_start(error: Exception):
    assert not unreachable(error) and not unreachable(_wrapped(error))
