"""Composition root: wires intake's handlers to the runtime and the reference data."""
from __future__ import annotations

import hashlib
from pathlib import Path

from contracts import reference
from runtime.inbox import InboxConsumer, Message, UnitOfWork
from runtime.log import get_logger
from runtime.service import Runtime, ServiceSpec
from runtime.settings import Settings
from services.intake import handlers
from services.intake.adapters.vault import IdentityVault
from services.intake.domain.cases import Rules
from services.intake.entrypoints import http

INGRESS_PATTERN = r"^punte\.ingress\..+"
log = get_logger("intake")


def _development_key(purpose: str) -> bytes:
    return hashlib.sha256(f"punte-development-{purpose}-key".encode()).digest()


def build_rules(pseudonym_key: str) -> Rules:
    uats = reference.uats()

    def county_institution(kind: str, county: str) -> str | None:
        try:
            return reference.county_institution(kind, county).id
        except KeyError:
            return None

    return Rules(
        categories=frozenset(reference.risk_categories()),
        uat_county={s: u.county for s, u in uats.items()},
        triage_table=reference.triage_table(),
        routing_table=reference.routing_table(),
        urgency_levels=reference.urgency_levels(),
        observation_items={section: frozenset(items)
                           for section, items in reference.observation_sheet_items().items()},
        local_authority=lambda siruta: (i.id if (i := reference.local_authority(siruta)) else None),
        county_institution=county_institution,
        # Without a configured key (tests, first runs) a fixed development key is used;
        # production sets PUNTE_PSEUDONYM_KEY.
        pseudonym_key=bytes.fromhex(pseudonym_key) if pseudonym_key else _development_key("pseudonym"),
    )


def build_vault(settings: Settings) -> IdentityVault:
    if settings.identity_keys:
        return IdentityVault.from_setting(settings.identity_keys)
    log.warning("no PUNTE_IDENTITY_KEYS; identities are sealed with a development key")
    return IdentityVault({"dev": _development_key("identity")}, "dev")


def build_intake(rt: Runtime) -> handlers.Intake:
    return handlers.Intake(keyring=rt.keyring, rules=build_rules(rt.settings.pseudonym_key),
                           vault=build_vault(rt.settings), window=rt.settings.ingress_window())


def handled_elsewhere() -> frozenset[str]:
    """Ingress event types another service answers (topics.yaml `handled_by`)."""
    return frozenset(
        e["type"] for t in reference.topics() if t["kind"] == "ingress"
        for e in t["events"] if e.get("handled_by", "intake") != "intake"
    )


def consumers(rt: Runtime) -> list[InboxConsumer]:
    intake = build_intake(rt)
    others = handled_elsewhere()

    async def handle(uow: UnitOfWork, message: Message) -> None:
        if message.header("ce_type") in others:
            return
        await handlers.submit_report(uow, message, intake)

    async def on_failure(uow: UnitOfWork, message: Message, code: str, detail: str) -> None:
        await handlers.record_failure(uow, message, code)

    return [rt.consumer(group_id="punte-intake", handler=handle, pattern=INGRESS_PATTERN,
                        on_failure=on_failure)]


SPEC = ServiceSpec(
    name="intake", title="Punte intake — rapoarte de risc / risk reports",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[http.router], stats=handlers.stats,
)
