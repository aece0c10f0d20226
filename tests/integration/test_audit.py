"""The audit trail against a real database: every message exactly once whatever the
redeliveries, a Merkle tree whose roots and proofs agree with the RFC, signed checkpoints
and witnesses, and exports an auditor verifies offline — including after tampering."""
from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from unittest.mock import ANY

import pytest
import sqlalchemy as sa

from contracts.refusals import Refused
from runtime.cloudevents import CloudEvent
from runtime.inbox import InboxConsumer, Message, UnitOfWork
from runtime.kafka import ensure_topics, make_producer, partition_bounds
from runtime.outbox import Outbox
from runtime.signing import Keyring, PublicKey, SigningKey
from services.audit import handlers
from services.audit.adapters.tables import audit_entries, tree_nodes
from services.audit.domain import checkpoint, merkle, offline, tiles
from services.audit.domain.subjects import MAX_SEARCHABLE
from tests.integration.helpers import (
    NETWORK_KEY,
    Statements,
    audit_consumer,
    audit_trail,
    emitted,
    message,
    migrated_database,
    read_topic,
)

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "audit" / "migrations"
LOG = handlers.Log("punte.test/audit", SigningKey.generate("punte.test/audit-1"))
WITNESS = SigningKey.generate("isj-bc-1")
KEYRING = Keyring([PublicKey(WITNESS.key_id, "isj-bc", WITNESS.public_raw(),
                             datetime(2026, 1, 1, tzinfo=timezone.utc), None)])


@pytest.fixture
async def audit(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "audit", MIGRATIONS)
    trail = audit_trail()

    def replica(batched: bool = True) -> InboxConsumer:
        return audit_consumer(sessions, trail, batched=batched)
    yield replica, engine, sessions
    await engine.dispose()


def batch(topic: str, n: int, start: int = 0):
    return [message(topic, CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake",
                                          {"case_id": f"case-{i}", "child_ref": f"ch-{i}"}), offset=i)
            for i in range(start, start + n)]


async def settle(sessions) -> int:
    async with sessions() as session, session.begin():
        return await handlers.integrate(session)


async def stored(engine) -> list:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(audit_entries).order_by(audit_entries.c.seq))).all()


async def test_two_replicas_redelivering_overlapping_batches_record_each_message_once(audit):
    replica, engine, sessions = audit
    first, second = replica(), replica(batched=False)  # the batch path and the one-by-one path
    cases, garbage = batch("punte.cases", 40), [message("punte.ingress.isj-bc", value=b"\x00not json", offset=0)]
    await asyncio.gather(first.process_with_retry(cases[:30] + garbage), second.process_with_retry(cases[10:]))
    await first.process(cases)  # and the broker redelivers everything once more
    rows = await stored(engine)
    assert [r.seq for r in rows] == list(range(1, 42)), "one gapless sequence"
    assert len({(r.topic, r.offset) for r in rows}) == 41
    assert {r.institution for r in rows if r.topic == "punte.ingress.isj-bc"} == {"isj-bc"}
    assert {r.child_ref for r in rows if r.topic == "punte.cases"} == {f"ch-{i}" for i in range(40)}
    assert first.dead_lettered == second.dead_lettered == 0
    async with sessions() as session:
        result = await handlers.verify_stored(session)
    assert result.verified and result.entries == 41 and result.gaps == []


