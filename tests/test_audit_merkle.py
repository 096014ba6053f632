"""The Merkle tree agrees with RFC 6962's reference behaviour (the Certificate Transparency test vectors that public
implementations share), and its proofs verify exactly when they should."""
from __future__ import annotations

import hashlib

import pytest

from tongban.audit.merkle import (EMPTY_ROOT, MerkleTree, leaf_hash, node_hash, verify_consistency,
                                  verify_inclusion)

# The reference leaves and the tree heads of sizes 0..8 (RFC 6962 test data, as CT implementations publish it).
DATA = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                   "606162636465666768696a6b6c6d6e6f")]
ROOTS = ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
         "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
         "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
         "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
         "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
         "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
         "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
         "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
         "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
INCLUSION = {(0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
             (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]}
CONSISTENCY = {(2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]}

TREE = MerkleTree.of_data(DATA)


def test_prefixes_are_rfc6962s():
    assert EMPTY_ROOT.hex() == ROOTS[0]
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


@pytest.mark.parametrize("size", range(9))
def test_tree_heads_match_the_reference(size):
    assert TREE.root(size).hex() == ROOTS[size]


@pytest.mark.parametrize(("index", "size"), sorted(INCLUSION))
def test_inclusion_proofs_match_the_reference(index, size):
    proof = TREE.inclusion_proof(index, size)
    assert [p.hex() for p in proof] == INCLUSION[(index, size)]
    assert verify_inclusion(TREE.leaves[index], index, size, proof, bytes.fromhex(ROOTS[size]))


def test_consistency_proofs_match_the_reference():
    proof = TREE.consistency_proof(2, 5)
    assert [p.hex() for p in proof] == CONSISTENCY[(2, 5)]
    assert verify_consistency(2, 5, bytes.fromhex(ROOTS[2]), bytes.fromhex(ROOTS[5]), proof)
    # (1, 8) is the audit path of leaf 0 (RFC 6962 §2.1.2).
    assert [p.hex() for p in TREE.consistency_proof(1, 8)] == INCLUSION[(0, 8)]


LEAVES = [leaf_hash(i.to_bytes(2, "big")) for i in range(37)]
BIG = MerkleTree(LEAVES)


def test_every_proof_of_every_shape_verifies_and_a_changed_one_does_not():
    for size in range(1, len(LEAVES) + 1):
        root = BIG.root(size)
        for index in range(size):
            proof = BIG.inclusion_proof(index, size)
            assert verify_inclusion(LEAVES[index], index, size, proof, root)
            assert not verify_inclusion(LEAVES[index], index, size, proof, BIG.root(size - 1) if size > 1 else b"x" * 32)
            if proof:
                bent = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
                assert not verify_inclusion(LEAVES[index], index, size, bent, root)
                assert not verify_inclusion(LEAVES[index], index, size, proof[:-1], root)
        for first in range(size + 1):
            proof = BIG.consistency_proof(first, size)
            assert verify_consistency(first, size, BIG.root(first), root, proof)
            if 0 < first < size:
                other = MerkleTree([*LEAVES[: first - 1], leaf_hash(b"rewritten"), *LEAVES[first:size]])
                # a tree whose older part was rewritten is not an extension of the old head
                assert not verify_consistency(first, size, BIG.root(first), other.root(size),
                                              other.consistency_proof(first, size))


def test_out_of_range_requests_are_refused():
    with pytest.raises(ValueError):
        TREE.inclusion_proof(8, 8)
    with pytest.raises(ValueError):
        TREE.consistency_proof(5, 3)
    assert not verify_inclusion(TREE.leaves[0], 8, 8, INCLUSION[(0, 8)], bytes.fromhex(ROOTS[8]))
