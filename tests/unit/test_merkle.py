"""RFC 9162 Merkle tree: the storage-shaped implementation (perfect subtrees + O(log n)
lookups) must agree with a naive one written here straight from the RFC's recursive
definitions, and the verifiers must accept exactly the honest proofs."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.domain.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    lookups,
    new_nodes,
    node_hash,
    root,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

# --- An independent reference, RFC 9162 §2.1, deliberately naive: lists and recursion. -----


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + d[0])
    k = _k(n)
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


# --------------------------------------------------------------------------------------------


def entries(n: int) -> list[bytes]:
    return [f"entry-{i}".encode() for i in range(n)]


BIG = entries(70)
TREE = MemoryTree(BIG)


class CountingSource:
    """Wraps a tree and counts lookups, to check roots and proofs stay O(log n)."""

    def __init__(self, inner: MemoryTree) -> None:
        self.inner, self.calls = inner, 0

    def node(self, level: int, index: int) -> bytes:
        self.calls += 1
        return self.inner.node(level, index)


def test_hash_primitives():
    assert EMPTY_ROOT == bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert leaf_hash(b"x") == _h(b"\x00x")
    assert node_hash(b"a" * 32, b"b" * 32) == _h(b"\x01" + b"a" * 32 + b"b" * 32)


@pytest.mark.parametrize("n", range(71))
def test_roots_match_reference(n):
    assert root(TREE, n) == ref_mth(BIG[:n])
    assert MemoryTree(BIG[:n]).root() == ref_mth(BIG[:n])


def test_subtree_hash_of_any_range():
    for start in range(0, 20):
        for end in range(start, 24):
            assert subtree_hash(TREE, start, end) == ref_mth(BIG[start:end])


@pytest.mark.parametrize("n", range(1, 41))
def test_every_inclusion_proof(n):
    d = BIG[:n]
    r = ref_mth(d)
    for m in range(n):
        proof = inclusion_proof(TREE, m, n)
        assert proof == ref_path(m, d)
        leaf = leaf_hash(d[m])
        assert verify_inclusion(leaf, m, n, proof, r)
        # Wrong leaf, index, size, root or any altered proof element must fail.
        assert not verify_inclusion(leaf_hash(b"forged"), m, n, proof, r)
        if n > 1:
            assert not verify_inclusion(leaf, (m + 1) % n, n, proof, r)
        assert not verify_inclusion(leaf, m, n, proof, _h(r))
        for j in range(len(proof)):
            bad = list(proof)
            bad[j] = _h(bad[j])
            assert not verify_inclusion(leaf, m, n, bad, r)
        assert not verify_inclusion(leaf, m, n, proof + [r], r)
        if proof:
            assert not verify_inclusion(leaf, m, n, proof[:-1], r)


@pytest.mark.parametrize("n", range(1, 41))
def test_every_consistency_proof(n):
    new_root = ref_mth(BIG[:n])
    for m in range(1, n + 1):
        old_root = ref_mth(BIG[:m])
        proof = consistency_proof(TREE, m, n)
        assert proof == (ref_proof(m, BIG[:n]) if m < n else [])
        assert verify_consistency(m, n, old_root, new_root, proof)
        assert not verify_consistency(m, n, _h(old_root), new_root, proof)
        assert not verify_consistency(m, n, old_root, _h(new_root), proof)
        for j in range(len(proof)):
            bad = list(proof)
            bad[j] = _h(bad[j])
            assert not verify_consistency(m, n, old_root, new_root, bad)
        if proof:
            assert not verify_consistency(m, n, old_root, new_root, proof[:-1])
        assert not verify_consistency(m, n, old_root, new_root, proof + [new_root])
        if m < n:
            # A forked log of the same size: same shape of proof, different history.
            fork = BIG[: m - 1] + [b"forged"] + BIG[m:n]
            assert not verify_consistency(m, n, old_root, ref_mth(fork), ref_proof(m, fork))


def test_consistency_edges():
    r5 = ref_mth(BIG[:5])
    assert consistency_proof(TREE, 0, 5) == []
    assert verify_consistency(0, 5, EMPTY_ROOT, r5, [])
    assert not verify_consistency(0, 5, r5, r5, [])
    assert verify_consistency(5, 5, r5, r5, [])
    assert not verify_consistency(5, 5, r5, r5, [r5])
    assert not verify_consistency(3, 5, ref_mth(BIG[:3]), r5, [])
    assert not verify_consistency(6, 5, r5, r5, [])


@pytest.mark.parametrize("bad", [
    dict(leaf=b"short"), dict(leaf=None), dict(index=-1), dict(index=5), dict(size=0),
    dict(index="1"), dict(proof="not a list"), dict(proof=[b"short"]), dict(proof=[None]),
    dict(proof=None), dict(root=b""), dict(size=2**70), dict(index=1.0),
])
def test_verify_inclusion_never_raises(bad):
    args = dict(leaf=leaf_hash(BIG[1]), index=1, size=5, proof=inclusion_proof(TREE, 1, 5),
                root=ref_mth(BIG[:5]))
    assert verify_inclusion(**args)
    args.update(bad)
    assert verify_inclusion(**args) is False


@pytest.mark.parametrize("bad", [
    dict(old_size=-1), dict(new_size=-3), dict(old_size="3"), dict(old_root=None), dict(new_root=b"x"),
    dict(proof=None), dict(proof=b"\x00" * 32), dict(proof=[1, 2]), dict(new_size=2**80),
    dict(old_size=2**80, new_size=2**81),
])
def test_verify_consistency_never_raises(bad):
    args = dict(old_size=3, new_size=7, old_root=ref_mth(BIG[:3]), new_root=ref_mth(BIG[:7]),
                proof=consistency_proof(TREE, 3, 7))
    assert verify_consistency(**args)
    args.update(bad)
    assert verify_consistency(**args) is False


def test_lookups_are_logarithmic():
    big = MemoryTree([i.to_bytes(4, "big") for i in range(5000)])
    src = CountingSource(big)
    for size in (1, 1000, 4096, 4097, 4999, 5000):
        src.calls = 0
        root(src, size)
        assert src.calls <= size.bit_length()
        src.calls = 0
        inclusion_proof(src, size // 3, size)
        assert src.calls <= 2 * size.bit_length()
        src.calls = 0
        consistency_proof(src, max(1, size // 3), size)
        assert src.calls <= 2 * size.bit_length() + 1


class OnlySource:
    """A tree that answers only the addresses it was given, as storage does after one query."""

    def __init__(self, inner: MemoryTree, addresses: set[tuple[int, int]]) -> None:
        self.inner, self.addresses = inner, addresses

    def node(self, level: int, index: int) -> bytes:
        if (level, index) not in self.addresses:
            raise KeyError((level, index))
        return self.inner.node(level, index)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 32, 33, 64, 70])
def test_a_dry_run_names_every_node_a_computation_reads(n):
    computations = [lambda s: root(s, n), lambda s: inclusion_proof(s, n // 2, n),
                    lambda s: inclusion_proof(s, n - 1, n), lambda s: consistency_proof(s, max(1, n // 3), n),
                    lambda s: new_nodes(n, [leaf_hash(e) for e in entries(11)], s)]
    for compute in computations:
        wanted = lookups(compute)
        assert compute(OnlySource(TREE, wanted)) == compute(TREE)
        assert len(wanted) <= 2 * n.bit_length() + 1
    assert lookups(lambda s: root(s, 0)) == set()


def test_new_nodes_refuses_entries_for_hashes():
    with pytest.raises(ValueError):
        new_nodes(0, [b"an entry, not a hash"], MemoryTree())


def test_new_nodes_lists_each_completed_subtree():
    tree = MemoryTree(BIG[:3])
    rows = new_nodes(3, [leaf_hash(BIG[3])], tree)
    l01 = node_hash(leaf_hash(BIG[0]), leaf_hash(BIG[1]))
    l23 = node_hash(leaf_hash(BIG[2]), leaf_hash(BIG[3]))
    assert rows == [(0, 3, leaf_hash(BIG[3])), (1, 1, l23), (2, 0, node_hash(l01, l23))]


# --- Property checks against the reference. ------------------------------------------------

entry_lists = st.lists(st.binary(max_size=12), min_size=1, max_size=80)


@settings(max_examples=150, deadline=None)
@given(data=entry_lists, choice=st.data())
def test_random_trees_agree_with_reference(data, choice):
    n = len(data)
    tree = MemoryTree(data)
    m = choice.draw(st.integers(1, n))
    i = choice.draw(st.integers(0, n - 1))
    assert tree.root() == ref_mth(data)
    assert root(tree, m) == ref_mth(data[:m])
    assert inclusion_proof(tree, i, n) == ref_path(i, data)
    assert verify_inclusion(leaf_hash(data[i]), i, n, inclusion_proof(tree, i, n), ref_mth(data))
    proof = consistency_proof(tree, m, n)
    assert proof == (ref_proof(m, data) if m < n else [])
    assert verify_consistency(m, n, ref_mth(data[:m]), ref_mth(data), proof)


@settings(max_examples=150, deadline=None)
@given(data=st.lists(st.binary(max_size=6), max_size=120), cuts=st.lists(st.integers(0, 120), max_size=8))
def test_new_nodes_independent_of_batching(data, cuts):
    leaves = [leaf_hash(e) for e in data]
    whole = new_nodes(0, leaves, MemoryTree())
    bounds = sorted({c for c in cuts if c <= len(data)} | {0, len(data)})
    tree, pieces = MemoryTree(), []
    for a, b in zip(bounds, bounds[1:], strict=False):
        rows = new_nodes(tree.size, leaves[a:b], tree)
        pieces.extend(rows)
        tree.append_many(data[a:b])
    assert sorted(pieces) == sorted(whole)
    assert len({(lv, ix) for lv, ix, _ in whole}) == len(whole)  # no node emitted twice
    # Exactly the perfect subtrees of a tree of this size: sum over levels of floor(n / 2^l).
    n = len(data)
    assert len(whole) == sum(n >> lv for lv in range(n.bit_length() + 1))
    assert tree.root() == ref_mth(data)
