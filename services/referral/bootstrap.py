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
    window = rt.settings.ingress_window()

    async def on_command(uow: UnitOfWork, message: Message) -> None:
        # Reports and unknown types on the same topics are intake's to answer.
        if message.header("ce_type") in COMMANDS:
            await handlers.accept_referral(uow, message, rt.keyring, window)

    async def on_command_failure(uow: UnitOfWork, message: Message, code: str, detail: str) -> None:
        if message.header("ce_type") in COMMANDS:
            await handlers.record_failure(uow, message, code)

    return [
        rt.consumer(group_id="punte-referral-cases", topics=["punte.cases"],
                    handler=handlers.open_referral),
        rt.consumer(group_id="punte-referral-commands", pattern=INGRESS_PATTERN,
                    handler=on_command, on_failure=on_command_failure),
    ]


SPEC = ServiceSpec(
    name="referral", title="Punte referral — trimiteri / referrals",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[], stats=handlers.stats,
)
