"""The offline verifier: what an auditor runs on an export alone, trusting only the log's
public key (and optionally a checkpoint they saw earlier).

Export format punte-audit-export/3 (decision 0034): the log's tree in the C2SP tlog-tiles
layout (domain/tiles.py) plus the entries, as files:
  checkpoint                     the signed checkpoint (a C2SP signed note, with any
                                 witnesses' cosignatures)
  tile/<L>/<N>[.p/<W>]           the tree's tiles, every level
  tile/entries/<N>[.p/<W>]       the entries, 256 to a bundle
  punte/export.json              {"format", "origin", "size"}: conveniences, checked
                                 against the signed checkpoint
  punte/entries/<N>.jsonl        what each entry of bundle N is, for people (topic, event
                                 type, case, what became of its value: sealed, erased when
                                 and by which rule); informational, not verified
The service streams them as one tar file (adapters/export_archive.py); an extracted
directory verifies the same.

The entry bytes are those of the log (domain/entries.py): log version 2 entries commit to
their value's digest and hold no personal data, so they are exported whole; log version 1
entries (appended before version 2) hold the value itself, so their place in the bundle is
left empty (a real entry is never empty) and their leaf hash is proved by tile 0 alone:
their place in the log is proved, their content withheld.

Verification rebuilds the tree from the entries in one pass, compares every leaf with tile 0
and the root with the signed checkpoint, then every tile above level 0 with the nodes the
entries built. When an entry and its tile disagree, whichever of the two rebuilds the signed
root says which one was altered."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from . import tiles
from .checkpoint import Checkpoint, CheckpointError, verify_note
from .merkle import EMPTY_ROOT, NodeSource, leaf_hash, verify_consistency

FORMAT = "punte-audit-export/3"
CHECKPOINT = "checkpoint"
HEADER = "punte/export.json"


@dataclass(frozen=True)
class Withheld:
    """An entry exported by its leaf hash only: its bytes (log version 1) hold the value."""

    leaf_hash: bytes


@dataclass(frozen=True)
class Report:
    ok: bool
    size: int  # the size the signed checkpoint claims (0 if it could not be read)
    root_hex: str  # the signed root ("" if it could not be read)
    first_bad: int | None  # first entry index at fault, when the fault is located at an entry
    problem: str | None
    checked: int  # entries whose leaf agreed with tile 0 before the first problem
    withheld: int = 0  # of those, entries proved by their leaf hash only (log version 1)


class Source(Protocol):
    """An export's files by their path in the layout (a tar file, a directory, a dict)."""

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when the export has no such file."""
        ...

    def paths(self) -> Iterable[str]:
        ...


class MemorySource:
    """An export held in a dict (tests, small logs)."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = dict(files)

    def read(self, path: str) -> bytes | None:
        return self.files.get(path)

    def paths(self) -> Iterable[str]:
        return self.files.keys()


# --- writing ----------------------------------------------------------------------------------

def header(origin: str, size: int) -> tuple[str, bytes]:
    document = {"format": FORMAT, "origin": origin, "size": size, "layout": "https://c2sp.org/tlog-tiles"}
    return HEADER, json.dumps(document, separators=(",", ":")).encode()


def described_path(n: int) -> str:
    return f"punte/entries/{tiles.index_path(n)}.jsonl"


def bundle_files(n: int, entries: Sequence[bytes | Withheld], leaves: Sequence[bytes],
                 described: Sequence[Mapping[str, Any]] | None = None) -> list[tuple[str, bytes]]:
    """The files of level-0 tile ``n``: its entry bundle, the tile (the entries' leaf
    hashes, as stored), and what each entry is for people (``described[i]``, without the
    verified fields)."""
    width = len(entries)
    if len(leaves) != width or (described is not None and len(described) != width):
        raise ValueError("one leaf hash (and description) per entry")
    files = [(tiles.bundle_path(n, width), tiles.encode_bundle(b"" if isinstance(e, Withheld) else e
                                                                for e in entries)),
             (tiles.tile_path(0, n, width), b"".join(leaves))]
    if described is not None:
        first = n * tiles.TILE_WIDTH
        lines = [json.dumps({**d, "index": first + i, "withheld": isinstance(entries[i], Withheld)},
                            separators=(",", ":"), ensure_ascii=False) + "\n"
                 for i, d in enumerate(described)]
        files.append((described_path(n), "".join(lines).encode()))
    return files


