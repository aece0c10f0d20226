"""The offline verifier on an export alone: an honest export passes; each kind of tampering
is reported at the first index where it shows, with a specific English message."""
from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.domain.checkpoint import Checkpoint, sign
from services.audit.domain.merkle import MemoryTree, consistency_proof, leaf_hash
from services.audit.domain.offline import FORMAT, Withheld, export_lines, verify_export

LOG = "punte.ro/audit"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key().public_bytes_raw()
N = 50


def make_entries(n: int, tag: str = "") -> list[bytes]:
    return [json.dumps({"seq": i, "topic": "punte.cases", "value": f"event-{i}{tag}"}).encode()
            for i in range(n)]


def export(entries: list[bytes], origin: str = LOG, key: Ed25519PrivateKey = KEY) -> list[str]:
    tree = MemoryTree(entries)
    note = sign(Checkpoint(origin, len(entries), tree.root()), origin, key)
    extra = [{"topic": "punte.cases", "event_type": "ro.punte.case.opened.v1"} for _ in entries]
    return list(export_lines(origin, note, entries, tree, len(entries), extra))


ENTRIES = make_entries(N)
GOOD = export(ENTRIES)


def check(lines, **kw):
    return verify_export(lines, LOG, PUB, **kw)


def edit(lines: list[str], position: int, **fields) -> list[str]:
    """A copy of the export with entry `position`'s JSON fields replaced."""
    out = list(lines)
    obj = json.loads(out[1 + position])
    obj.update(fields)
    out[1 + position] = json.dumps(obj) + "\n"
    return out


def test_honest_export_verifies():
    header = json.loads(GOOD[0])
    assert header["format"] == FORMAT and header["size"] == N and header["origin"] == LOG
    first = json.loads(GOOD[1])
    assert first["index"] == 0 and base64.b64decode(first["entry"]) == ENTRIES[0]
    assert first["event_type"] == "ro.punte.case.opened.v1"
    report = check(GOOD)
    assert report.ok, report.problem
    assert (report.size, report.checked, report.first_bad, report.problem) == (N, N, None, None)
    assert report.root_hex == MemoryTree(ENTRIES).root().hex()
    # Read straight from a file's text, trailing newline and all.
    assert check("".join(GOOD).splitlines(keepends=True)).ok


def test_empty_log_exports_and_verifies():
    assert check(export([])).ok


@pytest.mark.parametrize("k", [0, 7, N - 1])
def test_changed_byte(k):
    entry = bytearray(ENTRIES[k])
    entry[5] ^= 0x01
    report = check(edit(GOOD, k, entry=base64.b64encode(bytes(entry)).decode()))
    assert not report.ok and report.first_bad == k and report.checked == k
    assert report.problem == f"entry {k}: leaf does not match the signed root"


@pytest.mark.parametrize("k", [0, 7, N - 2])
def test_deleted_entry(k):
    lines = GOOD[: 1 + k] + GOOD[2 + k:]
    report = check(lines)
    assert report.first_bad == k and f"expected index {k}, found {k + 1}" in report.problem
    # Renumbering after the deletion does not help: the proofs then fail at k.
    renumbered = [GOOD[0]] + [json.dumps({**json.loads(line), "index": i}) for i, line in enumerate(lines[1:])]
    report = check(renumbered)
    assert report.first_bad == k and "leaf does not match" in report.problem


@pytest.mark.parametrize("k", [0, 7, N - 2])
def test_swapped_pair(k):
    lines = list(GOOD)
    lines[1 + k], lines[2 + k] = lines[2 + k], lines[1 + k]
    report = check(lines)
    assert report.first_bad == k and "expected index" in report.problem
    # Swapping the entries but leaving indices (and proofs) in place.
    a, b = json.loads(GOOD[1 + k]), json.loads(GOOD[2 + k])
    swapped = edit(edit(GOOD, k, entry=b["entry"]), k + 1, entry=a["entry"])
    report = check(swapped)
    assert report.first_bad == k and report.problem == f"entry {k}: leaf does not match the signed root"


@pytest.mark.parametrize("k", [0, 7, N - 1])
def test_inserted_forged_entry(k):
    forged = json.dumps({"index": k, "entry": base64.b64encode(b'{"forged":true}').decode(),
                         "proof": json.loads(GOOD[1 + k])["proof"]}) + "\n"
    lines = GOOD[: 1 + k] + [forged] + GOOD[1 + k:]
    report = check(lines)
    assert report.first_bad == k and "leaf does not match" in report.problem
    # Forged without a proof: its successor's index is out of sequence, or the rebuild fails.
    bare = json.dumps({"index": k, "entry": base64.b64encode(b"x").decode()}) + "\n"
    report = check(GOOD[: 1 + k] + [bare] + GOOD[1 + k:])
    assert not report.ok and report.first_bad == k + 1 and "expected index" in report.problem


@pytest.mark.parametrize("keep", [0, 1, 30, N - 1])
def test_truncated_tail(keep):
    report = check(GOOD[: 1 + keep])
    assert not report.ok and report.first_bad == keep and report.checked == keep
    assert report.problem == f"export ends after {keep} entries but the signed size is {N}"


