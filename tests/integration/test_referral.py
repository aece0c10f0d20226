"""Referral against the real database: a referral per case, commands from the right side
only, feedback, forwarding, direct referrals with consent, and durable deadlines that
escalate and return — with an injected clock, across a restart."""
from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from contracts import reference
from runtime.cloudevents import CloudEvent
from runtime.db import make_engine, make_sessions
from runtime.inbox import UnitOfWork
from runtime.outbox import Outbox
from runtime.signing import SigningKey
from services.referral import handlers
from services.referral.adapters.tables import referrals, services
from tests.integration.helpers import (
    T0,
    case_opened,
    delivered,
    emitted,
    keyring_of,
    message,
    of_type,
    positions,
    referral_config,
    referral_consumers,
)

KEYS = {i: SigningKey.generate(f"{i}-1") for i in ("dgaspc-bc", "spas-colonesti", "isj-bc", "cjrae-bc")}
CONFIG = referral_config(keyring_of(KEYS))


def command(sender: str, referral_id: str, name: str, **fields) -> CloudEvent:
    return KEYS[sender].sign(CloudEvent.new("ro.punte.referral.command.v1", f"/institutions/{sender}",
                                            {"referral_id": referral_id, "command": name, **fields}))


@pytest.fixture
async def referral(infrastructure):
    consumer, engine = await referral_consumers(infrastructure.database_url, CONFIG)
    yield consumer, engine, infrastructure
    await engine.dispose()


async def send(consumer, sender: str, event: CloudEvent) -> None:
    await consumer["commands"].process([message(f"punte.ingress.{sender}", event, offset=next(positions))])


async def opened(consumer, engine, **case) -> dict:
    await consumer["cases"].process([message("punte.cases", case_opened(**case), offset=next(positions))])
    return of_type(await emitted(engine), "ro.punte.referral.requested.v1")[-1]


def answers(out, sender):
    return [(d["status"], (d.get("reason") or {}).get("code")) for d in delivered(out, sender)]


async def test_a_case_is_referred_to_its_lead_once_with_deadlines_and_its_safety_flag(referral):
    consumer, engine, _ = referral
    first = await opened(consumer, engine)
    await consumer["cases"].process([message("punte.cases", case_opened(), offset=next(positions))])
    out = await emitted(engine)
    requested = of_type(out, "ro.punte.referral.requested.v1")
    assert len(requested) == 1 and first["to"] == "dgaspc-bc" and first["referrer"] == "isj-bc"
    assert first["do_not_contact"] is True and first["legal_basis"] == "statutory-duty"
    at = datetime.fromisoformat(first["requested_at"])
    assert datetime.fromisoformat(first["deadlines"]["acknowledge"]) - at == timedelta(hours=24)


async def test_a_p1_referral_to_a_completed_outcome_with_feedback_both_ways(referral):
    consumer, engine, _ = referral
    rid = (await opened(consumer, engine))["referral_id"]
    steps = [
        ("dgaspc-bc", "claim", {"actor": {"person": "cm.ana", "roles": ["case-manager"]}}),
        ("dgaspc-bc", "acknowledge", {}), ("dgaspc-bc", "accept", {}), ("dgaspc-bc", "start", {}),
        ("dgaspc-bc", "note", {"note": "Prima vizită făcută."}),
        ("isj-bc", "note", {"note": "Copilul a revenit la școală."}),
        ("dgaspc-bc", "hold", {"reason": "family-moved", "note": "Familia plecată temporar."}),
        ("dgaspc-bc", "resume", {}),
        ("dgaspc-bc", "complete", {"outcome": "services-provided-psychological"}),
    ]
    for sender, name, fields in steps:
        await send(consumer, sender, command(sender, rid, name, **fields))
    out = await emitted(engine)
    assert answers(out, "dgaspc-bc") == [("accepted", None)] * 8
    moves = [(d["command"], d["from_state"], d["to_state"]) for d in of_type(out, "ro.punte.referral.transitioned.v1")]
    assert moves == [("claim", "requested", "requested"), ("acknowledge", "requested", "received"),
                     ("accept", "received", "accepted"), ("start", "accepted", "in-progress"),
                     ("note", "in-progress", "in-progress"), ("note", "in-progress", "in-progress"),
                     ("hold", "in-progress", "on-hold"), ("resume", "on-hold", "in-progress"),
                     ("complete", "in-progress", "completed")]
    done = of_type(out, "ro.punte.referral.transitioned.v1")[-1]
    assert done["outcome"] == "services-provided-psychological" and done["owner"] == "cm.ana"


