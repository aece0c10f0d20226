"""The reference pipeline (bench/reference.py) on the test session's broker and PostgreSQL:
every report reaches every stage once, and its topics and databases are gone afterwards.
Its timings are printed by bench/ only."""
from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from bench import reference
from runtime.kafka import make_admin

pytestmark = pytest.mark.broker


async def reference_topics(bootstrap: str) -> set[str]:
    admin = make_admin(bootstrap)
    await admin.start()
    try:
        return {t for t in await admin.list_topics() if t.startswith("bench.")} & {n for n, _ in reference.topics(
            reference.network_institutions())}
    finally:
        await admin.close()


async def test_every_report_reaches_every_stage_once_and_nothing_is_left_behind(infrastructure):
    reports = reference.synthetic(20, seed=3)
    figures = await reference.run(infrastructure.kafka_bootstrap, infrastructure.database_url, None, reports,
                                  reference.network_institutions(), 3 if infrastructure.kafka else 1, timeout=300)

    assert figures["notifications_published"] == 2 * len(reports)
    assert figures["audit_rows"] == reference.MESSAGES_PER_REPORT * len(reports)
    conn = await asyncpg.connect(reference.database_url(infrastructure.database_url, "postgres"))
    try:
        left = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'bench_ref_%'")
    finally:
        await conn.close()
    assert not left
    deadline = time.monotonic() + 30  # a deletion may take a moment to show
    while (topics := await reference_topics(infrastructure.kafka_bootstrap)) and time.monotonic() < deadline:
        await asyncio.sleep(1)
    assert not topics
