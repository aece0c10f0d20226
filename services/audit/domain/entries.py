"""What one audit entry is: canonical bytes recorded for a Kafka record, so anyone can
rebuild them; and the checks an auditor runs over stored entries.

Two log versions (decision 0016):
  1  {"topic", "partition", "offset", "timestamp_ms", "key", "headers", "value"}: the exact
     record, its value in base64 (entries appended before log version 2).
  2  {"v": 2, "topic", "partition", "offset", "timestamp_ms", "key", "headers",
     "value_sha256"}: the record with its value replaced by the value's SHA-256 (hex; null
     for a tombstone). The value itself is kept apart, sealed under its scope's data key,
     so erasing it leaves the leaf, and every proof, as they were.
Both are JSON with sorted keys, no spaces, UTF-8; the RFC 9162 leaf hash is over them.

Broker epochs (decision 0025): a broker that lost its log (the embedded memory broker
restarted, a cluster rebuilt) numbers offsets from 0 again. The trail then holds another
record at a position it already has; that starts a new epoch, and version 2 entries of
epoch 2 and later also carry "epoch", so the same position in two epochs is two leaves."""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime import json_bytes


@dataclass(frozen=True)
class Record:
    """One Kafka record as consumed, before anything is interpreted."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    value: bytes | None


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


LOG_VERSION = 2


def value_sha256(value: bytes | None) -> str | None:
    """The digest a version 2 leaf commits to; None for a tombstone (unlike empty bytes)."""
    return None if value is None else hashlib.sha256(value).hexdigest()


def _position(record: Record) -> dict[str, Any]:
    return {
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "timestamp_ms": record.timestamp_ms, "key": _b64(record.key),
        # Header values are text in this network (ce_*, traceparent, signatures); a stray
        # binary one is kept readable rather than failing the append. By contract they
        # carry no personal data, so they stay in the leaf.
        "headers": [[k, (v or b"").decode("utf-8", errors="replace")] for k, v in record.headers],
    }


def _dump(document: dict[str, Any]) -> bytes:
    return json_bytes.canonical(document)


def canonical(record: Record, epoch: int = 1) -> bytes:
    """The bytes that are hashed (log version 2): the record, its value as a digest, and
    after the first broker epoch, the epoch."""
    document = {"v": LOG_VERSION, **_position(record), "value_sha256": value_sha256(record.value)}
    if epoch > 1:
        document["epoch"] = epoch
    return _dump(document)


def canonical_v1(record: Record) -> bytes:
    """Log version 1's bytes: the exact record, value included (kept to read old logs)."""
    return _dump({**_position(record), "value": _b64(record.value)})


@dataclass(frozen=True)
class Leaf:
    """A stored entry read back: its log version, what it says without the value, and for
    version 1 the value its bytes hold (never shown to auditors)."""

    version: int
    digest_form: dict[str, Any]  # the entry as version 2 would record it
    v1_value: bytes | None = None


def read_leaf(entry: bytes) -> Leaf:
    """The log version and digest form of stored entry bytes. Bytes that are not an entry
    of either version (a tampered row) read as version 2 with nothing known."""
    try:
        document = json.loads(entry)
    except ValueError:
        return Leaf(LOG_VERSION, {})
    if not isinstance(document, dict):
        return Leaf(LOG_VERSION, {})
    if document.get("v") == LOG_VERSION:
        return Leaf(LOG_VERSION, document)
    raw = document.pop("value", None)
    try:
        value = base64.b64decode(raw, validate=True) if isinstance(raw, str) else None
    except ValueError:
        value = None
    return Leaf(1, {"v": 1, **document, "value_sha256": value_sha256(value)}, value)


@dataclass(frozen=True)
class LeafCheck:
    ok: bool
    entries: int
    first_bad: int | None  # the entry's seq (1-based)
    problem: str | None


def check_leaves(rows: Iterable[tuple[int, bytes, bytes]], leaf_hash: Callable[[bytes], bytes],
                 first: int = 1) -> LeafCheck:
    """Stored rows (seq, entry bytes, stored leaf hash) in seq order: numbered first,
    first + 1, … with no gap, and each leaf hash the hash of its bytes. A long log is
    checked a page at a time, each page from the seq where the previous one ended."""
    count = 0
    for expected, (seq, entry, stored) in enumerate(rows, start=first):
        count += 1
        if seq != expected:
            return LeafCheck(False, count, expected, f"entry {expected} is missing (found {seq})")
        if leaf_hash(entry) != stored:
            return LeafCheck(False, count, seq, f"entry {seq}: bytes do not match their leaf hash")
    return LeafCheck(True, count, None, None)


@dataclass(frozen=True)
class Gap:
    topic: str
    partition: int
    first_missing: int
    last_missing: int


def gaps(positions: Iterable[tuple[str, int, int]] | Iterable[tuple[int, str, int, int]]) -> list[Gap]:
    """Offsets skipped in any partition, from offset 0: proof that no record was left out
    (positions sorted by [epoch,] topic, partition, offset; each epoch numbers from 0)."""
    found: list[Gap] = []
    current: tuple = ()
    expected = 0
    for position in positions:
        *where, topic, partition, offset = position
        if (*where, topic, partition) != current:
            current, expected = (*where, topic, partition), 0
        if offset > expected:
            found.append(Gap(topic, partition, expected, offset - 1))
        expected = max(expected, offset + 1)
    return found


@dataclass(frozen=True)
class Lag:
    """Messages a partition holds beyond what the trail has audited: not (yet) recorded."""

    topic: str
    partition: int
    audited_to: int  # the next offset the trail expects
    end_offset: int  # the partition's end on the broker
    missing: int


def tails(audited_next: Mapping[tuple[str, int], int],
          bounds: Mapping[tuple[str, int], tuple[int, int]]) -> tuple[list[Lag], list[Gap]]:
    """What the trail holds against the broker's partitions: ``audited_next`` is each
    partition's highest audited offset + 1, ``bounds`` each partition's (first offset
    still held, end offset). Messages still on the broker past the trail are lagging (the
    consumer may yet record them); messages that left the broker (retention, loss) before
    the trail recorded them are a hole that can never be filled."""
    lagging: list[Lag] = []
    lost: list[Gap] = []
    for (topic, partition), (first, end) in sorted(bounds.items()):
        expected = audited_next.get((topic, partition), 0)
        if first > expected:
            lost.append(Gap(topic, partition, expected, first - 1))
        start = max(expected, first)
        if end > start:
            lagging.append(Lag(topic, partition, start, end, end - start))
    return lagging, lost
