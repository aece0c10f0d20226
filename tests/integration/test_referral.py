"""Referral against the real database: a new case is referred to its lead, only the lead
accepts, once, and every command gets its outcome."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from runtime.cloudevents import CloudEvent
from runtime.inbox import InboxConsumer
from runtime.ingress import Window
from runtime.signing import Keyring, PublicKey, SigningKey
from services.referral import handlers
from tests.integration.helpers import emitted, message, migrated_database

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "referral" / "migrations"
KEYS = {i: SigningKey.generate(f"{i}-1") for i in ("dgaspc-bc", "spas-colonesti")}
KEYRING = Keyring([PublicKey(k.key_id, i, k.public_raw(), datetime(2026, 1, 1, tzinfo=timezone.utc), None)
                   for i, k in KEYS.items()])
NOW = datetime.now(timezone.utc).isoformat()


def case_opened(case_id: str = "case-1") -> CloudEvent:
    return CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake", {
        "case_id": case_id, "child_ref": "ch-x", "uat_siruta": 21891, "categories": ["neglect"],
        "urgency": "P1", "lead": "dgaspc-bc", "informed": ["spas-colonesti"], "report_id": "r-1",
        "reporter": {"institution": "isj-bc", "role": "school-counsellor"}, "received_at": NOW,
        "do_not_contact": True,
    }, subject=case_id)


def accept(sender: str, referral_id: str) -> CloudEvent:
    return KEYS[sender].sign(CloudEvent.new("ro.punte.referral.accept.v1", f"/institutions/{sender}",
                                            {"referral_id": referral_id}))


@pytest.fixture
async def referral(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "referral", MIGRATIONS)

    async def on_command(uow, msg):
        await handlers.accept_referral(uow, msg, KEYRING, Window())

    cases = InboxConsumer(service="referral", group_id="t", bootstrap="t", sessions=sessions,
                          handler=handlers.open_referral, attempts=1)
    commands = InboxConsumer(service="referral", group_id="t", bootstrap="t", sessions=sessions,
                             handler=on_command, attempts=1)
    yield cases, commands, engine
    await engine.dispose()


async def test_a_case_is_referred_to_its_lead_once_with_its_safety_flag(referral):
    cases, _, engine = referral
    await cases.process([message("punte.cases", case_opened(), offset=0)])
    await cases.process([message("punte.cases", case_opened(), offset=1)])  # republished by a relay
    requested = [d for t, h, d in await emitted(engine) if t == "punte.referrals"]
    assert len(requested) == 1
    assert requested[0]["to"] == "dgaspc-bc" and requested[0]["referrer"] == "isj-bc"
    assert requested[0]["do_not_contact"] is True


async def test_only_the_lead_accepts_and_only_once(referral):
    cases, commands, engine = referral
    await cases.process([message("punte.cases", case_opened(), offset=0)])
    referral_id = [d for t, h, d in await emitted(engine) if t == "punte.referrals"][0]["referral_id"]
    steps = [("spas-colonesti", referral_id), ("dgaspc-bc", "ref-unknown"),
             ("dgaspc-bc", referral_id), ("dgaspc-bc", referral_id)]
    for n, (sender, rid) in enumerate(steps):
        await commands.process([message(f"punte.ingress.{sender}", accept(sender, rid), offset=n)])
    out = await emitted(engine)
    answers = [(t.removeprefix("punte.delivery."), d["status"], (d.get("reason") or {}).get("code"))
               for t, h, d in out if t.startswith("punte.delivery.")]
    assert answers == [
        ("spas-colonesti", "rejected", "NOT_REFERRAL_RECIPIENT"),
        ("dgaspc-bc", "rejected", "UNKNOWN_REFERRAL"),
        ("dgaspc-bc", "accepted", None),
        ("dgaspc-bc", "rejected", "ILLEGAL_TRANSITION"),
    ]
    accepted = [d for t, h, d in out if dict(h)["ce_type"] == "ro.punte.referral.accepted.v1"]
    assert len(accepted) == 1 and accepted[0]["referrer"] == "isj-bc"
