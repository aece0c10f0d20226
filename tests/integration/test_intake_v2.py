"""Intake's rules for report v2 against the real database: identity kept encrypted,
reports about the same child joined, look-alikes flagged for a person, siblings linked,
deadlines from receipt, the do-not-contact flag, other counties, and the checks on who
sent what and when."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.inbox import DEAD_LETTER_TOPIC
from runtime.signing import Keyring, PublicKey, SigningKey
from services.intake.adapters.tables import case_reports, duplicate_candidates, household_links, identities
from services.intake.adapters.vault import Sealed
from tests.integration.helpers import (
    KEYS_SINCE,
    delivered,
    emitted,
    intake_consumer,
    keyring_of,
    message,
    of_type,
    on_topic,
    positions,
)

V2 = "ro.punte.report.submitted.v2"
COLONESTI = 21891
KEYS = {i: SigningKey.generate(f"{i}-1") for i in ("dsp-bc", "isj-bc", "dgaspc-bc", "spas-colonesti")}
KEYRING = keyring_of(KEYS)
CHILD_CNP, SIBLING_CNP = "5150412041230", "6170903041234"


def report(sender: str = "isj-bc", **changes) -> dict:
    data = {
        "reporter": {"institution": sender, "role": "school-counsellor"},
        "channel": "school",
        "child": {"cnp": CHILD_CNP, "uat_siruta": COLONESTI, "county": "BC",
                  "address": "str. Exemplului nr. 1, Colonești"},
        "risks": [{"category": "school_absenteeism", "indicators": ["absent 20 days"]}],
        "description": "Date sintetice.",
    }
    data.update(changes)
    return data


def signed(data: dict, sender: str = "isj-bc", type: str = V2, time: datetime | None = None,
           key: SigningKey | None = None) -> CloudEvent:
    return (key or KEYS[sender]).sign(CloudEvent.new(type, f"/institutions/{sender}", data, time=time))


@pytest.fixture
async def intake(infrastructure):
    consumer, engine, service = await intake_consumer(infrastructure.database_url, KEYRING)
    yield consumer, engine, service
    await engine.dispose()


async def send(consumer, event: CloudEvent, sender: str = "isj-bc") -> None:
    await consumer.process([message(f"punte.ingress.{sender}", event, offset=next(positions))])


def answers(out, sender="isj-bc"):
    return delivered(out, sender)


async def test_identity_is_sealed_and_internal_events_carry_the_pseudonym(intake):
    consumer, engine, service = intake
    await send(consumer, signed(report()))
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(identities))).one()
    assert CHILD_CNP.encode() not in row.ciphertext and b"Exemplului" not in row.ciphertext
    identity = service.vault.open(Sealed(row.key_id, row.nonce, row.ciphertext), row.child_ref)
    assert identity["cnp"] == CHILD_CNP and identity["address"].startswith("str. Exemplului")
    out = await emitted(engine)
    internal = str(on_topic(out, "punte.cases"))
    assert CHILD_CNP not in internal and "Exemplului" not in internal and row.child_ref in internal


async def test_deadlines_start_at_receipt_by_urgency(intake):
    consumer, engine, _ = intake
    await send(consumer, signed(report(risks=[{"category": "neglect"}])))
    [opened] = of_type(await emitted(engine), "ro.punte.case.opened.v1")
    received = datetime.fromisoformat(opened["received_at"])
    assert opened["urgency"] == "P1"
    assert datetime.fromisoformat(opened["deadlines"]["acknowledge"]) - received == timedelta(hours=24)
    assert datetime.fromisoformat(opened["deadlines"]["first_action"]) - received == timedelta(hours=72)


async def test_a_new_report_about_a_child_with_an_open_case_joins_it(intake):
    consumer, engine, _ = intake
    await send(consumer, signed(report()))  # the SPAS leads, CJRAE and the school are informed
    # The lead itself reports neglect too (a reporter outside the case is told less:
    # tests/integration/test_intake_access.py).
    spas = report("spas-colonesti", reporter={"institution": "spas-colonesti", "role": "social-worker"},
                  channel="social-worker",
                  risks=[{"category": "school_absenteeism"}, {"category": "neglect"}])
    await send(consumer, signed(spas, "spas-colonesti"), "spas-colonesti")
    out = await emitted(engine)
    [first], [second] = answers(out), answers(out, "spas-colonesti")
    assert second["merged"] is True and second["case_id"] == first["case_id"]
    assert second["urgency"] == "P1", "neglect raised the case from P2"
    [added] = of_type(out, "ro.punte.case.report-added.v1")
    assert added["new_categories"] == ["neglect"] and added["reporter"]["institution"] == "spas-colonesti"
    async with engine.connect() as conn:
        reporters = (await conn.execute(sa.select(case_reports.c.reporter)
                                        .order_by(case_reports.c.received_at))).scalars().all()
    assert reporters == ["isj-bc", "spas-colonesti"]


async def test_a_report_on_other_risks_opens_a_separate_case(intake):
    consumer, engine, _ = intake
    await send(consumer, signed(report()))
    await send(consumer, signed(report(risks=[{"category": "extreme_poverty"}])))
    out = await emitted(engine)
    first, second = of_type(out, "ro.punte.case.opened.v1")
    assert first["case_id"] != second["case_id"]
    assert [a["status"] for a in answers(out)] == ["accepted", "accepted"]
    assert not any(a.get("merged") for a in answers(out))


def unnamed_child(given: str, family: str, birth: str | None = "2015-04-12", **more) -> dict:
    return report(child={"given_name": given, "family_name": family, "uat_siruta": COLONESTI,
                         "county": "BC", **({"birth_date": birth} if birth else {}), **more})


async def test_a_lookalike_without_cnp_is_flagged_for_a_person_never_merged(intake):
    consumer, engine, _ = intake
    await send(consumer, signed(unnamed_child("Ana-Maria", "Testescu")))
    await send(consumer, signed(unnamed_child("Ana Maria", "Testesku")))
    await send(consumer, signed(unnamed_child("Ana Maria", "Testesku", birth="2013-01-30")))
    first, second, third = answers(await emitted(engine))
    assert second["case_id"] != first["case_id"] and not second.get("merged")
    assert second["possible_duplicate_of"] == [first["case_id"]]
    assert not third.get("possible_duplicate_of"), "another birth date is another child"
    async with engine.connect() as conn:
        flagged = (await conn.execute(sa.select(duplicate_candidates))).one()
    assert (flagged.case_id, flagged.candidate_case_id, flagged.status) == (
        second["case_id"], first["case_id"], "pending")


async def test_siblings_in_one_household_are_linked(intake):
    consumer, engine, _ = intake
    household = {"siblings": [{"cnp": SIBLING_CNP}], "carer": {"given_name": "Maria",
                 "family_name": "Exemplu", "relationship": "mother"}}
    await send(consumer, signed(report(household=household)))
    sibling = report(child={"cnp": SIBLING_CNP, "uat_siruta": COLONESTI, "county": "BC"},
                     risks=[{"category": "neglect"}])
    await send(consumer, signed(sibling))
    out = await emitted(engine)
    first_case = answers(out)[0]["case_id"]
    opened = of_type(out, "ro.punte.case.opened.v1")
    assert opened[1]["sibling_cases"] == [first_case]
    async with engine.connect() as conn:
        links = (await conn.execute(sa.select(household_links))).all()
    assert len(links) == 2, "linked both ways"


@pytest.mark.parametrize("household, categories", [
    ({"alleged_abuser_in_household": True}, ["physical_abuse"]),
    ({}, ["domestic_violence"]),
])
async def test_do_not_contact_travels_with_the_case(intake, household, categories):
    consumer, engine, _ = intake
    await send(consumer, signed(report(household=household, risks=[{"category": c} for c in categories])))
    [opened] = of_type(await emitted(engine), "ro.punte.case.opened.v1")
    assert opened["do_not_contact"] is True


async def test_a_child_living_in_another_county_is_routed_there(intake):
    consumer, engine, _ = intake
    away = report(child={"given_name": "Ioana", "family_name": "Exemplu", "estimated_age_years": 9,
                         "county": "NT"}, risks=[{"category": "neglect"}])
    await send(consumer, signed(away))
    out = await emitted(engine)
    [opened], [answer] = of_type(out, "ro.punte.case.opened.v1"), answers(out)
    assert (opened["lead"], opened["informed"]) == ("dgaspc-nt", [])
    assert answer["status"] == "accepted" and "case_id" not in answer, "the school takes no part in it"


async def test_a_v1_report_is_still_accepted(intake):
    consumer, engine, _ = intake
    v1 = {"reporter": {"institution": "isj-bc", "role": "school-counsellor"}, "channel": "school",
          "child": {"cnp": CHILD_CNP, "uat_siruta": COLONESTI}, "categories": ["bullying"],
          "description": "Date sintetice."}
    await send(consumer, signed(v1, type="ro.punte.report.submitted.v1"))
    [answer] = answers(await emitted(engine))
    assert answer["status"] == "accepted" and answer["urgency"] == "P2"


async def test_a_replayed_event_has_no_second_effect(intake):
    consumer, engine, _ = intake
    event = signed(report())
    await send(consumer, event)
    await send(consumer, event)
    out = await emitted(engine)
    assert len(answers(out)) == 1 and len(of_type(out, "ro.punte.case.opened.v1")) == 1


def now() -> datetime:
    # At the moment the event is built: a slow run must not age a "future" event into the window.
    return datetime.now(timezone.utc)


@pytest.mark.parametrize("event, code", [
    (lambda: signed(report(), time=now() - timedelta(days=8)), "STALE_EVENT"),
    (lambda: signed(report(), time=now() + timedelta(minutes=10)), "FUTURE_EVENT"),
    (lambda: signed(report(), key=SigningKey.generate("isj-bc-1")), "BAD_SIGNATURE"),
    (lambda: signed(report(), key=SigningKey.generate("isj-bc-9")), "UNKNOWN_KEY"),
    (lambda: signed(report("dsp-bc"), "dsp-bc"), "SOURCE_MISMATCH"),  # sent on isj-bc's topic
    (lambda: signed({"case_id": "x"}, type="ro.punte.case.opened.v1"), "SENDER_NOT_ALLOWED"),
    (lambda: signed(report(risks=[{"category": "witchcraft"}])), "UNKNOWN_CATEGORY"),
    (lambda: signed(report(observation_sheet={"sheet_number": "7", "observed_on": "2026-11-02",
                                              "economic": {"owns_a_yacht": True}})),
     "UNKNOWN_OBSERVATION_ITEM"),
])
async def test_untrusted_or_unfit_reports_are_rejected(intake, event, code):
    consumer, engine, _ = intake
    await send(consumer, event())
    out = await emitted(engine)
    [answer] = answers(out)
    assert answer["status"] == "rejected" and answer["reason"]["code"] == code
    assert not of_type(out, "ro.punte.case.opened.v1")


async def test_key_rotation_with_overlap_and_expiry(infrastructure):
    old, new = SigningKey.generate("isj-bc-1"), SigningKey.generate("isj-bc-2")
    now = datetime.now(timezone.utc)
    keyring = Keyring([
        PublicKey(old.key_id, "isj-bc", old.public_raw(), KEYS_SINCE, now + timedelta(days=1)),
        PublicKey(new.key_id, "isj-bc", new.public_raw(), now - timedelta(days=1), None),
    ])
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, keyring)
    try:
        await send(consumer, signed(report(), key=old))
        await send(consumer, signed(report(risks=[{"category": "bullying"}]), key=new))
        expired_keyring = Keyring([
            PublicKey(old.key_id, "isj-bc", old.public_raw(), KEYS_SINCE, now - timedelta(minutes=1)),
            PublicKey(new.key_id, "isj-bc", new.public_raw(), now - timedelta(days=1), None),
        ])
        consumer_after, engine_after, _ = await intake_consumer(infrastructure.database_url, expired_keyring)
        await send(consumer_after, signed(report(), key=old))
        during, after = answers(await emitted(engine)), answers(await emitted(engine_after))
        await engine_after.dispose()
    finally:
        await engine.dispose()
    assert [a["status"] for a in during] == ["accepted", "accepted"], "both keys valid in the overlap"
    assert after[0]["reason"]["code"] == "UNKNOWN_KEY", "the old key expired"


async def test_a_message_on_the_topic_of_an_unknown_institution_is_dead_lettered(intake):
    consumer, engine, _ = intake
    await consumer.process([message("punte.ingress.nobody", signed(report()), offset=next(positions))])
    out = await emitted(engine)
    dead = on_topic(out, DEAD_LETTER_TOPIC)
    assert [d["reason"]["code"] for d in dead] == ["UNKNOWN_INSTITUTION"]


async def test_identities_are_resealed_under_a_new_key_and_the_old_key_can_go(infrastructure):
    from services.intake.adapters.repository import reseal_identities
    from services.intake.adapters.vault import IdentityVault

    old, new = bytes(range(32)), bytes(range(1, 33))
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING,
                                                vault=IdentityVault({"k1": old}, "k1"))
    try:
        await send(consumer, signed(report()))
        await send(consumer, signed(report(child={"cnp": SIBLING_CNP, "uat_siruta": COLONESTI, "county": "BC"})))
        rotated = IdentityVault({"k2": new, "k1": old}, "k2")
        async with make_sessions(engine)() as session:
            assert await reseal_identities(session, rotated, batch=1) == 2
            assert await reseal_identities(session, rotated) == 0
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(identities))).all()
    finally:
        await engine.dispose()
    only_new = IdentityVault({"k2": new}, "k2")
    assert {r.key_id for r in rows} == {"k2"}
    assert {only_new.open(Sealed(r.key_id, r.nonce, r.ciphertext), r.child_ref)["cnp"] for r in rows} == {
        CHILD_CNP, SIBLING_CNP}
