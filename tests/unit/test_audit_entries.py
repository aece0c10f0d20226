"""The audit entries' own checks: canonical bytes, stored rows against their leaf hashes,
offset gaps per partition, and what an entry is about."""
from __future__ import annotations

import hashlib
import json

from services.audit.domain import values
from services.audit.domain.entries import (
    Record,
    canonical,
    canonical_v1,
    check_leaves,
    gaps,
    read_leaf,
    tails,
)
from services.audit.domain.merkle import leaf_hash
from services.audit.domain.subjects import MAX_SEARCHABLE, searchable, subject_of


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


def test_searchable_text_has_no_nul_and_no_lone_surrogate_and_keeps_plain_ids_as_they_are():
    assert searchable("case-0001") == "case-0001" and searchable("") is None and searchable(None) is None
    assert searchable("a\x00b") == "a\ufffdb"  # ASCII, but with a NUL
    assert searchable("ș\udc00") == "ș?"  # a lone surrogate cannot be stored
    assert searchable("c" * 600) == "c" * MAX_SEARCHABLE and searchable("ă" * 600) == "ă" * MAX_SEARCHABLE


def test_gaps_are_found_per_partition_from_offset_zero():
    positions = [("a", 0, 0), ("a", 0, 1), ("a", 0, 4), ("a", 1, 2), ("b", 0, 0)]
    found = [(g.topic, g.partition, g.first_missing, g.last_missing) for g in gaps(positions)]
    assert found == [("a", 0, 2, 3), ("a", 1, 0, 1)]


def test_a_version_2_leaf_commits_to_the_value_digest_and_holds_no_value():
    value = json.dumps({"child": {"cnp": "6150312041236"}, "description": "text sintetic"}).encode()
    entry = canonical(record(3, value))
    assert b"6150312041236" not in entry and b"sintetic" not in entry
    leaf = read_leaf(entry)
    assert leaf.version == 2 and leaf.v1_value is None
    assert leaf.digest_form["value_sha256"] == hashlib.sha256(value).hexdigest()
    # A version 1 entry (older logs) reads back in the same digest form, its value apart.
    old = read_leaf(canonical_v1(record(3, value)))
    assert old.version == 1 and old.v1_value == value
    assert {k: v for k, v in old.digest_form.items() if k != "v"} == \
        {k: v for k, v in leaf.digest_form.items() if k != "v"}


def test_each_value_is_sealed_under_its_case_its_report_or_the_network():
    links = {"rep-1": "case-1"}
    report = "ro.punte.report.submitted.v2"
    assert values.scope_of(report, "rep-2", {"case_id": "case-9"}, links) == "report:rep-2", \
        "a sender's body does not choose the case"
    assert values.scope_of(report, "rep-1", {}, links) == "report:rep-1"
    assert values.scope_of("ro.punte.referral.transitioned.v1", "e", {"case_id": "case-1"}, {}) == "case:case-1"
    refused = {"subject_id": "rep-2", "subject_type": report, "status": "rejected"}
    assert values.scope_of("ro.punte.outcome.v1", "e", refused, links) == "report:rep-2"
    answered = {"subject_id": "rep-1", "subject_type": report, "status": "rejected"}
    assert values.scope_of("ro.punte.outcome.v1", "e", answered, links) == "case:case-1"
    dead = {"headers": {"ce_type": report, "ce_id": "rep-3"}}
    assert values.scope_of("ro.punte.deadletter.v1", "e", dead, links) == "report:rep-3"
    assert values.scope_of("ro.punte.audit.checkpoint.v1", "e", {"size": 3}, links) == "network"
    assert values.refused_report("ro.punte.outcome.v1", refused) == "rep-2"
    closed = values.closed_case("ro.punte.case.closed.v1", {
        "case_id": "case-1", "closed_at": "2026-11-01T10:00:00Z", "report_ids": ["rep-1", 7]})
    assert closed is not None and closed.scopes(["rep-2", "rep-1"]) == ["case:case-1", "report:rep-1", "report:rep-2"]
    assert values.reopened_case("ro.punte.case.reopened.v1", {"case_id": "case-1"}) == "case-1"
    assert values.closed_case("ro.punte.case.closed.v1", {"case_id": "case-1", "closed_at": "yesterday"}) is None


def test_the_audit_does_not_start_without_its_data_keys():
    """Fail closed: no value is ever kept in clear for want of a key."""
    from types import SimpleNamespace

    import pytest

    from runtime.settings import Settings
    from runtime.signing import Keyring
    from services.audit.bootstrap import trail

    with pytest.raises(RuntimeError, match="PUNTE_DATA_KEYS"):
        trail(SimpleNamespace(settings=Settings(data_keys=""), network_keys=Keyring([])))
    assert trail(SimpleNamespace(settings=Settings(data_keys="dk-1:" + "22" * 32), network_keys=Keyring([])))


def test_a_tail_on_the_broker_the_trail_does_not_hold_is_lagging_and_one_that_left_it_is_a_hole():
    audited_next = {("punte.cases", 0): 10, ("punte.cases", 1): 7, ("punte.ingress.isj-bc", 0): 3}
    bounds = {("punte.cases", 0): (0, 10),            # everything audited
              ("punte.cases", 1): (0, 9),             # the last two not yet
              ("punte.ingress.isj-bc", 0): (5, 6),    # 3 and 4 gone before they were audited, 5 waits
              ("punte.referrals", 0): (0, 4)}         # a partition the trail holds nothing of
    lagging, lost = tails(audited_next, bounds)
    assert [(t.topic, t.partition, t.audited_to, t.end_offset, t.missing) for t in lagging] == [
        ("punte.cases", 1, 7, 9, 2), ("punte.ingress.isj-bc", 0, 5, 6, 1), ("punte.referrals", 0, 0, 4, 4)]
    assert [(g.topic, g.partition, g.first_missing, g.last_missing) for g in lost] == [("punte.ingress.isj-bc", 0, 3, 4)]
