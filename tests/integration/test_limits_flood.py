"""A signed flood of P0 reports against real PostgreSQL and a real SMTP server: the person
on call is paged at most five times per ten minutes (re-sends included); every alert is
still in the inbox and still to be acknowledged, and those held back reach the person as
one digest e-mail when the window ends."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from services.notification import handlers
from services.notification.adapters.tables import alerts, inbox_entries, people_deliveries
from services.notification.channels.people import send_due
from tests.integration import test_notification_dispatch as dispatch
from tests.integration.test_notification_dispatch import T0, handle, requested

# The same recipients and channels as the dispatch tests (the database and the SMTP server
# are tests/integration/conftest.py's).
sessions, config = dispatch.sessions, dispatch.config

FLOOD = 12


async def pages_of(sessions, person: str, since, until) -> set[tuple[str, int]]:
    """The pages (notification, round) sent to ``person`` in [since, until)."""
    async with sessions() as session:
        rows = (await session.execute(sa.select(people_deliveries).where(
            people_deliveries.c.person == person, people_deliveries.c.purpose == "alert",
            people_deliveries.c.created_at >= since, people_deliveries.c.created_at < until))).all()
    return {(r.notification_id, r.round) for r in rows}


async def test_a_flood_of_p0_reports_pages_the_person_on_call_a_bounded_number_of_times(sessions, config, smtp):
    for n in range(FLOOD):
        await handle(sessions, config, requested("P0", f"ref-{n}", f"case-{n}"), T0 + timedelta(seconds=20 * n))
    async with sessions() as session:
        entries = await session.scalar(sa.select(sa.func.count()).select_from(inbox_entries)
                                       .where(inbox_entries.c.institution == "dgaspc-bc"))
        open_alerts = await session.scalar(sa.select(sa.func.count()).select_from(alerts)
                                           .where(alerts.c.acknowledged_at.is_(None)))
        held = (await session.execute(sa.select(people_deliveries.c.channel, people_deliveries.c.due_at).where(
            people_deliveries.c.person == "cm.dgaspc-bc", people_deliveries.c.purpose == "digest"))).all()
    assert entries == FLOOD and open_alerts == FLOOD, "nothing is lost: every alert waits in the inbox"
    window = T0 + timedelta(minutes=10)
    assert len(await pages_of(sessions, "cm.dgaspc-bc", T0, window)) == 5
    assert held == [("email", window)] * (FLOOD - 5)

    # At the window's end the person gets one e-mail naming the alerts held back.
    async with sessions() as session:
        await send_due(session, config.channels, T0 + timedelta(minutes=5))
    _, collector = smtp
    collector.received.clear()
    async with sessions() as session:
        await send_due(session, config.channels, window)
    [(_, to, digest)] = collector.received
    assert to == ["caz@dgaspc-bc.example.invalid"]
    assert digest["Subject"] == f"[Punte] Rezumat: {FLOOD - 5} notificări noi / Digest: {FLOOD - 5} new notifications"
    assert "P0" in digest.get_content()

    # Unacknowledged alerts come round again, still within the cap of the new window.
    async with sessions() as session:
        assert await handlers.fire_due_alerts(session, config, window + timedelta(minutes=5)) == FLOOD
    assert len(await pages_of(sessions, "cm.dgaspc-bc", window, window + timedelta(minutes=10))) == 5
