"""The Merkle tree as C2SP tlog-tiles (https://c2sp.org/tlog-tiles), the layout the export
uses: the tree cut into tiles of 256 hashes, so an export grows linearly with the log and
an auditor's tooling for transparency logs can read it.

- A tile at level L holds hashes of tree level 8L: ``tile/<L>/<N>`` holds the nodes
  [256N, 256N + 256) of that tree level (level 0: the leaf hashes), 32 bytes each,
  concatenated. The rightmost tile of a level may be partial, ``tile/<L>/<N>.p/<W>``,
  holding its W (1-255) complete nodes.
- ``<N>`` is written in groups of three digits, all but the last prefixed with "x":
  1234067 is ``x001/x234/067``.
- An entry bundle ``tile/entries/<N>[.p/<W>]`` holds the entries of level-0 tile N, each as
  a big-endian uint16 length followed by the entry's bytes.

Pure: paths, bundles, and a compact range (``Frontier``) that rebuilds a tree's root from
its leaves in one pass with O(log n) memory."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from .merkle import EMPTY_ROOT, HASH_SIZE, node_hash

TILE_WIDTH = 256
TILE_HEIGHT = 8  # log2(TILE_WIDTH): a level-L tile holds tree level 8L
MAX_ENTRY = 0xFFFF  # an entry bundle's length prefix is a uint16


def index_path(n: int) -> str:
    """<N> of tlog-tiles: 3-digit groups, all but the last prefixed with "x"."""
    if n < 0:
        raise ValueError("a tile index is >= 0")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def _suffix(width: int) -> str:
    if not 0 < width <= TILE_WIDTH:
        raise ValueError(f"a tile's width is 1..{TILE_WIDTH}, not {width}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, n: int, width: int = TILE_WIDTH) -> str:
    return f"tile/{level}/{index_path(n)}{_suffix(width)}"


def bundle_path(n: int, width: int = TILE_WIDTH) -> str:
    return f"tile/entries/{index_path(n)}{_suffix(width)}"


def tiles_of(size: int, level: int) -> list[tuple[int, int]]:
    """(index, width) of every tile of ``level`` in a tree of ``size`` leaves: full tiles,
    then the partial one if the level's node count is not a multiple of 256."""
    nodes = size >> (TILE_HEIGHT * level)
    full, rest = divmod(nodes, TILE_WIDTH)
    return [(n, TILE_WIDTH) for n in range(full)] + ([(full, rest)] if rest else [])


def levels(size: int) -> range:
    """The tile levels a tree of ``size`` has: while at least one node of tree level 8L is
    complete."""
    top = 0
    while size >> (TILE_HEIGHT * (top + 1)):
        top += 1
    return range(top + 1) if size else range(0)


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    parts = []
    for entry in entries:
        if len(entry) > MAX_ENTRY:
            raise ValueError(f"an entry of {len(entry)} bytes does not fit an entry bundle (max {MAX_ENTRY})")
        parts.append(len(entry).to_bytes(2, "big"))
        parts.append(entry)
    return b"".join(parts)


def decode_bundle(raw: bytes) -> list[bytes]:
    """The entries of a bundle; ValueError when the lengths run past its end."""
    out, at, end = [], 0, len(raw)
    while at < end:
        if at + 2 > end:
            raise ValueError("a length prefix is cut short")
        length = int.from_bytes(raw[at:at + 2], "big")
        at += 2
        if at + length > end:
            raise ValueError("an entry runs past the end of the bundle")
        out.append(raw[at:at + length])
        at += length
    return out


def hashes_of(tile: bytes) -> list[bytes]:
    if len(tile) % HASH_SIZE:
        raise ValueError("a tile is a whole number of 32-byte hashes")
    return [tile[i:i + HASH_SIZE] for i in range(0, len(tile), HASH_SIZE)]


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The root over a power-of-two run of aligned nodes (a full tile: 256 -> its level + 8 node)."""
    level = list(hashes)
    while len(level) > 1:
        level = [_sha256(b"\x01" + a + b) for a, b in zip(level[::2], level[1::2], strict=True)]
    return level[0]


class Frontier:
    """The tree of the leaves appended so far, as its RFC 9162 decomposition into perfect
    subtrees (largest first): enough for the root, in O(log n) hashes of memory. Nodes of the
    tree levels in ``keep`` are kept as they complete (tiles above level 0 are checked
    against them)."""

    def __init__(self, keep: Iterable[int] = ()) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # (level, hash), levels strictly decreasing
        self.kept: dict[int, list[bytes]] = {level: [] for level in keep}

    def copy(self) -> Frontier:
        other = Frontier()
        other.size, other._stack = self.size, list(self._stack)
        other.kept = {level: list(nodes) for level, nodes in self.kept.items()}
        return other

    def push(self, level: int, digest: bytes) -> None:
        """Append a perfect subtree of 2^level leaves (a leaf hash at level 0); the tree's
        size must be a multiple of 2^level."""
        if self.size & ((1 << level) - 1):
            raise ValueError(f"a level-{level} subtree cannot start at leaf {self.size}")
        self.size += 1 << level
        self._keep(level, digest)
        while self._stack and self._stack[-1][0] == level:
            digest = node_hash(self._stack.pop()[1], digest)
            level += 1
            self._keep(level, digest)
        self._stack.append((level, digest))

    def _keep(self, level: int, digest: bytes) -> None:
        kept = self.kept.get(level)
        if kept is not None:
            kept.append(digest)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        digest = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            digest = node_hash(left, digest)
        return digest
