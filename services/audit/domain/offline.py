"""The offline verifier: what an auditor runs on an export alone, trusting only the log's
public key (and optionally a checkpoint they saw earlier).

Export format, JSON Lines:
  line 1: {"format": "punte-audit-export/2", "origin": ..., "size": N, "checkpoint": <signed note>}
  then, in order, one object per entry, either
          {"index": i, "entry": base64(entry bytes), "proof": [base64 hashes], ...informational}
  or      {"index": i, "leaf_hash": base64(leaf hash), "proof": [...], ...informational}
where "proof" is the RFC 9162 inclusion proof of entry i in the tree of size N.

The entry bytes are those of the log (services.audit.domain.entries): log version 2 entries
({"v": 2, ..., "value_sha256"}) commit to their value's digest and hold no personal data,
so they are exported whole; log version 1 entries ({..., "value"}, appended before version
2) hold the value itself, so they are exported by their leaf hash only ("leaf_hash"): their
place in the log is proved, their content withheld. Informational fields ("log_version",
"value" with its state: sealed, erased with the date and rule, ...) are not verified.
Format punte-audit-export/1 (every entry whole) is still read.

Per-entry proofs pin down *where* an export was tampered with; rebuilding the whole tree from
the entries then confirms the export is exactly the signed log, even if proofs are absent."""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .checkpoint import Checkpoint, CheckpointError, verify_note
from .merkle import (
    MemoryTree,
    NodeSource,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

FORMAT = "punte-audit-export/2"
FORMATS = ("punte-audit-export/1", FORMAT)
_CORE_FIELDS = ("index", "entry", "leaf_hash", "proof")


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
    checked: int  # entries that passed every per-entry check
    withheld: int = 0  # of those, entries proved by their leaf hash only (log version 1)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def export_lines(origin: str, note_text: str, entries: list[bytes | Withheld], tree: NodeSource, size: int,
                 extra: list[dict[str, Any]] | None = None) -> Iterator[str]:
    """The export, one JSON line at a time (each ending in "\\n", ready for writelines).
    `entries` are the first `size` entries (bytes, or Withheld), `tree` holds their perfect
    subtrees, `note_text` is the signed checkpoint for `size`; `extra[i]` adds
    informational fields to entry i."""
    if len(entries) != size:
        raise ValueError(f"{len(entries)} entries given for a tree of size {size}")
    if extra is not None and len(extra) != size:
        raise ValueError("extra must have one dict per entry")
    header = {"format": FORMAT, "origin": origin, "size": size, "checkpoint": note_text}
    yield json.dumps(header, separators=(",", ":")) + "\n"
    for i, entry in enumerate(entries):
        # Informational fields first, so they can never shadow the verified ones.
        line: dict[str, Any] = dict(extra[i]) if extra is not None else {}
        for field in _CORE_FIELDS:
            line.pop(field, None)
        line["index"] = i
        if isinstance(entry, Withheld):
            line["leaf_hash"] = _b64(entry.leaf_hash)
        else:
            line["entry"] = _b64(entry)
        line["proof"] = [_b64(h) for h in inclusion_proof(tree, i, size)]
        yield json.dumps(line, separators=(",", ":")) + "\n"


class _Bad(Exception):
    """A located failure: the entry index (or None) and what is wrong, in English."""

    def __init__(self, first_bad: int | None, problem: str) -> None:
        super().__init__(problem)
        self.first_bad = first_bad
        self.problem = problem


def _decode_b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return base64.b64decode(value, validate=True)


def _read_header(line: str, log_name: str, log_public_key: bytes) -> Checkpoint:
    try:
        header = json.loads(line)
    except ValueError:
        raise _Bad(None, "header: not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") not in FORMATS:
        raise _Bad(None, f"header: format is not one of {', '.join(FORMATS)}")
    note = header.get("checkpoint")
    if not isinstance(note, str):
        raise _Bad(None, "header: no checkpoint")
    try:
        cp = verify_note(note, log_name, log_public_key)
    except CheckpointError as exc:
        raise _Bad(None, f"header checkpoint: {exc}") from None
    # The header's own origin/size are conveniences; they must agree with what is signed.
    if header.get("origin") != cp.origin:
        raise _Bad(None, f"header: origin {header.get('origin')!r} differs from the signed {cp.origin!r}")
    if header.get("size") != cp.size:
        raise _Bad(None, f"header: size {header.get('size')!r} differs from the signed size {cp.size}")
    return cp


