"""What auditors search the trail by, and what an erasure finds entries by, is one GIN
index over the entries' search terms (decision 0045): each search finds exactly the entries
that hold its terms, and finds them through that index (an expression that did not match
the index would leave every search a scan of the whole trail, unnoticed)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from runtime.cloudevents import CloudEvent
from services.audit.adapters.tables import SEARCH_COLUMNS, audit_entries, holding, holding_any
from services.audit.domain.subjects import MAX_SEARCHABLE
from tests.integration.helpers import audit_consumer, audit_trail, message, migrated_database

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "audit" / "migrations"
INDEX = "ix_audit_entries_search_terms"
WIDE = "\U0001d49e" * (MAX_SEARCHABLE + 100)  # four UTF-8 bytes a character: the widest term


@pytest.fixture
async def trail(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "audit", MIGRATIONS)
    consumer = audit_consumer(sessions, audit_trail())
    events = [CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake",
                             {"case_id": f"case-{i % 50}", "child_ref": f"ch-{i % 70}", "actor": f"person-{i % 7}",
                              "actor_institution": "isj-bc"}) for i in range(600)]
    events.append(CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake", {"case_id": WIDE}))
    await consumer.process([message("punte.cases", e, offset=i) for i, e in enumerate(events)])
    async with engine.connect() as conn:
        await conn.execute(sa.text("ANALYZE audit_entries"))
    yield engine
    await engine.dispose()


async def found_and_plan(engine, where: sa.ColumnElement[bool]) -> tuple[set[int], str]:
    query = sa.select(audit_entries.c.seq).where(where)
    async with engine.connect() as conn:
        seqs = set((await conn.execute(query)).scalars())
        # As on a trail of millions, where the planner would not read the whole table.
        await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        compiled = query.compile(conn.sync_connection, compile_kwargs={"literal_binds": True})
        plan = json.dumps((await conn.execute(sa.text(f"EXPLAIN (FORMAT JSON) {compiled}"))).scalar())
    return seqs, plan


async def by_column(engine, **terms: str) -> set[int]:
    query = sa.select(audit_entries.c.seq)
    for column, value in terms.items():
        query = query.where(audit_entries.c[column] == value)
    async with engine.connect() as conn:
        return set((await conn.execute(query)).scalars())


@pytest.mark.parametrize("column", [c for c in SEARCH_COLUMNS if c != "value_scope"])
async def test_a_search_by_each_term_finds_exactly_its_entries_through_the_index(trail, column):
    async with trail.connect() as conn:
        value = await conn.scalar(sa.select(audit_entries.c[column]).where(audit_entries.c[column].is_not(None))
                                  .order_by(audit_entries.c.seq.desc()).limit(1))
    seqs, plan = await found_and_plan(trail, holding(**{column: value}))
    assert seqs and seqs == await by_column(trail, **{column: value})
    assert INDEX in plan


async def test_terms_together_find_the_entries_holding_all_of_them(trail):
    seqs, plan = await found_and_plan(trail, holding(case_id="case-3", child_ref="ch-3"))
    # case-3 is every 50th entry from 3, ch-3 every 70th: both at 3 and 353.
    assert seqs == await by_column(trail, case_id="case-3", child_ref="ch-3") and len(seqs) == 2
    assert INDEX in plan
    assert (await found_and_plan(trail, holding(case_id="case-3", child_ref="ch-4")))[0] == set()


async def test_the_widest_term_a_column_takes_is_held_and_found(trail):
    seqs, _ = await found_and_plan(trail, holding(case_id=WIDE[:MAX_SEARCHABLE]))
    assert len(seqs) == 1


async def test_an_erasure_finds_the_entries_of_its_scopes_through_the_index(trail):
    async with trail.connect() as conn:
        scopes = list((await conn.execute(sa.select(audit_entries.c.value_scope).distinct()
                                          .where(audit_entries.c.value_scope.is_not(None)).limit(3))).scalars())
    assert len(scopes) == 3
    seqs, plan = await found_and_plan(trail, holding_any("value_scope", scopes))
    async with trail.connect() as conn:
        expected = set((await conn.execute(sa.select(audit_entries.c.seq)
                                           .where(audit_entries.c.value_scope.in_(scopes)))).scalars())
    assert seqs == expected and INDEX in plan


def test_a_column_the_trail_is_not_searched_by_is_refused():
    with pytest.raises(ValueError):
        holding(topic="punte.cases")


def test_a_search_without_terms_is_refused_rather_than_matching_everything():
    with pytest.raises(ValueError, match="at least one term"):
        holding()