@pytest.mark.parametrize("sender, name, fields, code", [
    ("spas-colonesti", "accept", {}, "NOT_REFERRAL_RECIPIENT"),
    ("dgaspc-bc", "cancel", {"reason": "x"}, "NOT_REFERRER"),
    ("dgaspc-bc", "start", {}, "ILLEGAL_TRANSITION"),
    ("dgaspc-bc", "reject", {}, "REASON_REQUIRED"),
    ("dgaspc-bc", "assign", {"assignee": "cm.ion", "actor": {"person": "cm.ana", "roles": ["case-manager"]}}, "NOT_SUPERVISOR"),
])
async def test_a_command_that_is_not_allowed_is_refused_back_to_its_sender(referral, sender, name, fields, code):
    consumer, engine, _ = referral
    rid = (await opened(consumer, engine))["referral_id"]
    await send(consumer, sender, command(sender, rid, name, **fields))
    assert answers(await emitted(engine), sender) == [("rejected", code)]


async def test_an_unknown_referral_and_a_v1_accept(referral):
    consumer, engine, _ = referral
    rid = (await opened(consumer, engine))["referral_id"]
    await send(consumer, "dgaspc-bc", command("dgaspc-bc", "ref-nope", "accept"))
    await send(consumer, "dgaspc-bc", KEYS["dgaspc-bc"].sign(CloudEvent.new(
        "ro.punte.referral.accept.v1", "/institutions/dgaspc-bc", {"referral_id": rid})))
    assert answers(await emitted(engine), "dgaspc-bc") == [("rejected", "UNKNOWN_REFERRAL"), ("accepted", None)]


async def test_forwarding_creates_a_linked_referral_and_tells_the_referrer(referral):
    consumer, engine, _ = referral
    rid = (await opened(consumer, engine))["referral_id"]
    await send(consumer, "dgaspc-bc", command("dgaspc-bc", rid, "forward", forward_to="cjrae-bc",
                                              reason="not-competent", note="Evaluare SEOSP."))
    out = await emitted(engine)
    [moved] = of_type(out, "ro.punte.referral.transitioned.v1")
    new = of_type(out, "ro.punte.referral.requested.v1")[-1]
    assert moved["to_state"] == "rejected" and moved["forwarded_to"] == new["referral_id"]
    assert new["to"] == "cjrae-bc" and new["forwarded_from"] == rid and new["referrer"] == "isj-bc"


async def test_a_direct_prevention_referral_needs_consent(referral):
    consumer, engine, _ = referral
    await opened(consumer, engine, urgency="P2", lead="spas-colonesti")
    service = next(s for s in reference.social_services() if s.provider_institution == "das-bacau")
    plain = {"case_id": "case-1", "service_id": service.id}
    consent = {"given_by": "parent", "purpose": "consiliere", "given_on": T0.date().isoformat(),
               "expires_on": (T0.date() + timedelta(days=180)).isoformat()}
    for fields in (plain, {**plain, "consent": consent}):
        await send(consumer, "spas-colonesti", KEYS["spas-colonesti"].sign(CloudEvent.new(
            "ro.punte.referral.request.v1", "/institutions/spas-colonesti", fields)))
    out = await emitted(engine)
    assert answers(out, "spas-colonesti") == [("rejected", "CONSENT_REQUIRED"), ("accepted", None)]
    direct = of_type(out, "ro.punte.referral.requested.v1")[-1]
    assert direct["to"] == "das-bacau" and direct["legal_basis"] == "consent" and direct["kind"] == "service"


@asynccontextmanager
async def at(sessions, when: datetime):
    """A unit of work whose clock says ``when``: the injected clock of the timer tests."""
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session, Outbox(session), "/punte/referral", now=when)
        yield uow
        await uow.outbox.flush()


