"""Composition root: wires audit's handlers to the runtime and the topic names."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from contracts import reference
from runtime import data_keys, retention
from runtime.inbox import InboxConsumer
from runtime.log import get_logger
from runtime.metrics import Gauge
from runtime.service import Runtime, ServiceSpec
from runtime.signing import SigningKey
from services.audit import handlers
from services.audit.domain.subjects import PLACEHOLDER
from services.audit.entrypoints import http, privacy, ui

log = get_logger("audit")


def institution_topics() -> list[str]:
    """Topic names holding an institution id (ingress, delivery), from topics.yaml."""
    return [str(t["name"]) for t in reference.topics() if PLACEHOLDER in str(t["name"])]


def trail(rt: Runtime) -> handlers.Trail:
    """What appending needs; without data keys the service does not start (no value is
    ever kept in clear instead)."""
    return handlers.Trail(templates=institution_topics(), data_keys=data_keys.from_settings(rt.settings),
                          network_keys=rt.network_keys, schedule=reference.retention(rt.settings.retention_file))


def appended(rt: Runtime) -> asyncio.Event:
    """Set when the trail's consumer committed entries: the tree integrates them at once,
    and its poll (which only finds what another replica appended) can be slow."""
    return rt.extras.setdefault("audit_appended", asyncio.Event())


def consumers(rt: Runtime) -> list[InboxConsumer]:
    if "audit_trail" not in rt.extras:  # start() builds it; a runtime built by hand may not have
        rt.extras["audit_trail"] = trail(rt)
    deps: handlers.Trail = rt.extras["audit_trail"]
    # Keyed by position, not event id: a duplicate is itself a fact the trail must show.
    # Every message is recorded as it arrived, its signature headers with it, forged ones
    # too (evidence); the consumer that refuses a forgery dead-letters it, and the trail
    # records that dead letter as well.
    return [rt.consumer(group_id="punte-audit", pattern=deps.topics, message_key=handlers.key_in_epoch(rt.broker_epoch),
                        handler=partial(handlers.append, trail=deps),
                        batch_handler=partial(handlers.append_many, trail=deps), prepare=deps.read,
                        verify_network=False, background=True, after_applied=appended(rt).set),
            # The person's rights: each case's lead and participants, so exports go to the
            # lead's officer only.
            rt.consumer(group_id="punte-audit-cases", topics=["punte.cases", "punte.referrals"],
                        handler=privacy.follow_case, batch_handler=privacy.follow_cases, background=True)]


async def start(rt: Runtime) -> None:
    rt.extras["audit_trail"] = trail(rt)
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

    async def purge() -> int:
        """Erase what the retention schedule says is due (values only: leaves stay), and
        prune the runtime's published outbox and processed inbox rows."""
        deps: handlers.Trail = rt.extras["audit_trail"]
        now = datetime.now(timezone.utc)
        async with rt.sessions() as session, session.begin():
            erased = await handlers.erase_due(session, deps.data_keys, now)
            await retention.prune_runtime_rows(session, deps.schedule, now)
        if erased:
            log.info("values erased by the retention schedule", scopes=erased)
        return erased

    async def verify() -> int:
        """Verify the whole trail against the broker now and then, for /metrics."""
        verification = await http.verify_with_the_broker(rt)
        verified: Verified = rt.extras["audit_verified"]
        rt.extras["audit_verified"] = Verified(
            verification.state, time.time() if verification.verified else verified.verified_at,
            verification.not_audited)
        if verification.state == "failed":
            log.error("the audit trail does not verify", problems=verification.problems)
        return 0

    rt.extras["audit_verified"] = Verified(None, time.time(), 0)
    background = [rt.polling(tree, rt.settings.audit_tree_poll_seconds, wake=appended(rt)),
                  rt.polling(purge, rt.settings.purge_poll_seconds)]
    if rt.settings.audit_verify_seconds > 0:
        background.append(rt.polling(verify, rt.settings.audit_verify_seconds))
    return background


@dataclass(frozen=True)
class Verified:
    """The last verification of the trail (``verify`` above): its state (None before the
    first), when the trail last verified (the service's start before it did) and how many
    messages on the broker were not audited yet."""

    state: str | None
    verified_at: float
    not_audited: int


async def gauges(rt: Runtime, session: AsyncSession) -> list[Gauge]:
    """The audit's own gauges at /metrics: the last verification of its trail."""
    last: Verified | None = rt.extras.get("audit_verified")
    if last is None:  # no verification loop in this process (a runtime built by hand)
        return []
    return [
        Gauge("punte_audit_verification", "1 for the state of the trail's last verification (verified; lagging: "
              "intact, messages on the broker not audited yet; failed: tampering, a hole or a lost message)",
              ("state",), [((state,), 1 if last.state == state else 0) for state in ("verified", "lagging", "failed")]),
        Gauge("punte_audit_verified_timestamp_seconds", "when the trail last verified whole (the service's "
              "start, before it did)", (), [((), last.verified_at)]),
        Gauge("punte_audit_not_audited", "messages on the broker the trail did not hold at the last verification",
              (), [((), last.not_audited)]),
    ]


SPEC = ServiceSpec(
    name="audit", title="Punte audit — jurnal de audit / audit trail",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[http.router, ui.router, privacy.router], stats=handlers.stats, on_start=start, loops=loops,
    on_broker_epoch=lambda rt, conn, epoch: handlers.start_epoch(conn, epoch), metrics=gauges,
)
