"""The audit entries' own checks: canonical bytes, stored rows against their leaf hashes,
offset gaps per partition, and what an entry is about."""
from __future__ import annotations

import json

from services.audit.domain.entries import Record, canonical, check_leaves, gaps
from services.audit.domain.merkle import leaf_hash
from services.audit.domain.subjects import MAX_SEARCHABLE, subject_of


def record(offset: int, value: bytes | None = b"{}") -> Record:
    return Record("punte.cases", 0, offset, 1_700_000_000_000, b"k", [("ce_id", b"x")], value)


def test_canonical_bytes_are_stable_and_keep_a_tombstone_apart():
    assert canonical(record(1)) == canonical(record(1))
    assert canonical(record(1, None)) != canonical(record(1, b""))


def rows(n: int) -> list[tuple[int, bytes, bytes]]:
    return [(i, canonical(record(i)), leaf_hash(canonical(record(i)))) for i in range(1, n + 1)]


def test_stored_rows_verify_and_the_first_bad_one_is_named():
    assert check_leaves(rows(10), leaf_hash).ok
    changed = rows(10)
    seq, entry, stored = changed[4]
    changed[4] = (seq, entry[:-1] + b"!", stored)
    assert check_leaves(changed, leaf_hash).first_bad == 5
    missing = rows(10)
    del missing[6]
    assert check_leaves(missing, leaf_hash).first_bad == 7
    swapped = rows(10)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    assert check_leaves(swapped, leaf_hash).first_bad == 3


def test_a_long_log_is_checked_a_page_at_a_time():
    all_rows = rows(10)
    first, second = check_leaves(all_rows[:6], leaf_hash), check_leaves(all_rows[6:], leaf_hash, first=7)
    assert first.ok and second.ok and first.entries + second.entries == 10
    assert check_leaves(all_rows[7:], leaf_hash, first=7).first_bad == 7  # seq 7 missing at a page edge


def test_a_subject_is_always_storable_and_indexable():
    body = json.dumps({"case_id": "case-\u0000-1", "actor": "\ud800", "child_ref": "c" * 5000}).encode()
    subject = subject_of(Record("punte.ingress.isj-bc", 0, 0, 0, None, [("ce_type", b"t" * 3000)], body),
                         ["punte.ingress.{institution}"])
    assert subject.case_id == "case-\ufffd-1" and subject.institution == "isj-bc"
    assert subject.actor.encode("utf-8") == "?".encode()  # the lone surrogate is replaced
    assert len(subject.child_ref) == len(subject.event_type) == MAX_SEARCHABLE


def test_gaps_are_found_per_partition_from_offset_zero():
    positions = [("a", 0, 0), ("a", 0, 1), ("a", 0, 4), ("a", 1, 2), ("b", 0, 0)]
    found = [(g.topic, g.partition, g.first_missing, g.last_missing) for g in gaps(positions)]
    assert found == [("a", 0, 2, 3), ("a", 1, 0, 1)]
