"""A dead letter says where the message was, its digest and why, never what it said (issue
#11, item 4): the body stays sealed in the owning service's database, for a replay, until
the dead-letter-body rule erases it."""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from runtime import dead_letters
from runtime.data_keys import Erased, data_keys_table
from runtime.inbox import DEAD_LETTER_TOPIC, InboxConsumer, Message, UnitOfWork
from runtime.outbox import outbox_table
from runtime.retention import purge
from tests.integration.helpers import TEST_DATA_KEYS, migrated_database, zero_day_schedule

# Intake's migrations carry the runtime tables; its own tables are unused here.
MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "intake" / "migrations"
# Synthetic personal data: none of it may leave in a dead letter.
CNP, NAME, STORY = "5150412041230", "Testescu", "a fost lovit acasă (text sintetic)"
BODY = json.dumps({"child": {"cnp": CNP, "family_name": NAME}, "description": STORY},
                  ensure_ascii=False).encode()


@pytest.fixture
async def database(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "deadletters", MIGRATIONS)
    yield engine, sessions
    await engine.dispose()


async def failing(uow: UnitOfWork, msg: Message) -> None:
    raise ValueError("cannot apply")


def poison(offset: int) -> Message:
    headers = (("ce_id", b"e-1"), ("ce_source", b"/institutions/isj-bc"), ("ce_type", b"ro.punte.test.v1"),
               ("x-child-name", NAME.encode()))
    return Message("in", 0, offset, b"case-1", BODY, headers, 0)


async def dead_letter_rows(engine) -> list[sa.Row]:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(outbox_table).where(outbox_table.c.topic == DEAD_LETTER_TOPIC)
                                   .order_by(outbox_table.c.id))).all()


async def test_a_dead_letter_carries_the_position_the_digest_and_the_reason_but_not_the_body(database):
    engine, sessions = database
    inbox = InboxConsumer(service="intake", group_id="t", bootstrap="t", sessions=sessions,
                          handler=failing, attempts=1, data_keys=TEST_DATA_KEYS)
    await inbox.process([poison(7)])
    [row] = await dead_letter_rows(engine)
    said = row.payload.decode() + json.dumps(row.headers, ensure_ascii=False)
    for secret in (CNP, NAME, STORY, base64.b64encode(BODY).decode()[:40]):
        assert secret not in said
    dead = json.loads(row.payload)
    assert dict(row.headers)["ce_type"] == "ro.punte.deadletter.v2"
    assert (dead["topic"], dead["partition"], dead["offset"]) == ("in", 0, 7)
    assert dead["value_sha256"] == hashlib.sha256(BODY).hexdigest()
    assert dead["reason"]["code"] == "PROCESSING_FAILED" and dead["body_kept"] is True
    assert dead["headers"]["ce_id"] == "e-1" and "x-child-name" not in dead["headers"]
    assert "payload_base64" not in dead

    # The owning service keeps the body, sealed: its table holds no clear text, and the
    # body opens whole (key, headers, value) for a replay.
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.select(dead_letters.dead_letters_table))).one()
    assert CNP.encode() not in stored.sealed and NAME.encode() not in stored.sealed
    async with sessions() as session:
        kept = await dead_letters.open_body(session, TEST_DATA_KEYS, "in/0/7")
    assert (kept.key, kept.value) == (b"case-1", BODY)
    assert ("x-child-name", NAME.encode()) in kept.headers


async def test_a_dead_letter_body_is_erased_by_its_rule_and_nothing_else_is(database, tmp_path):
    engine, sessions = database
    inbox = InboxConsumer(service="intake", group_id="t", bootstrap="t", sessions=sessions,
                          handler=failing, attempts=1, data_keys=TEST_DATA_KEYS)
    await inbox.process([poison(8)])
    [row] = await dead_letter_rows(engine)
    later = row.created_at + timedelta(seconds=1)
    async with sessions() as session, session.begin():
        await purge(session, TEST_DATA_KEYS, zero_day_schedule(tmp_path), later)
    async with sessions() as session:
        with pytest.raises(Erased) as erased:
            await dead_letters.open_body(session, TEST_DATA_KEYS, "in/0/8")
        assert erased.value.rule == "dead-letter-body"
        left = (await session.execute(sa.select(dead_letters.dead_letters_table))).all()
        keys = (await session.execute(sa.select(data_keys_table))).all()
    assert left == [], "the sealed body is deleted as well as its key destroyed"
    assert [(k.scope, k.erased_rule, k.wrapped) for k in keys] == [("dead-letter:in/0/8", "dead-letter-body", None)]
    assert len(await dead_letter_rows(engine)) == 1, "the dead letter itself is not yet published: it stays"


async def test_a_service_without_data_keys_keeps_no_body_and_says_so(database):
    engine, sessions = database
    inbox = InboxConsumer(service="audit", group_id="t", bootstrap="t", sessions=sessions,
                          handler=failing, attempts=1)
    await inbox.process([poison(9)])
    [row] = await dead_letter_rows(engine)
    assert json.loads(row.payload)["body_kept"] is False
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(dead_letters.dead_letters_table))).all() == []