async def test_a_broker_that_lost_its_log_starts_a_new_epoch_and_nothing_it_then_carries_is_left_out(audit):
    """The embedded broker keeps topics in memory: restarted, it numbers every partition
    from 0 again. The trail must record those new records, not take them for repeats of
    the old ones at the same positions, and still verify."""
    replica, engine, sessions = audit
    consumer = replica()
    before = batch("punte.cases", 5)
    await consumer.process(before)
    await consumer.process(before)  # redelivered: the same records, nothing new
    after = batch("punte.cases", 3)  # the rebuilt broker's first records, at offsets 0..2
    await consumer.process(after)
    await consumer.process(after[1:])  # and redelivered in the new epoch too
    rows = await stored(engine)
    assert [r.seq for r in rows] == list(range(1, 9)), "every record once, in one gapless sequence"
    assert [(r.epoch, r.offset) for r in rows] == [(1, i) for i in range(5)] + [(2, i) for i in range(3)]
    assert [json.loads(r.entry).get("epoch") for r in rows[5:]] == [2, 2, 2]
    assert await settle(sessions) == 8
    async with sessions() as session:
        check = await handlers.verify_stored(session)
    assert check.verified and check.gaps == [], check.problems
    report = offline.verify_export(await exported(sessions), LOG.origin, LOG.public())
    assert report.ok and report.checked == 8


async def test_after_a_new_broker_epoch_verify_compares_the_new_log_with_the_new_epoch_only(audit):
    """Decision 0026: the service notices a new broker epoch (the audit starts a new trail
    epoch in the same transaction) and its consumer reads the new log from the beginning.
    Records the consumer took from the new log at its old positions before the notice stay
    in the old epoch and are recorded again in the new one; /verify compares the new log
    with the new epoch only, and every epoch's proofs still hold."""
    _, engine, sessions = audit
    trail = audit_trail()
    ordinal = 1

    def consumer() -> InboxConsumer:
        return audit_consumer(sessions, trail, message_key=handlers.key_in_epoch(lambda: ordinal))
    await consumer().process(batch("punte.cases", 5))
    new_log = batch("punte.cases", 7)  # the rebuilt broker's records, from offset 0
    await consumer().process(new_log[5:])  # read at the old positions before the epoch was noticed
    async with engine.begin() as conn:
        assert await handlers.start_epoch(conn, "epoch-b") == 2
    ordinal = 2
    ends = {("punte.cases", 0): (0, 7)}
    async with sessions() as session:
        check = await handlers.verify_stored(session, ends=ends)
    assert check.state == "lagging" and check.not_audited == 7, "the new log is not audited yet"
    await consumer().process(new_log)  # read again from the beginning in the new epoch
    await consumer().process(new_log)  # and redelivered: nothing more
    rows = await stored(engine)
    assert [(r.epoch, r.offset) for r in rows] == [(1, i) for i in range(7)] + [(2, i) for i in range(7)]
    assert await settle(sessions) == 14
    async with sessions() as session:
        check = await handlers.verify_stored(session, ends=ends)
    assert check.state == "verified" and check.gaps == [], check.problems
    report = offline.verify_export(await exported(sessions), LOG.origin, LOG.public())
    assert report.ok and report.checked == 14


async def test_the_stored_tree_agrees_with_the_rfc_for_every_size(audit):
    replica, engine, sessions = audit
    for start in range(0, 37, 9):  # appended and integrated in uneven batches
        await replica().process(batch("punte.cases", 9, start))
        await settle(sessions)
    entries = [r.entry for r in await stored(engine)]
    reference = merkle.MemoryTree(entries)
    async with sessions() as session:
        for size in (1, 2, 3, 8, 17, 31, 45):
            root = await handlers.root_at(session, size)
            assert root == reference.root(size)
            for index in (0, size // 2, size - 1):
                proof = await handlers.inclusion(session, index, size)
                assert merkle.verify_inclusion(merkle.leaf_hash(entries[index]), index, size, proof, root)
        for first, second in ((1, 45), (7, 8), (16, 45), (30, 31)):
            proof = await handlers.consistency(session, first, second)
            assert merkle.verify_consistency(first, second, reference.root(first), reference.root(second), proof)


async def test_checkpoints_are_signed_published_and_witnessed(audit):
    replica, engine, sessions = audit
    await replica().process(batch("punte.cases", 12))
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session, Outbox(session), "/punte/audit")
        note = await handlers.issue_checkpoint(uow, LOG)
        again = await handlers.issue_checkpoint(uow, LOG)
        await uow.outbox.flush()
    assert again is None, "nothing new, no new checkpoint"
    signed = checkpoint.verify_note(note, LOG.origin, LOG.public())
    assert signed.size == 12 and signed.root == merkle.MemoryTree([r.entry for r in await stored(engine)]).root()
    [published] = [data for topic, _, data in await emitted(engine) if topic == handlers.CHECKPOINT_TOPIC]
    assert (published["size"], published["note"]) == (12, note)
    line = checkpoint.cosign(note, "isj-bc", WITNESS.private, 1_800_000_000)
    async with sessions() as session, session.begin():
        witnessed = await handlers.add_cosignature(session, 12, "isj-bc", line, KEYRING)
        with pytest.raises(Refused) as forged:
            await handlers.add_cosignature(session, 12, "isj-bc",
                                           checkpoint.cosign(note, "isj-bc", SigningKey.generate("x").private, 1),
                                           KEYRING)
    assert forged.value.code == "BAD_COSIGNATURE"
    assert checkpoint.verify_cosignature(witnessed, "isj-bc", WITNESS.public_raw()) == 1_800_000_000
    assert checkpoint.verify_note(witnessed, LOG.origin, LOG.public()).size == 12


