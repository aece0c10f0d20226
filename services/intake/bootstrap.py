"""Composition root: wires intake's handlers to the runtime and the reference data."""
from __future__ import annotations

import hashlib
from pathlib import Path

from contracts import reference
from runtime.inbox import InboxConsumer, Message, UnitOfWork
from runtime.service import Runtime, ServiceSpec
from services.intake import handlers
from services.intake.domain.cases import Rules

INGRESS_PATTERN = r"^punte\.ingress\..+"


def build_rules(pseudonym_key: str) -> Rules:
    uats = reference.uats()
    return Rules(
        categories=frozenset(reference.risk_categories()),
        uat_county={s: u.county for s, u in uats.items()},
        triage_table=reference.triage_table(),
        routing_table=reference.routing_table(),
        local_authority=lambda siruta: (i.id if (i := reference.local_authority(siruta)) else None),
        county_institution=lambda kind, county: reference.county_institution(kind, county).id,
        # Without a configured key (tests, first runs) a fixed development key is derived;
        # production sets PUNTE_PSEUDONYM_KEY.
        pseudonym_key=bytes.fromhex(pseudonym_key) if pseudonym_key
        else hashlib.sha256(b"punte-development-pseudonym-key").digest(),
    )


def handled_elsewhere() -> frozenset[str]:
    """Ingress event types another service answers (topics.yaml `handled_by`)."""
    return frozenset(
        e["type"] for t in reference.topics() if t["kind"] == "ingress"
        for e in t["events"] if e.get("handled_by", "intake") != "intake"
    )


def consumers(rt: Runtime) -> list[InboxConsumer]:
    rules = build_rules(rt.settings.pseudonym_key)
    others = handled_elsewhere()

    async def handle(uow: UnitOfWork, message: Message) -> None:
        if message.header("ce_type") in others:
            return
        await handlers.submit_report(uow, message, rt.keyring, rules)

    async def on_failure(uow: UnitOfWork, message: Message, code: str, detail: str) -> None:
        await handlers.record_failure(uow, message, code)

    return [rt.consumer(group_id="punte-intake", handler=handle, pattern=INGRESS_PATTERN,
                        on_failure=on_failure)]


SPEC = ServiceSpec(
    name="intake", title="Punte intake — rapoarte de risc / risk reports",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[], stats=handlers.stats,
)