def upper_tile_files(level: int, nodes: Sequence[bytes], size: int) -> list[tuple[str, bytes]]:
    """The tiles of ``level`` >= 1: ``nodes`` are every complete node of tree level 8 *
    ``level`` in a tree of ``size``, in index order."""
    expected = size >> (tiles.TILE_HEIGHT * level)
    if len(nodes) != expected:
        raise ValueError(f"{len(nodes)} nodes given for tile level {level}, {expected} expected")
    w = tiles.TILE_WIDTH
    return [(tiles.tile_path(level, n, width), b"".join(nodes[n * w:n * w + width]))
            for n, width in tiles.tiles_of(size, level)]


def files_of(origin: str, note: str, entries: Sequence[bytes | Withheld], tree: NodeSource,
             described: Sequence[Mapping[str, Any]] | None = None) -> Iterator[tuple[str, bytes]]:
    """A whole export from entries held in memory and their tree (tests, small logs; the
    service streams its own from the database, handlers.export_files)."""
    size = len(entries)
    yield header(origin, size)
    yield CHECKPOINT, note.encode("utf-8")
    w = tiles.TILE_WIDTH
    for n, width in tiles.tiles_of(size, 0):
        chunk = entries[n * w:n * w + width]
        leaves = [e.leaf_hash if isinstance(e, Withheld) else leaf_hash(e) for e in chunk]
        yield from bundle_files(n, chunk, leaves, described[n * w:n * w + width] if described is not None else None)
    for level in tiles.levels(size)[1:]:
        height = tiles.TILE_HEIGHT * level
        yield from upper_tile_files(level, [tree.node(height, i) for i in range(size >> height)], size)


# --- verifying --------------------------------------------------------------------------------

class _Bad(Exception):
    """A located failure: the entry index (or None) and what is wrong, in English."""

    def __init__(self, first_bad: int | None, problem: str) -> None:
        super().__init__(problem)
        self.first_bad = first_bad
        self.problem = problem