async def exported(sessions) -> offline.MemorySource:
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session, Outbox(session), "/punte/audit")
        await handlers.issue_checkpoint(uow, LOG)
        await uow.outbox.flush()
    return await export_of(sessions)


async def export_of(sessions, page: int = handlers.EXPORT_PAGE) -> offline.MemorySource:
    """The export's files as the service streams them (read a page of entries at a time)."""
    async with sessions() as session:
        of = await handlers.export_checkpoint(session)
        return offline.MemorySource({path: data async for path, data in handlers.export_files(session, LOG, of, page)})


async def test_an_export_verifies_offline_and_tampering_is_found_at_its_entry(audit):
    replica, engine, sessions = audit
    await replica().process(batch("punte.cases", 300))
    source = await exported(sessions)
    good = offline.verify_export(source, LOG.origin, LOG.public())
    assert good.ok and good.checked == 300
    assert sorted(p for p in source.paths() if p.startswith("tile/")) == [
        "tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1", "tile/entries/000", "tile/entries/001.p/44"]
    assert (await export_of(sessions, page=256)).files == source.files, "the same export, a page at a time"
    # The operator changes one stored byte of entry 12 (seq 13) after the checkpoint.
    async with engine.begin() as conn:
        entry = await conn.scalar(sa.select(audit_entries.c.entry).where(audit_entries.c.seq == 13))
        await conn.execute(sa.update(audit_entries).where(audit_entries.c.seq == 13)
                           .values(entry=entry.replace(b'"offset":12', b'"offset":99')))
    async with sessions() as session:
        stored_check = await handlers.verify_stored(session)
        paged_check = await handlers.verify_stored(session, page=6)  # seq 13 opens the third page
    tampered = await export_of(sessions)
    assert not stored_check.verified and stored_check.first_bad == 13
    assert paged_check == stored_check
    report = offline.verify_export(tampered, LOG.origin, LOG.public())
    assert not report.ok and report.first_bad == 12  # 0-based index of seq 13
    assert report.problem == ("entry 12 was altered: its leaf hash differs from tile/0/000, "
                              "and the tiles build the signed root")
    assert tiles.decode_bundle(tampered.read("tile/entries/000"))[12] != entry


async def test_a_changed_tree_node_no_longer_matches_the_signed_checkpoint(audit):
    replica, engine, sessions = audit
    await replica().process(batch("punte.cases", 10))
    await exported(sessions)
    async with engine.begin() as conn:  # the root of 10 leaves is node(3, 0) over node(1, 4)
        await conn.execute(sa.update(tree_nodes).where(tree_nodes.c.level == 1, tree_nodes.c.index == 4)
                           .values(hash=bytes(32)))
    async with sessions() as session:
        result = await handlers.verify_stored(session)
    assert not result.verified and result.first_bad is None
    assert result.problems == ["the tree at size 10 does not match its signed checkpoint"]


