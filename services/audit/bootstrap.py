"""Composition root: wires audit's handlers to the runtime and the topic names."""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from contracts import reference
from runtime.inbox import InboxConsumer, key_by_position
from runtime.log import get_logger
from runtime.service import Runtime, ServiceSpec, polling
from runtime.signing import SigningKey
from services.audit import handlers
from services.audit.domain.subjects import PLACEHOLDER
from services.audit.entrypoints import http, privacy, ui

EVERY_TOPIC = r"^punte\..+"
log = get_logger("audit")


def institution_topics() -> list[str]:
    """Topic names holding an institution id (ingress, delivery), from topics.yaml."""
    return [str(t["name"]) for t in reference.topics() if PLACEHOLDER in str(t["name"])]


def consumers(rt: Runtime) -> list[InboxConsumer]:
    templates = institution_topics()
    # Keyed by position, not event id: a duplicate is itself a fact the trail must show.
    # Every message is recorded as it arrived, its signature headers with it, forged ones
    # too (evidence); the consumer that refuses a forgery dead-letters it, and the trail
    # records that dead letter as well.
    return [rt.consumer(group_id="punte-audit", pattern=EVERY_TOPIC, message_key=key_by_position,
                        handler=partial(handlers.append, templates=templates),
                        batch_handler=partial(handlers.append_many, templates=templates),
                        verify_network=False),
            # The person's rights: each case's lead and participants, so exports go to the
            # lead's officer only.
            rt.consumer(group_id="punte-audit-cases", topics=["punte.cases", "punte.referrals"],
                        handler=privacy.follow_case)]


async def start(rt: Runtime) -> None:
    path = rt.settings.resolved_audit_log_key_file()
    if not path.exists():
        log.warning("no audit log key; creating one", path=str(path))
        SigningKey.generate(f"{rt.settings.audit_origin}-1").save(path)
    rt.extras["audit_log"] = handlers.Log(rt.settings.audit_origin, SigningKey.load(path))


def loops(rt: Runtime):
    last_checkpoint = time.monotonic()

    async def tree() -> int:
        """Integrate appended leaves as they come, and checkpoint on a schedule."""
        nonlocal last_checkpoint
        async with rt.sessions() as session, session.begin():
            added = await handlers.integrate(session)
        if time.monotonic() - last_checkpoint >= rt.settings.audit_checkpoint_seconds:
            async with rt.unit_of_work() as uow:
                await handlers.issue_checkpoint(uow, rt.extras["audit_log"], only_if_grown=True)
            last_checkpoint = time.monotonic()
        return added

    return [polling(tree, 0.2)]


SPEC = ServiceSpec(
    name="audit", title="Punte audit — jurnal de audit / audit trail",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[http.router, ui.router, privacy.router], stats=handlers.stats, on_start=start, loops=loops,
)
