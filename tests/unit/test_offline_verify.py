"""The offline verifier on an export alone (the tree as C2SP tlog-tiles plus the entries,
decision 0034): an honest export passes; each kind of tampering (an entry, a tile, a missing
file, a wrong checkpoint) is refused with a specific English message, at the entry where it
shows when it shows at an entry."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.adapters.export_archive import FOLDER, open_export, tar_stream
from services.audit.domain import tiles
from services.audit.domain.checkpoint import Checkpoint, sign
from services.audit.domain.merkle import MemoryTree, consistency_proof, leaf_hash
from services.audit.domain.offline import (
    CHECKPOINT,
    FORMAT,
    HEADER,
    MemorySource,
    Withheld,
    described,
    erased_by_rule,
    files_of,
    verify_export,
)

LOG = "punte.ro/audit"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key().public_bytes_raw()
N = 3 * 256 + 17  # three full tiles, a partial one, and a partial tile at level 1


def make_entries(n: int, tag: str = "") -> list[bytes]:
    return [json.dumps({"seq": i, "topic": "punte.cases", "value": f"event-{i}{tag}"}).encode()
            for i in range(n)]


def export(entries: list, origin: str = LOG, key: Ed25519PrivateKey = KEY,
           described_as: list[dict] | None = None) -> dict[str, bytes]:
    tree = MemoryTree()
    for e in entries:
        if isinstance(e, Withheld):
            tree.append_leaf_hash(e.leaf_hash)
        else:
            tree.append(e)
    note = sign(Checkpoint(origin, len(entries), tree.root()), origin, key)
    about = described_as or [{"topic": "punte.cases", "event_type": "ro.punte.case.opened.v1"} for _ in entries]
    return dict(files_of(origin, note, entries, tree, about))


ENTRIES = make_entries(N)
GOOD = export(ENTRIES)


def check(files: dict[str, bytes], **kw):
    return verify_export(MemorySource(files), LOG, PUB, **kw)


def changed(files: dict[str, bytes], path: str, data: bytes | None) -> dict[str, bytes]:
    out = dict(files)
    if data is None:
        del out[path]
    else:
        out[path] = data
    return out


def bundle(n: int) -> str:
    return tiles.bundle_path(n, tiles.tiles_of(N, 0)[n][1])


def with_entries(files: dict[str, bytes], n: int, entries: list[bytes]) -> dict[str, bytes]:
    return changed(files, bundle(n), tiles.encode_bundle(entries))


def test_honest_export_verifies_and_is_laid_out_as_tlog_tiles():
    assert json.loads(GOOD[HEADER]) == {"format": FORMAT, "origin": LOG, "size": N,
                                        "layout": "https://c2sp.org/tlog-tiles"}
    assert GOOD[CHECKPOINT].decode().startswith(f"{LOG}\n{N}\n")
    assert sorted(p for p in GOOD if p.startswith("tile/")) == sorted([
        "tile/0/000", "tile/0/001", "tile/0/002", "tile/0/003.p/17", "tile/1/000.p/3",
        "tile/entries/000", "tile/entries/001", "tile/entries/002", "tile/entries/003.p/17"])
    assert tiles.decode_bundle(GOOD["tile/entries/001"])[0] == ENTRIES[256]
    assert GOOD["tile/0/000"][:32] == leaf_hash(ENTRIES[0])
    report = check(GOOD)
    assert report.ok, report.problem
    assert (report.size, report.checked, report.first_bad, report.problem) == (N, N, None, None)
    assert report.root_hex == MemoryTree(ENTRIES).root().hex()
    first = next(iter(described(MemorySource(GOOD))))
    assert first == {"topic": "punte.cases", "event_type": "ro.punte.case.opened.v1", "index": 0, "withheld": False}


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257])
def test_small_logs_export_and_verify(n):
    assert check(export(ENTRIES[:n])).ok


def test_index_paths_and_a_full_upper_tile():
    assert [tiles.index_path(i) for i in (0, 7, 999, 1000, 1234067)] == \
        ["000", "007", "999", "x001/000", "x001/x234/067"]
    assert tiles.tile_path(1, 1234067, 17) == "tile/1/x001/x234/067.p/17"
    assert tiles.bundle_path(5) == "tile/entries/005"
    size = 256 * 256 + 300  # a full level-1 tile and a level-2 tile of one node
    files = export(make_entries(size))
    assert len(files["tile/1/000"]) == 256 * 32 and len(files["tile/2/000.p/1"]) == 32
    assert check(files).ok


@pytest.mark.parametrize("k", [0, 7, 300, N - 1])
def test_a_tampered_entry_is_refused_at_its_index(k):
    n, i = divmod(k, 256)
    entries = tiles.decode_bundle(GOOD[bundle(n)])
    entries[i] = entries[i].replace(b"event", b"evenT")
    report = check(with_entries(GOOD, n, entries))
    assert not report.ok and report.first_bad == k and report.checked == n * 256
    assert report.problem == (f"entry {k} was altered: its leaf hash differs from {tiles.tile_path(0, n, len(entries))}, "
                              "and the tiles build the signed root")


def test_an_entry_and_its_tile_tampered_together_do_not_rebuild_the_signed_root():
    entries = tiles.decode_bundle(GOOD["tile/entries/001"])
    entries[3] = b'{"forged":true}'
    tile = bytearray(GOOD["tile/0/001"])
    tile[3 * 32:4 * 32] = leaf_hash(entries[3])
    files = changed(with_entries(GOOD, 1, entries), "tile/0/001", bytes(tile))
    report = check(files)
    assert not report.ok and report.first_bad is None
    assert report.problem == "the entries do not rebuild the signed root"


@pytest.mark.parametrize("path", ["tile/0/000", "tile/0/003.p/17"])
def test_a_tampered_level_0_tile_is_refused(path):
    tile = bytearray(GOOD[path])
    tile[40] ^= 1  # the second hash
    report = check(changed(GOOD, path, bytes(tile)))
    assert not report.ok and report.first_bad is None
    index = (0 if path == "tile/0/000" else 3 * 256) + 1
    assert report.problem == (f"the tile {path} was altered: its hash of entry {index} differs from the entry, "
                              "and the entries build the signed root")


def test_a_tampered_upper_tile_is_refused():
    tile = bytearray(GOOD["tile/1/000.p/3"])
    tile[0] ^= 1
    report = check(changed(GOOD, "tile/1/000.p/3", bytes(tile)))
    assert not report.ok and report.problem == (
        "the tile tile/1/000.p/3 was altered: it differs from the tree the entries build, which is the signed one")


@pytest.mark.parametrize("path", ["tile/0/001", "tile/0/003.p/17", "tile/1/000.p/3"])
def test_a_missing_tile_is_refused(path):
    report = check(changed(GOOD, path, None))
    assert not report.ok and report.problem == f"the tile {path} is missing"


@pytest.mark.parametrize("n", [0, 2, 3])
def test_a_missing_entry_bundle_is_refused_at_its_first_entry(n):
    report = check(changed(GOOD, bundle(n), None))
    assert not report.ok and report.first_bad == n * 256 and report.checked == n * 256
    assert report.problem == f"entry {n * 256}: the entry bundle {bundle(n)} is missing"


@pytest.mark.parametrize("k", [0, 7, 255])
def test_deleted_and_swapped_entries(k):
    entries = tiles.decode_bundle(GOOD["tile/entries/000"])
    report = check(with_entries(GOOD, 0, entries[:k] + entries[k + 1:]))
    assert report.first_bad == 255 and report.problem == \
        "entry 255: the entry bundle tile/entries/000 holds 255 entries, not 256"
    if k < 255:
        entries[k], entries[k + 1] = entries[k + 1], entries[k]
        report = check(with_entries(GOOD, 0, entries))
        assert report.first_bad == k and report.problem.startswith(f"entry {k} was altered")


def test_entries_beyond_the_signed_size_are_refused():
    entries = tiles.decode_bundle(GOOD[bundle(3)])
    report = check(with_entries(GOOD, 3, entries + [b"late"]))
    assert report.first_bad == 3 * 256 + 17 and "holds 18 entries, not 17" in report.problem
    report = check({**GOOD, "tile/entries/004.p/1": tiles.encode_bundle([b"late"])})
    assert report.first_bad == N and report.problem == f"tile/entries/004.p/1 has no place in a tree of the signed size {N}"


def test_a_wrong_checkpoint_is_refused():
    # Signed by some other key under the log's name.
    other = export(ENTRIES, key=Ed25519PrivateKey.from_private_bytes(bytes(32)))
    assert check(other).problem == f"checkpoint: note has no signature by {LOG}"
    # The body altered after signing (claims a smaller log).
    body, sigs = GOOD[CHECKPOINT].decode().split("\n\n")
    lines = body.split("\n")
    lines[1] = str(N - 1)
    report = check(changed(GOOD, CHECKPOINT, ("\n".join(lines) + "\n\n" + sigs).encode()))
    assert report.problem == f"checkpoint: signature by {LOG} does not verify" and report.checked == 0
    # Validly signed, but for another history of the same size.
    fork = MemoryTree(make_entries(N, tag="-fork")).root()
    forked = changed(GOOD, CHECKPOINT, sign(Checkpoint(LOG, N, fork), LOG, KEY).encode())
    report = check(forked)
    assert not report.ok and report.problem == "the entries do not rebuild the signed root"
    # Validly signed for an earlier size: the export then holds more than it signs.
    earlier = sign(Checkpoint(LOG, 256, MemoryTree(ENTRIES[:256]).root()), LOG, KEY)
    report = check(changed(GOOD, CHECKPOINT, earlier.encode()))
    assert report.problem == f"{HEADER}: size {N} differs from the signed size 256"
    # No checkpoint at all; no header; another format.
    assert check(changed(GOOD, CHECKPOINT, None)).problem == "the export has no checkpoint"
    assert check(changed(GOOD, HEADER, None)).problem == f"the export has no {HEADER}"
    assert check(changed(GOOD, HEADER, b'{"format": "other"}')).problem == f"{HEADER}: format is not {FORMAT}"
    assert check({}).problem == "the export has no checkpoint"


def test_garbage_bundles_are_refused_at_their_first_entry():
    report = check(changed(GOOD, "tile/entries/001", b"\x00\x09short"))
    assert report.first_bad == 256 and "is malformed (an entry runs past the end of the bundle)" in report.problem
    report = check(changed(GOOD, "tile/0/001", b"\x00" * 31))
    assert report.problem == "the tile tile/0/001 holds 31 bytes, not 256 hashes"


def previous_note(entries: list[bytes]) -> str:
    return sign(Checkpoint(LOG, len(entries), MemoryTree(entries).root()), LOG, KEY)


@pytest.mark.parametrize("m", [1, 20, 256, 300, 512, N])
def test_previous_checkpoint_consistent(m):
    old = previous_note(ENTRIES[:m])
    assert check(GOOD, previous_checkpoint=old).ok
    proof = consistency_proof(MemoryTree(ENTRIES), m, N)
    assert check(GOOD, previous_checkpoint=old, consistency_proof=proof).ok


@pytest.mark.parametrize("m", [1, 20, 256, 300, N])
def test_forked_history_is_inconsistent(m):
    # Same log name and key, same size prefix, but a different history: a split view.
    old = previous_note(make_entries(N, tag="-fork")[:m])
    report = check(GOOD, previous_checkpoint=old)
    assert not report.ok and report.first_bad is None
    assert report.problem == (f"previous checkpoint (size {m}) is not consistent with this log: "
                              f"the first {m} entries do not hash to its root")
    proof = consistency_proof(MemoryTree(ENTRIES), m, N)
    report = check(GOOD, previous_checkpoint=old, consistency_proof=proof)
    assert report.problem.endswith("the consistency proof does not verify")


def test_previous_checkpoint_checks():
    bigger = previous_note(make_entries(N + 1))
    assert "larger than the signed size" in check(GOOD, previous_checkpoint=bigger).problem
    other_key = sign(Checkpoint(LOG, 3, MemoryTree(ENTRIES[:3]).root()), LOG,
                     Ed25519PrivateKey.from_private_bytes(bytes(32)))
    assert check(GOOD, previous_checkpoint=other_key).problem.startswith("previous checkpoint: ")


def test_leaf_is_hash_of_exact_entry_bytes():
    # An auditor without this code can recompute a leaf: SHA-256(0x00 || entry), entry i of
    # bundle i // 256, and find it at i % 256 in the level-0 tile.
    entry = tiles.decode_bundle(GOOD["tile/entries/000"])[9]
    assert entry == ENTRIES[9]
    assert GOOD["tile/0/000"][9 * 32:10 * 32] == hashlib.sha256(b"\x00" + ENTRIES[9]).digest()


def test_withheld_entries_are_proved_by_their_leaf_hash_and_erasures_are_noted():
    """Log version 1 entries hold their value: an export leaves their place in the bundle
    empty and proves them by tile 0's hash alone (decision 0016); the log still verifies."""
    mixed = [Withheld(leaf_hash(e)) if i % 3 == 0 else e for i, e in enumerate(ENTRIES)]
    about = [{"value": {"state": "erased", "erased_rule": "closed-case"}} if i % 5 == 0 else {"value": {"state": "sealed"}}
             for i in range(N)]
    files = export(mixed, described_as=about)
    assert tiles.decode_bundle(files["tile/entries/000"])[0] == b""
    report = check(files)
    assert report.ok and report.checked == N and report.withheld == len(range(0, N, 3))
    assert report.root_hex == MemoryTree(ENTRIES).root().hex()
    assert erased_by_rule(MemorySource(files)) == {"closed-case": len(range(0, N, 5))}
    tile = bytearray(files["tile/0/000"])
    tile[3 * 32] ^= 1  # a withheld entry's hash: nothing else to compare with but the root
    assert check(changed(files, "tile/0/000", bytes(tile))).problem == "the entries do not rebuild the signed root"