async def test_the_table_export_describes_the_same_entries_as_the_verifiable_one(audit):
    replica, engine, sessions = audit
    await replica().process(batch("punte.cases", 5) + batch("punte.referrals", 3))
    source = await exported(sessions)
    async with sessions() as session:
        table = await handlers.export_table(session)
    assert len(table) == 8
    bundled = tiles.decode_bundle(source.read("tile/entries/000.p/8"))
    for row, proved, entry in zip(table, offline.described(source), bundled, strict=True):
        assert row == {"index": proved["index"], "topic": proved["topic"], "partition": proved["partition"],
                       "offset": proved["offset"], "event_type": proved["event_type"],
                       "case_id": proved["case_id"], "recorded_at": proved["recorded_at"],
                       "log_version": proved["log_version"], "leaf_hash": merkle.leaf_hash(entry).hex(),
                       "value_sha256": json.loads(entry)["value_sha256"], "value_state": "sealed",
                       "erased_at": None, "erased_rule": None}


async def test_a_message_with_odd_text_is_recorded_like_any_other(audit):
    replica, engine, sessions = audit
    odd = [{"case_id": "case-\u0000-nul"}, {"actor": "\udc00"}, {"case_id": "c" * 6000}, {"case_id": "case-plain"}]
    consumer = replica()
    await consumer.process([message("punte.cases", value=json.dumps(body).encode(), offset=i)
                            for i, body in enumerate(odd)])
    rows = await stored(engine)
    assert consumer.dead_lettered == 0 and [r.offset for r in rows] == [0, 1, 2, 3]
    assert [r.case_id for r in rows] == ["case-\ufffd-nul", None, "c" * MAX_SEARCHABLE, "case-plain"]
    # The leaf commits to the exact bytes' digest; the exact bytes are kept, sealed.
    exact = json.dumps(odd[0]).encode()
    assert json.loads(rows[0].entry)["value_sha256"] == hashlib.sha256(exact).hexdigest()
    async with sessions() as session:
        assert (await handlers.open_value(session, audit_trail().data_keys, rows[0].seq)).value == exact
    async with sessions() as session:
        assert (await handlers.verify_stored(session)).verified


@pytest.mark.broker
async def test_a_trail_that_missed_the_last_message_of_a_partition_is_not_verified_but_lagging(audit, infrastructure):
    replica, engine, sessions = audit
    topic = f"punte.tail-{uuid.uuid4().hex[:8]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    try:  # one batch of five records: the embedded broker's ListOffsets alone would say one
        sent = [await producer.send(topic, CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake",
                                                          {"case_id": f"case-{i}"}).body()) for i in range(5)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    records = await read_topic(infrastructure.kafka_bootstrap, topic, 5)
    await replica().process([Message.of(r) for r in records[:4]])  # the audit never got the last one
    ends = await partition_bounds(infrastructure.kafka_bootstrap, f"^{topic}$")
    async with sessions() as session:
        result = await handlers.verify_stored(session, ends=ends)
    assert not result.verified and result.state == "lagging" and result.problems == []
    assert result.not_audited == 1
    assert result.lagging == [{"topic": topic, "partition": 0, "audited_to": 4, "end_offset": 5, "missing": 1}]

    await replica().process([Message.of(r) for r in records[4:]])
    async with sessions() as session:
        result = await handlers.verify_stored(session, ends=ends)
    assert result.verified and result.state == "verified" and result.not_audited == 0


def _network(type_: str, data: dict, subject: str) -> CloudEvent:
    return NETWORK_KEY.sign(CloudEvent.new(type_, "/punte/intake", data, subject=subject))


async def _pending_erasures(engine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(sa.text(
            "SELECT scope FROM punte_erasures WHERE done_at IS NULL"))).scalars())