async def test_an_unanswered_p0_referral_escalates_then_returns_even_across_a_restart(referral):
    consumer, engine, infrastructure = referral
    await opened(consumer, engine, case_id="case-p0", urgency="P0", lead="spas-colonesti")
    url = engine.url.render_as_string(hide_password=False)
    await engine.dispose()  # the service stops; its timers are rows, not sleepers
    engine = make_engine(url, pool_size=2)
    sessions = make_sessions(engine)
    try:
        requested_at = (await _referral(engine)).requested_at
        for minutes in (10, 20, 70, 250):
            async with at(sessions, requested_at + timedelta(minutes=minutes)) as uow:
                await handlers.fire_due_timers(uow, CONFIG)
        async with at(sessions, requested_at + timedelta(minutes=300)) as uow:
            assert await handlers.fire_due_timers(uow, CONFIG) == 0, "each timer fires once"
        out = await emitted(engine)
        state = (await _referral(engine)).state
    finally:
        await engine.dispose()
    overdue = [(d["step"], d["level"], d["escalate_to"]) for d in of_type(out, "ro.punte.referral.overdue.v1")]
    assert overdue == [("acknowledge", 1, ["spas-colonesti"]),  # at 20 min (due 15 min)
                       ("decide", 2, ["spas-colonesti", "dgaspc-bc"])]  # at 70 min: the coordinator too
    returned = of_type(out, "ro.punte.referral.transitioned.v1")
    assert [(d["command"], d["to_state"], d["reason"], d["actor_institution"]) for d in returned] == [
        ("expire", "failed", "NO_RESPONSE", None)]
    assert state == "failed"


async def _referral(engine):
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(referrals))).one()


async def test_a_dgaspc_information_request_is_due_in_15_days(referral):
    consumer, engine, _ = referral
    # DGASPC leads the case (only the lead and participants refer it), SPAS is asked.
    await opened(consumer, engine, urgency="P2")
    await send(consumer, "dgaspc-bc", KEYS["dgaspc-bc"].sign(CloudEvent.new(
        "ro.punte.referral.request.v1", "/institutions/dgaspc-bc",
        {"case_id": "case-1", "to": "spas-colonesti", "kind": "information-request",
         "note": "Vă rugăm ancheta socială (art. 117 lit. g)."})))
    out = await emitted(engine)
    asked = of_type(out, "ro.punte.referral.requested.v1")[-1]
    assert asked["kind"] == "information-request" and asked["legal_basis"] == "statutory-duty"
    at = datetime.fromisoformat(asked["requested_at"])
    assert datetime.fromisoformat(asked["deadlines"]["decide"]) - at == timedelta(days=15)


async def test_a_provider_lists_its_own_service_and_keeps_it_current(referral):
    consumer, engine, _ = referral
    def update(fields):
        return KEYS["spas-colonesti"].sign(CloudEvent.new("ro.punte.service.updated.v1",
                                                          "/institutions/spas-colonesti", fields))
    await send(consumer, "spas-colonesti", update({"service_id": "spas-colonesti-consiliere", "capacity": 10}))
    await send(consumer, "spas-colonesti", update({
        "service_id": "spas-colonesti-consiliere", "name": "Consiliere pentru părinți",
        "categories": ["neglect", "parents_abroad"], "capacity": 10, "occupancy": 4}))
    await send(consumer, "spas-colonesti", update({"service_id": "spas-colonesti-consiliere", "occupancy": 10}))
    await send(consumer, "dgaspc-bc", KEYS["dgaspc-bc"].sign(CloudEvent.new(
        "ro.punte.service.updated.v1", "/institutions/dgaspc-bc",
        {"service_id": "spas-colonesti-consiliere", "accepting": False})), )
    out = await emitted(engine)
    assert answers(out, "spas-colonesti") == [("rejected", "UNKNOWN_SERVICE"), ("accepted", None), ("accepted", None)]
    assert answers(out, "dgaspc-bc") == [("rejected", "NOT_ALLOWED")]
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(services).where(
            services.c.service_id == "spas-colonesti-consiliere"))).one()
    assert (row.provider, row.occupancy, row.accepting) == ("spas-colonesti", 10, True)