async def _tar(files: dict[str, bytes]) -> bytes:
    async def items():
        for item in files.items():
            yield item
    return b"".join([chunk async for chunk in tar_stream(items(), 1_795_000_000)])


async def test_the_tar_stream_verifies_as_a_file_and_extracted_with_tar(tmp_path):
    path = tmp_path / "punte-audit.tar"
    path.write_bytes(await _tar(GOOD))
    with tarfile.open(path) as archive:
        assert archive.getnames()[:2] == [f"{FOLDER}/{HEADER}", f"{FOLDER}/{CHECKPOINT}"]
    report = verify_export(open_export(path), LOG, PUB)
    assert report.ok and report.checked == N
    # The auditor's own tools: tar extracts it; the folder verifies the same.
    subprocess.run(["tar", "-xf", str(path), "-C", str(tmp_path)], check=True)
    assert (tmp_path / FOLDER / "tile" / "0" / "000").stat().st_size == 256 * 32
    assert verify_export(open_export(tmp_path), LOG, PUB).ok
    (tmp_path / FOLDER / "tile" / "0" / "002").unlink()
    assert verify_export(open_export(tmp_path / FOLDER), LOG, PUB).problem == "the tile tile/0/002 is missing"
    # A tile altered inside the tar file is found as in memory.
    tampered = io.BytesIO(await _tar(changed(GOOD, "tile/1/000.p/3", bytes(96))))
    (tmp_path / "tampered.tar").write_bytes(tampered.getvalue())
    assert "tile/1/000.p/3 was altered" in verify_export(open_export(tmp_path / "tampered.tar"), LOG, PUB).problem
