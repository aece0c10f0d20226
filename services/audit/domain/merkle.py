"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their verifiers.

The audit log is a list of entries; its state is summed up by the Merkle Tree Hash (MTH) of
that list. Leaves and interior nodes are hashed with different prefixes (0x00 / 0x01) so a
leaf can never be passed off as a node (second-preimage protection, RFC 9162 §2.1.1).

Storage keeps the hash of every *perfect* subtree (2^level leaves, aligned on a multiple of
2^level), addressed as (level, index). Any RFC range split only ever needs O(log n) of those,
so roots and proofs cost O(log n) lookups however large the log grows. This module does no I/O:
storage is reached through the `NodeSource` protocol, and `lookups` tells storage beforehand
which nodes a computation will read, so it can fetch them in one query."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

HASH_SIZE = 32

# MTH({}) = SHA-256() — the root of an empty log (RFC 9162 §2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class NodeSource(Protocol):
    def node(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree at `level` (leaves are level 0) covering leaves
        [index * 2^level, (index + 1) * 2^level)."""
        ...


class _Probe:
    """Answers every lookup with a placeholder hash and notes the address asked for."""

    def __init__(self) -> None:
        self.asked: set[tuple[int, int]] = set()

    def node(self, level: int, index: int) -> bytes:
        self.asked.add((level, index))
        return bytes(HASH_SIZE)


T = TypeVar("T")


def lookups(compute: Callable[[NodeSource], T]) -> set[tuple[int, int]]:
    """The (level, index) nodes ``compute`` reads. Every algorithm here picks its lookups by
    sizes and indices alone, never by the hashes it gets back, so one dry run with
    placeholders finds them all (its result is thrown away)."""
    probe = _Probe()
    compute(probe)
    return probe.asked


def _split(n: int) -> int:
    """k = the largest power of two strictly smaller than n (n >= 2), RFC 9162 §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(src: NodeSource, start: int, end: int) -> bytes:
    """MTH of leaves [start, end). Perfect aligned ranges are one lookup; anything else is
    split the RFC way, whose left halves are always perfect when the range comes from an RFC
    split of [0, n) — hence O(log n) lookups for roots and proofs."""
    n = end - start
    if n < 0 or start < 0:
        raise ValueError(f"bad leaf range [{start}, {end})")
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return src.node(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(src, start, start + k), subtree_hash(src, start + k, end))


def root(src: NodeSource, size: int) -> bytes:
    """The tree head of the first `size` leaves."""
    return subtree_hash(src, 0, size)


def inclusion_proof(src: NodeSource, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1, ordered from the leaf's sibling upwards."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    # Walk down from the whole range, collecting the sibling at each split; the RFC lists them
    # bottom-up, so the collected (top-down) list is reversed at the end.
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree_hash(src, start + k, end))
            end = start + k
        else:
            path.append(subtree_hash(src, start, start + k))
            start = start + k
    path.reverse()
    return path


def consistency_proof(src: NodeSource, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1. Empty when m == n, and
    for m == 0 (every log extends the empty one; the RFC defines proofs only for 0 < m < n)."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    # Same top-down walk as SUBPROOF's recursion, emitting in reverse at the end.
    out: list[bytes] = []
    start, end, m, b = 0, new_size, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            out.append(subtree_hash(src, start + k, end))
            end = start + k
        else:
            out.append(subtree_hash(src, start, start + k))
            start, m, b = start + k, m - k, False
    if not b:
        # The old tree is not a left-edge prefix here, so the verifier needs this node too.
        out.append(subtree_hash(src, start, end))
    out.reverse()
    return out


def _is_hash(value: object) -> bool:
    return isinstance(value, (bytes, bytearray)) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _hashes(proof: object) -> list[bytes] | None:
    """The proof as a list of 32-byte hashes, or None if it is anything else — the verifiers
    take input from exports and the network, so bad shapes must mean False, not an exception."""
    if isinstance(proof, (str, bytes, bytearray)) or not isinstance(proof, Sequence):
        return None
    items = list(proof)
    return [bytes(p) for p in items] if all(_is_hash(p) for p in items) else None


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2. `leaf` is the leaf *hash* (leaf_hash(entry)), as in the RFC, so a
    caller holding only hashes can verify too. Never raises: malformed input is False."""
    path = _hashes(proof)
    if path is None or not (_is_hash(leaf) and _is_hash(root) and _is_count(index) and _is_count(size)):
        return False
    if index >= size:
        return False
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == bytes(root)


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: the tree of `new_size` extends the one of `old_size`. Never raises."""
    path = _hashes(proof)
    if path is None or not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    if not (_is_count(old_size) and _is_count(new_size)) or old_size > new_size:
        return False
    if old_size == new_size:
        return not path and bytes(old_root) == bytes(new_root)
    if old_size == 0:
        # Every log extends the empty log, but only if the claimed old root is the empty one.
        return not path and bytes(old_root) == EMPTY_ROOT
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        # The old tree is a perfect left subtree, so the proof omits its hash (b = true).
        path = [bytes(old_root)] + path
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == bytes(old_root) and sr == bytes(new_root) and sn == 0


def new_nodes(existing_size: int, new_leaves: Sequence[bytes], src: NodeSource) -> list[tuple[int, int, bytes]]:
    """Every (level, index, hash) perfect subtree that becomes complete when leaves are
    appended to a tree of `existing_size`. `new_leaves` are leaf *hashes* (leaf_hash(entry)),
    which storage already keeps per entry; they come back unchanged as the level-0 rows.
    Left siblings that were already complete come from `src`; everything else is computed from
    this batch, so storage can insert the result in one go without reading its own writes."""
    if existing_size < 0:
        raise ValueError("existing_size must be >= 0")
    fresh: dict[tuple[int, int], bytes] = {}
    out: list[tuple[int, int, bytes]] = []
    for offset, leaf in enumerate(new_leaves):
        if len(leaf) != HASH_SIZE:
            # An entry passed where its hash was expected would silently build the wrong tree.
            raise ValueError(f"leaf {existing_size + offset} is not a {HASH_SIZE}-byte hash")
        level, index = 0, existing_size + offset
        h = bytes(leaf)
        fresh[(level, index)] = h
        out.append((level, index, h))
        # A right child completes its parent; keep climbing while we are a right child.
        while index & 1:
            left = fresh.get((level, index - 1))
            if left is None:
                left = src.node(level, index - 1)
            h = node_hash(left, h)
            level, index = level + 1, index >> 1
            fresh[(level, index)] = h
            out.append((level, index, h))
    return out


class MemoryTree:
    """An in-memory NodeSource holding every perfect subtree hash (about 2n hashes, no entry
    bytes). For tests and small exports built in memory (offline.files_of); the offline
    verifier rebuilds a log with tiles.Frontier, in O(log n) memory."""

    def __init__(self, entries: Sequence[bytes] = ()) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._size = 0
        if entries:
            self.append_many(entries)

    @property
    def size(self) -> int:
        return self._size

    def node(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise KeyError(f"no complete subtree at level {level}, index {index}") from None

    def append_many(self, entries: Sequence[bytes]) -> None:
        """Append raw entries (hashed here into leaves)."""
        for level, index, h in new_nodes(self._size, [leaf_hash(e) for e in entries], self):
            self._nodes[(level, index)] = h
        self._size += len(entries)

    def append(self, entry: bytes) -> None:
        self.append_many([entry])

    def append_leaf_hash(self, leaf: bytes) -> None:
        """Append a leaf known by its hash only (an entry whose bytes are withheld)."""
        for level, index, h in new_nodes(self._size, [leaf], self):
            self._nodes[(level, index)] = h
        self._size += 1

    def root(self, size: int | None = None) -> bytes:
        return root(self, self._size if size is None else size)
