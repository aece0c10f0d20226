"""Composition root of the referral service."""
from __future__ import annotations

from pathlib import Path

from contracts.events import EventType
from runtime.inbox import InboxConsumer, Message, UnitOfWork
from runtime.service import Runtime, ServiceSpec
from services.referral import handlers

INGRESS_PATTERN = r"^punte\.ingress\..+"
COMMANDS = frozenset({EventType.REFERRAL_ACCEPT.value})


def consumers(rt: Runtime) -> list[InboxConsumer]:
    common = dict(
        service="referral", bootstrap=rt.settings.kafka_bootstrap, sessions=rt.sessions,
        signer=rt.network_key, batch_max=rt.settings.consumer_batch_max,
        attempts=rt.settings.handler_attempts, after_commit=rt.relay.wake,
    )

    async def on_command(uow: UnitOfWork, message: Message) -> None:
        # Reports and unknown types on the same topics are intake's to answer.
        if message.header("ce_type") in COMMANDS:
            await handlers.accept_referral(uow, message, rt.keyring)

    async def on_command_failure(uow: UnitOfWork, message: Message, code: str, detail: str) -> None:
        if message.header("ce_type") in COMMANDS:
            await handlers.record_failure(uow, message, code)

    return [
        InboxConsumer(group_id="punte-referral-cases", topics=["punte.cases"],
                      handler=handlers.open_referral, **common),
        InboxConsumer(group_id="punte-referral-commands", pattern=INGRESS_PATTERN,
                      handler=on_command, on_failure=on_command_failure, **common),
    ]


SPEC = ServiceSpec(
    name="referral", title="Punte referral — trimiteri / referrals",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[], stats=handlers.stats,
)
