"""A hash chain over every message the network carried.

Each entry is the canonical JSON of one Kafka record (position, timestamp, key, headers,
value) and its hash is sha256(previous hash + entry), starting from 32 zero bytes. The
entry bytes are stored as hashed, so anyone holding an export can recompute the chain
without this code: changing, removing or reordering an entry breaks every hash after it."""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GENESIS = bytes(32)


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


def entry_hash(prev: bytes, entry: bytes) -> bytes:
    return hashlib.sha256(prev + entry).digest()


@dataclass(frozen=True)
class VerifyResult:
    verified: bool
    entries: int
    head: str  # hex hash of the last entry that verified (of GENESIS if none)
    first_bad: int | None  # seq where the chain breaks: a wrong hash or a missing seq


class Verifier:
    """Checks a chain fed in seq order, one entry at a time, so it can be streamed."""

    def __init__(self, first_seq: int = 1) -> None:
        self._expected = first_seq
        self._head = GENESIS
        self._count = 0
        self._first_bad: int | None = None

    def feed(self, seq: int, entry: bytes, stored_hash: bytes) -> None:
        self._count += 1
        if self._first_bad is not None:
            return
        if seq != self._expected:
            # A gap is a deleted entry; a repeat or a step back, a reordered export.
            self._first_bad = self._expected
            return
        computed = entry_hash(self._head, entry)
        if computed != stored_hash:
            self._first_bad = seq
            return
        self._head = computed
        self._expected = seq + 1

    def result(self) -> VerifyResult:
        return VerifyResult(verified=self._first_bad is None, entries=self._count,
                            head=self._head.hex(), first_bad=self._first_bad)


def verify(entries: Iterable[tuple[int, bytes, bytes]], first_seq: int = 1) -> VerifyResult:
    verifier = Verifier(first_seq)
    for seq, entry, stored_hash in entries:
        verifier.feed(seq, entry, stored_hash)
    return verifier.result()
