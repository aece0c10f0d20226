"""Composition root of the referral service."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from runtime.inbox import InboxConsumer, Message, UnitOfWork
from runtime.ingress import key_by_sender
from runtime.service import Runtime, ServiceSpec
from services.referral import handlers, retention
from services.referral.adapters import metrics
from services.referral.entrypoints import http, privacy

INGRESS_PATTERN = r"^punte\.ingress\..+"


def consumers(rt: Runtime) -> list[InboxConsumer]:
    config = handlers.Config.of(rt)

    async def on_case(uow: UnitOfWork, message: Message) -> None:
        await handlers.follow_case(uow, message, config)
        await retention.note_report(uow, message)

    async def on_cases(uow: UnitOfWork, messages: list[Message]) -> None:
        await handlers.follow_cases(uow, messages, config)
        await retention.note_reports(uow, messages)

    async def on_command(uow: UnitOfWork, message: Message) -> None:
        # Reports and unknown types on the same topics are intake's to answer.
        if message.header("ce_type") in handlers.INGRESS_TYPES:
            await handlers.on_ingress(uow, message, config)

    async def on_command_failure(uow: UnitOfWork, message: Message, code: str, detail: str) -> None:
        if message.header("ce_type") in handlers.INGRESS_TYPES:
            await handlers.record_failure(uow, message, code)

    return [
        rt.consumer(group_id="punte-referral-cases", topics=["punte.cases"], handler=on_case,
                    batch_handler=on_cases),
        rt.consumer(group_id="punte-referral-commands", pattern=INGRESS_PATTERN,
                    handler=on_command, message_key=key_by_sender, on_failure=on_command_failure,
                    background=True),
    ]


async def seed(rt: Runtime) -> None:
    """The service directory, and notes kept in clear before issue #11 sealed into the case
    file. Building the config first stops a service without data keys here (fail closed)."""
    config = handlers.Config.of(rt)
    async with rt.sessions() as session, session.begin():
        await handlers.seed_directory(session, datetime.now(timezone.utc))
    async with rt.unit_of_work() as uow:
        await handlers.seal_legacy_notes(uow, config)


def loops(rt: Runtime):
    config = handlers.Config.of(rt)

    async def timers() -> int:
        async with rt.unit_of_work() as uow:
            return await handlers.fire_due_timers(uow, config)

    return [rt.polling(timers, rt.settings.timer_poll_seconds), rt.purge_job(retention.purge)]


SPEC = ServiceSpec(
    name="referral", title="Punte referral — trimiteri / referrals",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[http.router, privacy.router], stats=handlers.stats, on_start=seed, loops=loops,
    data_keys=True, metrics=metrics.gauges,
)
