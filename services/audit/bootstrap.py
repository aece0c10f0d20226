"""Composition root: wires audit's handler to the runtime and the topic names."""
from __future__ import annotations

from pathlib import Path

from contracts import reference
from runtime.inbox import InboxConsumer, Message, UnitOfWork, key_by_position
from runtime.service import Runtime, ServiceSpec
from services.audit import handlers
from services.audit.domain.subjects import PLACEHOLDER
from services.audit.entrypoints import http

EVERY_TOPIC = r"^punte\..+"


def institution_topics() -> list[str]:
    """Topic names holding an institution id (ingress, delivery), from topics.yaml."""
    return [str(t["name"]) for t in reference.topics() if PLACEHOLDER in str(t["name"])]


def consumers(rt: Runtime) -> list[InboxConsumer]:
    templates = institution_topics()

    async def handle(uow: UnitOfWork, message: Message) -> None:
        await handlers.append(uow, message, templates)

    # Keyed by position, not event id: a duplicate is itself a fact the trail must show.
    return [rt.consumer(group_id="punte-audit", handler=handle, pattern=EVERY_TOPIC,
                        message_key=key_by_position)]


SPEC = ServiceSpec(
    name="audit", title="Punte audit — jurnal de audit / audit trail",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[http.router], stats=handlers.stats,
)