def _read_entry(line: str, position: int, cp: Checkpoint) -> tuple[bytes, bool]:
    """The leaf hash at `position`, after its sequence and inclusion checks, and whether
    the entry's bytes were withheld (only its leaf hash exported)."""
    try:
        obj = json.loads(line)
    except ValueError:
        raise _Bad(position, f"entry {position}: line is not valid JSON") from None
    if not isinstance(obj, dict):
        raise _Bad(position, f"entry {position}: line is not a JSON object")
    index = obj.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise _Bad(position, f"entry {position}: index missing or not an integer")
    if index != position:
        # A deleted, repeated or moved line shows up as the first index out of sequence.
        raise _Bad(position, f"entry {position}: expected index {position}, found {index}")
    if position >= cp.size:
        raise _Bad(position, f"entry {position}: beyond the signed size {cp.size}")
    withheld = "entry" not in obj and "leaf_hash" in obj
    try:
        if withheld:
            leaf = _decode_b64(obj.get("leaf_hash"))
            if len(leaf) != 32:
                raise ValueError("not a SHA-256 hash")
        else:
            leaf = leaf_hash(_decode_b64(obj.get("entry")))
    except (ValueError, binascii.Error):
        raise _Bad(position, f"entry {position}: entry bytes (or leaf hash) missing or not base64") from None
    if "proof" in obj:
        raw_proof = obj["proof"]
        try:
            if not isinstance(raw_proof, list):
                raise ValueError("not a list")
            proof = [_decode_b64(h) for h in raw_proof]
        except (ValueError, binascii.Error):
            raise _Bad(position, f"entry {position}: proof is not a list of base64 hashes") from None
        if not verify_inclusion(leaf, position, cp.size, proof, cp.root):
            raise _Bad(position, f"entry {position}: leaf does not match the signed root")
    return leaf, withheld


def _check_previous(previous_checkpoint: str, log_name: str, log_public_key: bytes, cp: Checkpoint,
                    tree: MemoryTree, consistency_proof: list[bytes] | None) -> None:
    try:
        old = verify_note(previous_checkpoint, log_name, log_public_key)
    except CheckpointError as exc:
        raise _Bad(None, f"previous checkpoint: {exc}") from None
    if old.origin != cp.origin:
        raise _Bad(None, f"previous checkpoint is for origin {old.origin!r}, not {cp.origin!r}")
    if old.size > cp.size:
        raise _Bad(None, f"previous checkpoint size {old.size} is larger than the signed size {cp.size}")
    if consistency_proof is not None:
        consistent = verify_consistency(old.size, cp.size, old.root, cp.root, consistency_proof)
        how = "the consistency proof does not verify"
    else:
        # The export holds every entry, so the old root can be recomputed from its prefix.
        consistent = root(tree, old.size) == old.root
        how = f"the first {old.size} entries do not hash to its root"
    if not consistent:
        raise _Bad(None, f"previous checkpoint (size {old.size}) is not consistent with this log: {how}")


def verify_export(lines: Iterable[str], log_name: str, log_public_key: bytes,
                  previous_checkpoint: str | None = None,
                  consistency_proof: list[bytes] | None = None) -> Report:
    """Check an export against the log's key; stops at, and reports, the first problem."""
    cp: Checkpoint | None = None
    checked = withheld = 0
    try:
        # Blank lines carry nothing (a trailing newline at end of file is common); skip them.
        rows = (line for line in lines if line.strip())
        header = next(rows, None)
        if header is None:
            raise _Bad(None, "export is empty")
        cp = _read_header(header, log_name, log_public_key)
        tree = MemoryTree()
        for position, line in enumerate(rows):
            leaf, was_withheld = _read_entry(line, position, cp)
            tree.append_leaf_hash(leaf)
            checked += 1
            withheld += was_withheld
        if checked < cp.size:
            raise _Bad(checked, f"export ends after {checked} entries but the signed size is {cp.size}")
        # Proofs are optional per line; the full rebuild is what makes the check complete.
        if tree.root(cp.size) != cp.root:
            raise _Bad(None, "entries do not rebuild the signed root")
        if previous_checkpoint is not None:
            _check_previous(previous_checkpoint, log_name, log_public_key, cp, tree, consistency_proof)
    except _Bad as bad:
        return Report(ok=False, size=cp.size if cp else 0, root_hex=cp.root.hex() if cp else "",
                      first_bad=bad.first_bad, problem=bad.problem, checked=checked, withheld=withheld)
    return Report(ok=True, size=cp.size, root_hex=cp.root.hex(), first_bad=None, problem=None, checked=checked,
                  withheld=withheld)


def erased_by_rule(lines: Iterable[str]) -> dict[str, int]:
    """How many entries of an export say their value was erased, by retention rule. The
    value state is informational (not signed): the proof is that the entries still verify."""
    counts: dict[str, int] = {}
    for line in lines:
        try:
            value = json.loads(line).get("value") if line.strip() else None
        except (ValueError, AttributeError):
            continue
        if isinstance(value, dict) and value.get("state") == "erased":
            rule = str(value.get("erased_rule"))
            counts[rule] = counts.get(rule, 0) + 1
    return counts
