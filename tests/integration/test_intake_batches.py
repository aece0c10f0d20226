"""Intake is batch-first (issue #14, item 2; decision 0033): a polled batch of reports is
decided in order against what earlier reports of the same batch did, so it answers as the
same reports taken one at a time would, and it is written with one statement per table
whatever its size. On the real PostgreSQL."""
from __future__ import annotations

import sqlalchemy as sa

from services.intake.adapters.tables import (
    case_reports,
    cases,
    duplicate_candidates,
    household_links,
    reports,
)
from tests.integration.helpers import (
    Statements,
    delivered,
    emitted,
    intake_consumer,
    keyring_of,
    message,
    of_type,
)
from tests.integration.test_intake_v2 import KEYS, SIBLING_CNP, report, signed, unnamed_child

KEYRING = keyring_of(KEYS)
SPAS = {"reporter": {"institution": "spas-colonesti", "role": "social-worker"}, "channel": "social-worker"}
# What a report's effects say, without the times that differ between two runs.
KEPT = ("case_id", "status", "merged", "urgency", "categories", "new_categories", "lead", "informed",
        "sibling_cases", "possible_duplicate_of", "subject_id")


def dependent_batch() -> list:
    """Reports each of which depends on what an earlier one of the batch did."""
    household = {"siblings": [{"cnp": SIBLING_CNP}], "carer": {"given_name": "Maria",
                 "family_name": "Exemplu", "relationship": "mother"}}
    events = [
        ("isj-bc", signed(report(household=household))),  # opens the child's case
        ("isj-bc", signed({**report(), "risks": []})),  # refused (SCHEMA_VIOLATION), in its place
        # The lead reports neglect too: joins the case opened just before, raising it to P1.
        ("spas-colonesti", signed(report("spas-colonesti", **SPAS, risks=[
            {"category": "school_absenteeism"}, {"category": "neglect"}]), "spas-colonesti")),
        # The sibling named by the first report: its case names the case opened just before.
        ("isj-bc", signed(report(child={"cnp": SIBLING_CNP, "uat_siruta": 21891, "county": "BC"},
                                 risks=[{"category": "neglect"}]))),
        # A child without a CNP, then a look-alike of it, then a child born another year.
        ("isj-bc", signed(unnamed_child("Ana-Maria", "Testescu"))),
        ("isj-bc", signed(unnamed_child("Ana Maria", "Testesku"))),
        ("isj-bc", signed(unnamed_child("Ana Maria", "Testesku", birth="2013-01-30"))),
        # The school again about the first child: joins the case the lead raised.
        ("isj-bc", signed(report(risks=[{"category": "neglect"}]))),
    ]
    return [message(f"punte.ingress.{sender}", event, offset=n) for n, (sender, event) in enumerate(events)]


def effects(out) -> list[tuple]:
    return [(topic, headers.get("ce_type"), headers.get("ce_id"),
             {k: data.get(k) for k in KEPT if k in data}, (data.get("reason") or {}).get("code"))
            for topic, headers, data in out]


async def state(engine) -> dict:
    async with engine.connect() as conn:
        return {
            "cases": (await conn.execute(sa.select(cases.c.case_id, cases.c.categories, cases.c.urgency)
                                         .order_by(cases.c.case_id))).all(),
            "reports": (await conn.execute(sa.select(case_reports.c.case_id, case_reports.c.report_id)
                                           .order_by(case_reports.c.report_id))).all(),
            "duplicates": (await conn.execute(sa.select(duplicate_candidates.c.case_id,
                                                        duplicate_candidates.c.candidate_case_id))).all(),
            "households": (await conn.execute(sa.select(household_links).order_by(household_links.c.child_ref))).all(),
            "answers": (await conn.execute(sa.select(reports.c.message_key, reports.c.outcome, reports.c.reason_code,
                                                     reports.c.case_id).order_by(reports.c.message_key))).all(),
        }


async def test_a_batch_answers_as_its_reports_one_at_a_time_would(infrastructure):
    batch = dependent_batch()
    together, together_engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    alone, alone_engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    try:
        await together.process(batch)
        for one in batch:
            await alone.process([one])
        out = await emitted(together_engine)
        assert effects(out) == effects(await emitted(alone_engine))
        assert await state(together_engine) == await state(alone_engine)

        # And what that is: each dependency seen within the batch.
        school, spas = delivered(out, "isj-bc"), delivered(out, "spas-colonesti")
        assert [a["status"] for a in school] == ["accepted", "rejected", *["accepted"] * 5]
        assert spas[0]["merged"] is True and spas[0]["case_id"] == school[0]["case_id"]
        opened = of_type(out, "ro.punte.case.opened.v1")
        assert len(opened) == 5
        assert opened[1]["sibling_cases"] == [school[0]["case_id"]]
        assert opened[3]["possible_duplicate_of"] == [opened[2]["case_id"]]
        assert not opened[4]["possible_duplicate_of"], "another birth date is another child"
        added = of_type(out, "ro.punte.case.report-added.v1")
        assert [a["urgency"] for a in added] == ["P1", "P1"] and school[-1]["case_id"] == school[0]["case_id"]
    finally:
        await together_engine.dispose()
        await alone_engine.dispose()


def reports_of(children: range, first_offset: int) -> list:
    """Reports of distinct children, every fourth without a CNP."""
    out = []
    for n in children:
        if n % 4 == 3:
            data = unnamed_child(f"Copil{n}", f"Sintetic{n}")
        else:
            data = report(child={"cnp": CNPS[n], "uat_siruta": 21891, "county": "BC"})
        out.append(message("punte.ingress.isj-bc", signed(data), offset=first_offset + n))
    return out


def _cnp(serial: int) -> str:
    """A synthetic, valid CNP: a boy born 2015-04-12 in Bacău (county code 04)."""
    body = f"5150412040{serial:02d}"[:12]
    weights = "279146358279"
    check = sum(int(d) * int(w) for d, w in zip(body, weights, strict=True)) % 11
    return body + str(1 if check == 10 else check)


CNPS = [_cnp(n) for n in range(60)]


async def test_a_batch_of_reports_is_written_with_a_constant_number_of_statements(infrastructure):
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    try:
        counts = []
        for children, offset in ((range(0, 8), 0), (range(8, 48), 100)):
            with Statements(engine) as statements:
                await consumer.process(reports_of(children, offset))
            counts.append(len(statements.sent))
        small, large = counts
        assert small == large, f"{small} statements for 8 reports, {large} for 40"
        async with engine.connect() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).select_from(cases)) == 48
    finally:
        await engine.dispose()
