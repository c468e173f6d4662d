"""RFC 6962 Merkle trees against the Certificate Transparency reference data.

Leaves, roots and node hashes: transparency-dev/merkle, testonly/constants.go
(LeafInputs, NodeHashes, RootHashes). Inclusion proofs and the corruption
probes: transparency-dev/merkle, proof/verify_test.go (inclusionProofs,
corruptInclusionProof). Those files number leaves from 1; indexes here are 0-based.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machpay.protocol import (
    EMPTY_ROOT,
    BatchCommitment,
    MerkleTree,
    ProtocolError,
    Reason,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    merkle_root_from_hashes,
    verify_inclusion,
)
from machpay.protocol.merkle import root_from_inclusion_proof

CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

CT_LEAF_HASHES = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]

# Root of the tree over the first `size` leaves, for size 0..8.
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# (index, size, audit path)
CT_PROOFS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def reference_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written literally (recursive split at the largest power of 2 < n)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(
        b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])
    ).digest()


def reference_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n]), written literally."""
    n = len(leaves)
    if n <= 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if index < k:
        return [*reference_path(index, leaves[:k]), reference_root(leaves[k:])]
    return [*reference_path(index - k, leaves[k:]), reference_root(leaves[:k])]


# --- published vectors --------------------------------------------------------------------


def test_ct_leaf_hashes() -> None:
    assert [leaf_hash(leaf).hex() for leaf in CT_LEAVES] == CT_LEAF_HASHES


@pytest.mark.parametrize("size", range(9))
def test_ct_roots_for_every_size(size: int) -> None:
    assert merkle_root(CT_LEAVES[:size]).hex() == CT_ROOTS[size], f"root of size {size}"
    assert MerkleTree(CT_LEAVES[:size]).root.hex() == CT_ROOTS[size]
    assert reference_root(CT_LEAVES[:size]).hex() == CT_ROOTS[size]


def test_empty_tree() -> None:
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle_root_from_hashes([]) == EMPTY_ROOT
    tree = MerkleTree([])
    assert (tree.size, tree.root) == (0, EMPTY_ROOT)
    with pytest.raises(IndexError):
        tree.proof(0)
    assert not verify_inclusion(b"", 0, 0, [], EMPTY_ROOT)