def test_extra_entry_beyond_size():
    extra = json.dumps({"index": N, "entry": base64.b64encode(b"late").decode(), "proof": []}) + "\n"
    report = check(GOOD + [extra])
    assert report.first_bad == N and "beyond the signed size" in report.problem


def test_altered_header_checkpoint():
    header = json.loads(GOOD[0])
    body, sigs = header["checkpoint"].split("\n\n")
    lines = body.split("\n")
    lines[1] = str(N - 1)  # claim a smaller log
    header["checkpoint"] = "\n".join(lines) + "\n\n" + sigs
    header["size"] = N - 1
    report = check([json.dumps(header)] + GOOD[1:N])
    assert not report.ok and report.first_bad is None and report.checked == 0
    assert report.problem == f"header checkpoint: signature by {LOG} does not verify"
    # Signed by some other key under the log's name.
    other = export(ENTRIES, key=Ed25519PrivateKey.from_private_bytes(bytes(32)))
    report = check(other)
    assert report.problem == f"header checkpoint: note has no signature by {LOG}"
    # The unsigned header fields must agree with the signed ones.
    header = json.loads(GOOD[0])
    header["size"] = N + 1
    assert "differs from the signed size" in check([json.dumps(header)] + GOOD[1:]).problem


def test_rebuild_catches_what_missing_proofs_hide():
    stripped = [GOOD[0]] + [json.dumps({k: v for k, v in json.loads(line).items() if k != "proof"})
                            for line in GOOD[1:]]
    assert check(stripped).ok
    entry = bytearray(ENTRIES[3])
    entry[0] ^= 1
    stripped[4] = json.dumps({"index": 3, "entry": base64.b64encode(bytes(entry)).decode()})
    report = check(stripped)
    assert not report.ok and report.first_bad is None
    assert report.problem == "entries do not rebuild the signed root"


@pytest.mark.parametrize("line", ["not json", "[1, 2]", '{"index": 5}', '{"index": 5, "entry": "%%%"}',
                                  '{"index": 5, "entry": "AA==", "proof": "AA=="}',
                                  '{"index": 5, "entry": "AA==", "proof": ["AA=="]}'])
def test_garbage_lines(line):
    lines = list(GOOD)
    lines[1 + 5] = line
    report = check(lines)
    assert not report.ok and report.first_bad == 5 and report.problem.startswith("entry 5:")


def test_garbage_header():
    assert check([]).problem == "export is empty"
    assert check(["{"] + GOOD[1:]).problem == "header: not valid JSON"
    assert "format" in check([json.dumps({"format": "other"})] + GOOD[1:]).problem


def previous_note(entries: list[bytes]) -> str:
    return sign(Checkpoint(LOG, len(entries), MemoryTree(entries).root()), LOG, KEY)


@pytest.mark.parametrize("m", [1, 20, 32, N])
def test_previous_checkpoint_consistent(m):
    old = previous_note(ENTRIES[:m])
    assert check(GOOD, previous_checkpoint=old).ok
    proof = consistency_proof(MemoryTree(ENTRIES), m, N)
    assert check(GOOD, previous_checkpoint=old, consistency_proof=proof).ok


@pytest.mark.parametrize("m", [1, 20, 32, N])
def test_forked_history_is_inconsistent(m):
    # Same log name and key, same size prefix, but a different history: a split view.
    fork = make_entries(N, tag="-fork")
    old = previous_note(fork[:m])
    report = check(GOOD, previous_checkpoint=old)
    assert not report.ok and report.first_bad is None
    assert report.problem == (f"previous checkpoint (size {m}) is not consistent with this log: "
                              f"the first {m} entries do not hash to its root")
    # With a proof: the honest proof for the real history does not bridge the fork either.
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
    # An auditor without this code can recompute a leaf: SHA-256(0x00 || base64-decoded entry).
    obj = json.loads(GOOD[1 + 9])
    assert leaf_hash(base64.b64decode(obj["entry"])) == hashlib.sha256(b"\x00" + ENTRIES[9]).digest()


def test_withheld_entries_are_proved_by_their_leaf_hash_and_old_exports_still_read():
    """Log version 1 entries hold their value: an export carries their leaf hash only
    (decision 0016); the log still verifies, and a changed hash is found at its entry."""
    tree = MemoryTree(ENTRIES)
    note = sign(Checkpoint(LOG, N, tree.root()), LOG, KEY)
    mixed = [Withheld(leaf_hash(e)) if i % 3 == 0 else e for i, e in enumerate(ENTRIES)]
    lines = list(export_lines(LOG, note, mixed, tree, N))
    assert "entry" not in json.loads(lines[1]) and "leaf_hash" in json.loads(lines[1])
    report = check(lines)
    assert report.ok and report.checked == N and report.withheld == len(range(0, N, 3))
    bad = check(edit(lines, 3, leaf_hash=base64.b64encode(bytes(32)).decode()))
    assert not bad.ok and bad.first_bad == 3
    # An export written in format 1 (every entry whole) still verifies.
    old = [json.dumps({**json.loads(GOOD[0]), "format": "punte-audit-export/1"}) + "\n", *GOOD[1:]]
    assert check(old).ok
