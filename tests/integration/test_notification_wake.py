"""The notification dispatcher, as the service's bootstrap wires it, sends what its consumer
queued as soon as the consumer commits, not at its next poll (issue #14: a quiet service's
loops back off, runtime.quiet). Against real PostgreSQL and a real HTTP receiver: the
institution a new case informs has a webhook, and the dispatcher's poll is ten minutes, so only the wake can
deliver within the test."""
from __future__ import annotations

import asyncio

from contracts.reference import institutions
from punte import recipients
from runtime import data_keys
from runtime.settings import Settings
from services.notification import bootstrap
from tests.integration.helpers import (
    NOTIFICATION_MIGRATIONS,
    TEST_DATA_KEYS_SETTING,
    case_opened,
    eventually,
    message,
    migrated_database,
    positions,
)
from tests.integration.test_channel_webhook import receiver
from tests.integration.test_internal_signatures import runtime


async def test_a_webhook_the_consumer_queued_is_delivered_without_waiting_for_the_dispatchers_poll(
        infrastructure, tmp_path):
    engine, _ = await migrated_database(infrastructure.database_url, "notification", NOTIFICATION_MIGRATIONS)
    async with receiver(lambda _n: 200) as hook:
        recipients.write(tmp_path / "recipients.yaml", recipients.demo_recipients(
            institutions().values(), webhooks={"spas-colonesti": hook.url}))
        settings = Settings(recipients_file=tmp_path / "recipients.yaml", sms_file=tmp_path / "sms.jsonl",
                            smtp_host="", data_keys=TEST_DATA_KEYS_SETTING, dispatch_poll_seconds=600.0)
        rt = runtime("notification", engine, settings)
        rt.data_keys = data_keys.from_settings(settings)
        await bootstrap.configure(rt)
        (consumer,) = bootstrap.consumers(rt)
        dispatcher = asyncio.create_task(bootstrap.loops(rt)[0]())
        try:
            await asyncio.sleep(0.5)  # its first pass found nothing: it waits its poll now
            assert hook.seen == []
            opened = case_opened("case-woken", lead="dgaspc-bc")
            await consumer.process([message("punte.cases", opened, offset=next(positions))])

            async def delivered() -> bool:
                """the informed institution's system got the notice's webhook"""
                return bool(hook.seen)
            await eventually(delivered, 30)
            assert b"case-woken" in hook.seen[0].body
        finally:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
            await engine.dispose()
