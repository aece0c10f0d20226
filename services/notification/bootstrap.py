"""Composition root: wires notification's handlers to the runtime and the reference data."""
from __future__ import annotations

from pathlib import Path

from contracts import reference
from runtime.inbox import InboxConsumer, Message, UnitOfWork
from runtime.service import Runtime, ServiceSpec
from services.notification import handlers
from services.notification.entrypoints import http

TOPICS = ["punte.cases", "punte.referrals"]


def consumers(rt: Runtime) -> list[InboxConsumer]:
    labels = reference.risk_categories()

    async def handle(uow: UnitOfWork, message: Message) -> None:
        await handlers.notify(uow, message, labels)

    return [InboxConsumer(
        service="notification", group_id="punte-notification",
        bootstrap=rt.settings.kafka_bootstrap, sessions=rt.sessions, handler=handle,
        topics=TOPICS, signer=rt.network_key, batch_max=rt.settings.consumer_batch_max,
        attempts=rt.settings.handler_attempts, after_commit=rt.relay.wake,
    )]


SPEC = ServiceSpec(
    name="notification", title="Punte notification — notificări / notifications",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[http.router], stats=handlers.stats,
)
