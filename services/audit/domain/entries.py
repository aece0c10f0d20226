"""What one audit entry is: the exact bytes recorded for a Kafka record (topic, partition,
offset, timestamp, key, headers, value), canonical so anyone can rebuild them; and the
checks an auditor runs over stored entries."""
from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass


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


def canonical(record: Record) -> bytes:
    """The bytes that are hashed. A null value (tombstone) stays null, unlike empty bytes."""
    document = {
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "timestamp_ms": record.timestamp_ms, "key": _b64(record.key),
        # Header values are text in this network (ce_*, traceparent, signatures); a stray
        # binary one is kept readable rather than failing the append.
        "headers": [[k, (v or b"").decode("utf-8", errors="replace")] for k, v in record.headers],
        "value": _b64(record.value),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


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


def gaps(positions: Iterable[tuple[str, int, int]]) -> list[Gap]:
    """Offsets skipped in any partition, from offset 0: proof that no record was left out
    (positions sorted by topic, partition, offset)."""
    found: list[Gap] = []
    current: tuple[str, int] | None = None
    expected = 0
    for topic, partition, offset in positions:
        if (topic, partition) != current:
            current, expected = (topic, partition), 0
        if offset > expected:
            found.append(Gap(topic, partition, expected, offset - 1))
        expected = max(expected, offset + 1)
    return found