def _read_checkpoint(source: Source, log_name: str, log_public_key: bytes) -> Checkpoint:
    raw = source.read(CHECKPOINT)
    if raw is None:
        raise _Bad(None, "the export has no checkpoint")
    try:
        cp = verify_note(raw.decode("utf-8"), log_name, log_public_key)
    except (CheckpointError, UnicodeDecodeError) as exc:
        raise _Bad(None, f"checkpoint: {exc}") from None
    raw_header = source.read(HEADER)
    if raw_header is None:
        raise _Bad(None, f"the export has no {HEADER}")
    try:
        document = json.loads(raw_header)
    except ValueError:
        raise _Bad(None, f"{HEADER}: not valid JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _Bad(None, f"{HEADER}: format is not {FORMAT}")
    # The header's own origin/size are conveniences; they must agree with what is signed.
    if document.get("origin") != cp.origin:
        raise _Bad(None, f"{HEADER}: origin {document.get('origin')!r} differs from the signed {cp.origin!r}")
    if document.get("size") != cp.size:
        raise _Bad(None, f"{HEADER}: size {document.get('size')!r} differs from the signed size {cp.size}")
    return cp


def _previous(previous_checkpoint: str, log_name: str, log_public_key: bytes, cp: Checkpoint) -> Checkpoint:
    try:
        old = verify_note(previous_checkpoint, log_name, log_public_key)
    except CheckpointError as exc:
        raise _Bad(None, f"previous checkpoint: {exc}") from None
    if old.origin != cp.origin:
        raise _Bad(None, f"previous checkpoint is for origin {old.origin!r}, not {cp.origin!r}")
    if old.size > cp.size:
        raise _Bad(None, f"previous checkpoint size {old.size} is larger than the signed size {cp.size}")
    return old


@dataclass
class _Mismatch:
    index: int  # the entry
    tile: str  # the level-0 tile whose hash differs


class _Rebuild:
    """The tree the entries build (and, once an entry and tile 0 disagree, the tree tile 0
    builds, to tell which of the two was altered), with its root at an earlier size."""

    def __init__(self, size: int, old_size: int | None) -> None:
        keep = [tiles.TILE_HEIGHT * level for level in tiles.levels(size) if level]
        self.entries = tiles.Frontier(keep)
        self.tile: tiles.Frontier | None = None
        self.mismatch: _Mismatch | None = None
        self.old_size = old_size
        self.old_root: bytes | None = EMPTY_ROOT if old_size == 0 else None

    def add(self, first: int, leaves: list[bytes], tile_hashes: list[bytes], tile_path: str) -> None:
        if self.mismatch is None and leaves != tile_hashes:
            at = next(i for i, (a, b) in enumerate(zip(leaves, tile_hashes, strict=True)) if a != b)
            self.mismatch = _Mismatch(first + at, tile_path)
            self.tile = self.entries.copy()
        crosses = self.old_size is not None and first < self.old_size < first + len(leaves)
        if len(leaves) == tiles.TILE_WIDTH and not crosses:
            self.entries.push(tiles.TILE_HEIGHT, tiles.perfect_root(leaves))
            if self.tile is not None:
                self.tile.push(tiles.TILE_HEIGHT, tiles.perfect_root(tile_hashes))
        else:
            for leaf, hashed in zip(leaves, tile_hashes, strict=True):
                self.entries.push(0, leaf)
                if self.tile is not None:
                    self.tile.push(0, hashed)
                self._note_old()
        self._note_old()

    def _note_old(self) -> None:
        if self.entries.size == self.old_size:
            self.old_root = self.entries.root()


def _leaves(source: Source, n: int, width: int) -> tuple[list[bytes], list[bytes], str, int]:
    """Bundle ``n``'s leaf hashes (from its entries; a withheld entry's from tile 0), tile
    0's hashes for it, the tile's path and how many entries were withheld."""
    first = n * tiles.TILE_WIDTH
    path = tiles.bundle_path(n, width)
    raw = source.read(path)
    if raw is None:
        raise _Bad(first, f"entry {first}: the entry bundle {path} is missing")
    try:
        entries = tiles.decode_bundle(raw)
    except ValueError as exc:
        raise _Bad(first, f"entry {first}: the entry bundle {path} is malformed ({exc})") from None
    if len(entries) != width:
        at = first + min(len(entries), width)
        raise _Bad(at, f"entry {at}: the entry bundle {path} holds {len(entries)} entries, not {width}")
    tile_path = tiles.tile_path(0, n, width)
    tile = source.read(tile_path)
    if tile is None:
        raise _Bad(None, f"the tile {tile_path} is missing")
    if len(tile) != width * 32:
        raise _Bad(None, f"the tile {tile_path} holds {len(tile)} bytes, not {width} hashes")
    hashes = tiles.hashes_of(tile)
    leaves = [hashes[i] if not e else leaf_hash(e) for i, e in enumerate(entries)]
    return leaves, hashes, tile_path, sum(1 for e in entries if not e)


def _check_upper_tiles(source: Source, rebuild: _Rebuild, size: int) -> None:
    for level in tiles.levels(size):
        if level == 0:
            continue
        nodes = rebuild.entries.kept[tiles.TILE_HEIGHT * level]
        for path, expected in upper_tile_files(level, nodes, size):
            tile = source.read(path)
            if tile is None:
                raise _Bad(None, f"the tile {path} is missing")
            if tile != expected:
                raise _Bad(None, f"the tile {path} was altered: it differs from the tree the entries build, "
                                 "which is the signed one")


def _check_nothing_else(source: Source, size: int) -> None:
    """A tile or bundle the tree of ``size`` has no place for (an entry added past the
    signed size, a forged tile) is refused, not ignored."""
    expected = {tiles.bundle_path(n, w) for n, w in tiles.tiles_of(size, 0)}
    for level in tiles.levels(size):
        expected |= {tiles.tile_path(level, n, w) for n, w in tiles.tiles_of(size, level)}
    for path in sorted(p for p in source.paths() if p.startswith("tile/") and p not in expected):
        raise _Bad(size if path.startswith("tile/entries/") else None,
                   f"{path} has no place in a tree of the signed size {size}")


def verify_export(source: Source, log_name: str, log_public_key: bytes,
                  previous_checkpoint: str | None = None,
                  consistency_proof: list[bytes] | None = None) -> Report:
    """Check an export against the log's key; stops at, and reports, the first problem."""
    cp: Checkpoint | None = None
    checked = withheld = 0
    try:
        cp = _read_checkpoint(source, log_name, log_public_key)
        old = _previous(previous_checkpoint, log_name, log_public_key, cp) if previous_checkpoint else None
        _check_nothing_else(source, cp.size)
        rebuild = _Rebuild(cp.size, old.size if old else None)
        for n, width in tiles.tiles_of(cp.size, 0):
            leaves, hashes, tile_path, empty = _leaves(source, n, width)
            rebuild.add(n * tiles.TILE_WIDTH, leaves, hashes, tile_path)
            if rebuild.mismatch is None:
                checked += width
                withheld += empty
        mismatch = rebuild.mismatch
        if rebuild.entries.root() != cp.root:
            if mismatch is not None and rebuild.tile is not None and rebuild.tile.root() == cp.root:
                raise _Bad(mismatch.index, f"entry {mismatch.index} was altered: its leaf hash differs from "
                                           f"{mismatch.tile}, and the tiles build the signed root")
            raise _Bad(None, "the entries do not rebuild the signed root")
        if mismatch is not None:
            raise _Bad(None, f"the tile {mismatch.tile} was altered: its hash of entry {mismatch.index} differs "
                             "from the entry, and the entries build the signed root")
        _check_upper_tiles(source, rebuild, cp.size)
        if old is not None:
            if consistency_proof is not None:
                consistent = verify_consistency(old.size, cp.size, old.root, cp.root, consistency_proof)
                how = "the consistency proof does not verify"
            else:
                # The export holds every entry, so the old root was rebuilt from its prefix.
                consistent = rebuild.old_root == old.root
                how = f"the first {old.size} entries do not hash to its root"
            if not consistent:
                raise _Bad(None, f"previous checkpoint (size {old.size}) is not consistent with this log: {how}")
    except _Bad as bad:
        return Report(ok=False, size=cp.size if cp else 0, root_hex=cp.root.hex() if cp else "",
                      first_bad=bad.first_bad, problem=bad.problem, checked=checked, withheld=withheld)
    return Report(ok=True, size=cp.size, root_hex=cp.root.hex(), first_bad=None, problem=None, checked=checked,
                  withheld=withheld)


def described(source: Source) -> Iterable[dict[str, Any]]:
    """What the export says each entry is (informational), in index order."""
    raw_header = source.read(HEADER)
    size = json.loads(raw_header).get("size", 0) if raw_header else 0
    for n, _ in tiles.tiles_of(size if isinstance(size, int) else 0, 0):
        raw = source.read(described_path(n))
        for line in (raw or b"").decode("utf-8", errors="replace").splitlines():
            try:
                document = json.loads(line)
            except ValueError:
                continue
            if isinstance(document, dict):
                yield document


def erased_by_rule(source: Source) -> dict[str, int]:
    """How many entries of an export say their value was erased, by retention rule. The
    value state is informational (not signed): the proof is that the entries still verify."""
    counts: dict[str, int] = {}
    for document in described(source):
        value = document.get("value")
        if isinstance(value, dict) and value.get("state") == "erased":
            rule = str(value.get("erased_rule"))
            counts[rule] = counts.get(rule, 0) + 1
    return counts