async def test_reports_joining_cases_cancel_their_erasures_in_one_statement_in_order(audit):
    """Every report that opens or joins a case cancels its pending erasure: one statement for
    a batch's run of them, not one per report; schedulings between them keep their order (a
    case closed then reopened in one batch is kept; reopened then closed, it is not)."""
    replica, engine, _ = audit
    inbox = replica()
    refused = [_network("ro.punte.outcome.v1", {
        "subject_id": f"rep-{n}", "subject_type": "ro.punte.report.submitted.v2", "status": "rejected",
        "case_id": None, "reason": {"code": "SCHEMA_VIOLATION", "message_ro": "x", "message_en": "x"}}, f"rep-{n}")
        for n in range(20)]
    await inbox.process([message("punte.delivery.isj-bc", e, offset=n) for n, e in enumerate(refused)])
    assert await _pending_erasures(engine) == {f"report:rep-{n}" for n in range(20)}

    opened = [_network("ro.punte.case.opened.v1", {"case_id": f"case-{n}", "report_id": f"rep-{n}"}, f"case-{n}")
              for n in range(20)]
    with Statements(engine) as statements:
        await inbox.process([message("punte.cases", e, offset=n) for n, e in enumerate(opened)])
    deletes = statements.starting("DELETE FROM punte_erasures")
    assert await _pending_erasures(engine) == set(), "every report joined a case: none is erased"
    assert len(deletes) == 1, "one statement for the batch's cancellations"

    now = datetime.now(timezone.utc).isoformat()
    closed = _network("ro.punte.case.closed.v1", {"case_id": "case-0", "closed_at": now, "report_ids": ["rep-0"]},
                      "case-0")
    reopened = _network("ro.punte.case.reopened.v1", {"case_id": "case-0", "reopened_at": now}, "case-0")
    await inbox.process([message("punte.referrals", e, offset=n) for n, e in enumerate([closed, reopened])])
    assert await _pending_erasures(engine) == set(), "closed, then reopened: kept"
    again = [_network("ro.punte.case.reopened.v1", {"case_id": "case-0", "reopened_at": now}, "case-0"),
             _network("ro.punte.case.closed.v1", {"case_id": "case-0", "closed_at": now, "report_ids": ["rep-0"]},
                      "case-0")]
    await inbox.process([message("punte.referrals", e, offset=n) for n, e in enumerate(again, start=2)])
    assert await _pending_erasures(engine) == {"case:case-0", "report:rep-0"}, "reopened, then closed: erased"


async def test_a_batch_reads_its_scopes_keys_once_and_seals_nothing_into_an_erased_scope(audit):
    """A batch asks for its scopes' data keys in one read, which tells the erased ones too
    (it read them twice), and creates the missing ones in one statement; a value whose scope
    was erased is recorded by its digest only; the head and the epoch come in one statement."""
    replica, engine, sessions = audit
    keys = audit_trail().data_keys
    now = datetime.now(timezone.utc)
    async with sessions() as session, session.begin():
        before = await keys.keys_for(session, ["case:case-0", "case:case-1"], now)
        await keys.erase(session, ["case:case-1"], "closed-case", now)
    messages = batch("punte.cases", 4)
    with Statements(engine) as statements:
        await replica().process(messages)
    assert len(statements.starting("SELECT punte_data_keys")) == 1, "the scopes' keys are read once"
    assert len(statements.starting("INSERT INTO punte_data_keys")) == 1, "the missing ones created at once"
    heads = [s for s in statements.sent if "max(audit_entries.seq)" in s]
    assert len(heads) == 1 and "audit_epoch_starts" in heads[0], "the head and the epoch in one statement"
    rows = await stored(engine)
    assert [r.value_scope for r in rows] == [f"case:case-{i}" for i in range(4)]
    async with sessions() as session:
        assert await keys.existing(session, ["case:case-0", "case:case-2", "case:case-3"]) == {
            "case:case-0": before["case:case-0"], "case:case-2": ANY, "case:case-3": ANY}
        assert (await handlers.open_value(session, keys, rows[0].seq)).value == messages[0].value
        with pytest.raises(handlers.ValueErased):
            await handlers.open_value(session, keys, rows[1].seq)
        assert (await handlers.open_value(session, keys, rows[2].seq)).scope == "case:case-2"