def corrupted(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    """Probes modelled on corruptInclusionProof in transparency-dev/merkle."""
    probes = [
        ("index - 1", index - 1, size, proof, root, leaf),
        ("index + 1", index + 1, size, proof, root, leaf),
        ("index ^ 2", index ^ 2, size, proof, root, leaf),
        ("size * 2", index, size * 2, proof, root, leaf),
        ("size / 2", index, size // 2, proof, root, leaf),
        ("wrong leaf", index, size, proof, root, leaf_hash(b"WrongLeaf")),
        ("empty root", index, size, proof, EMPTY_ROOT, leaf),
        ("random root", index, size, proof, SOME_HASH, leaf),
        ("trailing garbage", index, size, [*proof, b""], root, leaf),
        ("trailing root", index, size, [*proof, root], root, leaf),
        ("preceding garbage", index, size, [b"", *proof], root, leaf),
        ("preceding root", index, size, [root, *proof], root, leaf),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((f"flipped proof[{i}]", index, size, flipped, root, leaf))
    if proof:
        probes.append(("removed component", index, size, proof[:-1], root, leaf))
    if len(proof) > 1:
        probes.append(
            ("inserted component", index, size, [proof[0], SOME_HASH, *proof[1:]], root, leaf)
        )
    return probes


@pytest.mark.parametrize(("index", "size", "path"), CT_PROOFS)
def test_ct_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    proof = [bytes.fromhex(h) for h in path]
    root = bytes.fromhex(CT_ROOTS[size])
    leaf = leaf_hash(CT_LEAVES[index])
    assert MerkleTree(CT_LEAVES[:size]).proof(index) == proof, "generated audit path"
    assert inclusion_proof(CT_LEAVES[:size], index) == proof
    assert reference_path(index, CT_LEAVES[:size]) == proof, "reference PATH()"
    assert verify_inclusion(leaf, index, size, proof, root, prehashed=True)
    assert verify_inclusion(CT_LEAVES[index], index, size, proof, root)
    accepted = [
        name
        for name, i, n, p, r, lf in corrupted(index, size, proof, root, leaf)
        if verify_inclusion(lf, i, n, p, r, prehashed=True)
    ]
    assert not accepted, f"corrupted proofs accepted: {accepted}"


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_degenerate_probes_fail(index: int, size: int) -> None:
    # From TestVerifyInclusion: nothing verifies against an empty or mismatched root.
    assert not verify_inclusion(SOME_HASH, index, size, [], b"", prehashed=True)
    assert not verify_inclusion(b"", index, size, [], EMPTY_ROOT, prehashed=True)
    assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT, prehashed=True)


def test_single_leaf_tree_root_is_the_leaf_hash() -> None:
    digest = leaf_hash(b"data")
    assert verify_inclusion(b"data", 0, 1, [], digest)
    assert not verify_inclusion(b"data", 0, 1, [], b"")
    assert root_from_inclusion_proof(b"", 0, 1, []) is None


# --- properties ---------------------------------------------------------------------------

leaf_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=70)


@given(st.lists(st.binary(max_size=40), max_size=70))
def test_iterative_root_equals_the_recursive_definition(leaves: list[bytes]) -> None:
    assert merkle_root(leaves) == reference_root(leaves)


@given(leaf_lists)
@settings(max_examples=60)
def test_every_proof_of_every_index_verifies(leaves: list[bytes]) -> None:
    tree = MerkleTree(leaves)
    root = tree.root
    for index, leaf in enumerate(leaves):
        proof = tree.proof(index)
        assert proof == reference_path(index, leaves), f"path of {index}/{len(leaves)}"
        assert verify_inclusion(leaf, index, len(leaves), proof, root), (
            f"proof for index {index} of {len(leaves)} does not verify"
        )


@given(leaf_lists, st.data())
@settings(max_examples=100)
def test_any_alteration_fails(leaves: list[bytes], data: st.DataObject) -> None:
    size = len(leaves)
    index = data.draw(st.integers(0, size - 1))
    tree = MerkleTree(leaves)
    proof, root, leaf = tree.proof(index), tree.root, leaves[index]

    altered_leaf = leaf + b"\x00"
    assert not verify_inclusion(altered_leaf, index, size, proof, root), "altered leaf"
    other_index = data.draw(st.integers(0, size + 5).filter(lambda i: i != index))
    if other_index >= size or leaves[other_index] != leaf:
        assert not verify_inclusion(leaf, other_index, size, proof, root), (
            f"index {index} proof accepted at {other_index}"
        )
    # A path only fixes the tree's shape as seen from the leaf: (0, 9) and
    # (0, 10) both have four left-hand steps, so sizes cannot be told apart by
    # the path alone. That is why the batch commits its leaf count on-chain.
    # What must hold: a size whose audit path has another length is refused.
    other_size = data.draw(st.integers(0, 2 * size + 2).filter(lambda n: n != size))
    if other_size <= index or len(reference_path(index, [b""] * other_size)) != len(proof):
        assert not verify_inclusion(leaf, index, other_size, proof, root), (
            f"size {size} proof accepted for size {other_size}"
        )
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        bad[position] = (int.from_bytes(bad[position], "big") ^ (1 << bit)).to_bytes(32, "big")
        assert not verify_inclusion(leaf, index, size, bad, root), "flipped proof bit"
        assert not verify_inclusion(leaf, index, size, proof[:-1], root), "shortened proof"
    assert not verify_inclusion(leaf, index, size, [*proof, SOME_HASH], root), "extended proof"


def test_leaf_and_node_domains_are_separated() -> None:
    # A two-leaf tree's root must not verify as a leaf of a one-leaf tree
    # (the second-preimage attack that the 0x00/0x01 prefixes prevent).
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    root = merkle_root([b"a", b"b"])
    assert not verify_inclusion(a + b, 0, 1, [], root)


# --- batch commitment ----------------------------------------------------------------------


def test_batch_commitment() -> None:
    ids = [hashlib.sha256(bytes([i])).digest() for i in range(11)]
    commitment = BatchCommitment.of(ids)
    assert commitment == MerkleTree(ids).commitment
    assert commitment.leaf_count == 11
    assert BatchCommitment.from_bytes(commitment.to_bytes()) == commitment
    assert len(commitment.to_bytes()) == 40
    tree = MerkleTree(ids)
    for i, intent_id in enumerate(ids):
        assert commitment.verify(intent_id, i, tree.proof(i)), f"intent {i} not provable"
        assert commitment.verify(tree.leaf_hash(i), i, tree.proof(i), prehashed=True)
    lying = BatchCommitment(commitment.root, 12)
    assert not lying.verify(ids[10], 10, tree.proof(10)), "leaf count is part of the commitment"


def test_prehashed_tree_matches() -> None:
    leaves = [bytes([i]) * 3 for i in range(9)]
    hashed = [leaf_hash(leaf) for leaf in leaves]
    assert MerkleTree(hashed, prehashed=True).root == merkle_root(leaves)
    assert merkle_root_from_hashes(hashed) == merkle_root(leaves)


@pytest.mark.parametrize(
    ("args", "field"), [((b"\x00" * 31, 1), "root"), ((b"\x00" * 32, -1), "leaf_count")]
)
def test_batch_commitment_rejects_bad_fields(args: tuple[bytes, int], field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        BatchCommitment(*args)
    assert (info.value.reason, info.value.field) == (Reason.BAD_FIELD, field)
    with pytest.raises(ProtocolError) as info:
        BatchCommitment.from_bytes(bytes(39))
    assert info.value.reason is Reason.BAD_LENGTH
