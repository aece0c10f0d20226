"""Composition root: wires notification's handlers to the runtime and the reference data."""
from __future__ import annotations

from pathlib import Path

from contracts import reference
from runtime.inbox import InboxConsumer, Message, UnitOfWork
from runtime.service import Runtime, ServiceSpec
from services.notification import handlers
from services.notification.entrypoints import http

TOPICS = ["punte.cases", "punte.referrals", "punte.access"]


def consumers(rt: Runtime) -> list[InboxConsumer]:
    labels = reference.risk_categories()

    async def handle(uow: UnitOfWork, message: Message) -> None:
        await handlers.notify(uow, message, labels)

    return [rt.consumer(group_id="punte-notification", handler=handle, topics=TOPICS)]


SPEC = ServiceSpec(
    name="notification", title="Punte notification — notificări / notifications",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[http.router], stats=handlers.stats,
)
