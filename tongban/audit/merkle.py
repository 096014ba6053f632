"""A Merkle tree over the ledger's event hashes, as RFC 6962 / RFC 9162 (Certificate Transparency) define it.

Leaf hash = SHA-256(0x00 || leaf), node hash = SHA-256(0x01 || left || right); a tree of n leaves splits at the
largest power of two below n (not at the midpoint). The tree head (MTH) of the empty tree is SHA-256 of nothing.
Inclusion proofs (audit paths, RFC 9162 §2.1.3) and consistency proofs (§2.1.4) are made from the leaves and
checked with nothing but the proof, the sizes and the roots (§2.1.3.2 and §2.1.4.2), so an auditor can check
them on another machine. Everything is pure: no store, no environment.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """The tree over `leaf_hashes` (already leaf-hashed); subtree hashes are memoised, so the heads and proofs of
    many sizes over one ledger cost little more than one."""

    def __init__(self, leaf_hashes: Sequence[bytes]):
        self.leaves = list(leaf_hashes)
        self._memo: dict[tuple[int, int], bytes] = {}

    @classmethod
    def of_data(cls, entries: Sequence[bytes]) -> "MerkleTree":
        return cls([leaf_hash(e) for e in entries])

    def __len__(self) -> int:
        return len(self.leaves)

    def _hash(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 1:
            return self.leaves[lo]
        key = (lo, hi)
        cached = self._memo.get(key)
        if cached is None:
            k = _split(n)
            cached = self._memo[key] = node_hash(self._hash(lo, lo + k), self._hash(lo + k, hi))
        return cached

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (all by default)."""
        size = len(self.leaves) if size is None else size
        if not 0 <= size <= len(self.leaves):
            raise ValueError(f"tree size {size} is outside 0..{len(self.leaves)}")
        return EMPTY_ROOT if size == 0 else self._hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 6962 §2.1.1."""
        size = len(self.leaves) if size is None else size
        if not 0 <= index < size <= len(self.leaves):
            raise ValueError(f"leaf {index} is not in a tree of size {size}")
        proof: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index - lo < k:
                proof.append(self._hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._hash(lo, lo + k))
                lo = lo + k
        return proof[::-1]

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(first, D[0:second]) of RFC 6962 §2.1.2."""
        second = len(self.leaves) if second is None else second
        if not 0 <= first <= second <= len(self.leaves):
            raise ValueError(f"no consistency proof from size {first} to size {second}")
        if first == 0 or first == second:
            return []
        return self._subproof(first, 0, second, True)

    def _subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self._hash(lo, hi)]
        k = _split(n)
        if m <= k:
            return self._subproof(m, lo, lo + k, complete) + [self._hash(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self._hash(lo, lo + k)]


def _climb(fn: int, sn: int, proof: Sequence[bytes]) -> list[tuple[bytes, bool]] | None:
    """RFC 9162's walk up from node `fn` of a tree whose last node is `sn` (§2.1.3.2 and §2.1.4.2 alike): each proof
    hash with whether it is hashed on the left of the running one; None when the proof does not end at the root."""
    steps = []
    for p in proof:
        if sn == 0:
            return None
        left = bool(fn & 1) or fn == sn
        steps.append((p, left))
        if left:
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
    return steps if sn == 0 else None


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` show leaf hash `leaf` at `index` in the tree of `size` with `root`?"""
    if not 0 <= index < size or any(len(p) != 32 for p in proof) or len(leaf) != 32:
        return False
    steps = _climb(index, size - 1, proof)
    if steps is None:
        return False
    r = leaf
    for p, left in steps:
        r = node_hash(p, r) if left else node_hash(r, p)
    return r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of `second` with `second_root` an append-only extension of `first`?"""
    if not 0 <= first <= second or any(len(p) != 32 for p in proof):
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first root is itself the first node of the proof
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    steps = _climb(fn, sn, path[1:])
    if steps is None:
        return False
    fr = sr = path[0]
    for c, left in steps:
        if left:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
        else:
            sr = node_hash(sr, c)
    return fr == first_root and sr == second_root
