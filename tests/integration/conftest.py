"""Fixtures the integration tests share: a real SMTP server, and the notification
service's database migrated to head (tests/conftest.py starts PostgreSQL and the broker)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

from tests.integration.helpers import NOTIFICATION_MIGRATIONS, migrated_database
from tests.integration.smtp_peer import Collector, smtp_server


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Collector]]:
    """A real SMTP server on loopback and what it received."""
    with smtp_server() as server:
        yield server


@pytest.fixture
async def notification_database(infrastructure):
    """(engine, sessions) of a fresh notification database."""
    engine, sessions = await migrated_database(infrastructure.database_url, "notification",
                                               NOTIFICATION_MIGRATIONS)
    yield engine, sessions
    await engine.dispose()
