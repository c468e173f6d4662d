"""RFC 6962 / RFC 9162 Merkle trees over a settlement batch.

leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right); a tree
of n leaves splits at the largest power of two below n, and odd nodes are
never duplicated (duplication would let two different batches share a root).
The empty tree's root is SHA-256 of nothing.

Building level by level, pairing neighbours and carrying an unpaired last
node up unchanged, gives exactly the recursive RFC 6962 tree: the left part
of every split is a complete subtree, so only the rightmost node of a level
can be unpaired. That keeps the root of 100k leaves around 0.1 s.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from machpay.protocol.errors import ProtocolError, Reason

HASH_LEN = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    sha = _sha256
    paired = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])
    return paired


def _levels(hashes: list[bytes]) -> list[list[bytes]]:
    levels = [hashes]
    while len(levels[-1]) > 1:
        levels.append(_next_level(levels[-1]))
    return levels


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root over raw leaf data (the batch's 32-byte intent ids)."""
    sha = _sha256
    return merkle_root_from_hashes([sha(b"\x00" + data).digest() for data in leaves])


def merkle_root_from_hashes(hashes: Sequence[bytes]) -> bytes:
    """Root over already-hashed leaves."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


class MerkleTree:
    """A built tree that can hand out inclusion proofs for any of its leaves.

    Keeps every level in memory (about 2n hashes), so proofs for a whole batch
    cost one build instead of one build per proof.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaves: Sequence[bytes], *, prehashed: bool = False) -> None:
        sha = _sha256
        hashes = list(leaves) if prehashed else [sha(b"\x00" + d).digest() for d in leaves]
        self._levels = _levels(hashes) if hashes else [[]]

    @property
    def size(self) -> int:
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        return self._levels[-1][0] if self.size else EMPTY_ROOT

    @property
    def commitment(self) -> BatchCommitment:
        return BatchCommitment(self.root, self.size)

    def leaf_hash(self, index: int) -> bytes:
        return self._levels[0][index]

    def proof(self, index: int) -> list[bytes]:
        """The audit path for leaf ``index``, from the leaf's sibling up to the root."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is not in a tree of {self.size}")
        path: list[bytes] = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):  # an unpaired last node has no sibling here
                path.append(level[sibling])
            index >>= 1
        return path


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for one leaf of a tree over raw leaf data."""
    return MerkleTree(leaves).proof(index)


def root_from_inclusion_proof(
    leaf_digest: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes | None:
    """The root implied by a proof (RFC 9162 §2.1.3.2), or ``None`` if malformed."""
    if not 0 <= index < size or len(leaf_digest) != HASH_LEN:
        return None
    fn, sn = index, size - 1
    r = leaf_digest
    for p in proof:
        if sn == 0 or len(p) != HASH_LEN:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                # We were the unpaired right edge: climb until we are a right child.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return r


def verify_inclusion(
    leaf: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    root: bytes,
    *,
    prehashed: bool = False,
) -> bool:
    """True if ``leaf`` sits at ``index`` of the size-``size`` tree with this root.

    ``leaf`` is raw leaf data (an intent id) unless ``prehashed`` says it is
    already ``SHA-256(0x00 || data)``.
    """
    digest = leaf if prehashed else leaf_hash(leaf)
    return root_from_inclusion_proof(digest, index, size, proof) == root


_COMMITMENT = struct.Struct("<32sQ")


@dataclass(frozen=True, slots=True)
class BatchCommitment:
    """What a settlement commits on-chain: the root and how many leaves it covers.

    The count matters: the same root hash with a different size would admit
    proofs for indexes that are not in the batch.
    """

    root: bytes
    leaf_count: int

    def __post_init__(self) -> None:
        if len(self.root) != HASH_LEN:
            raise ProtocolError(Reason.BAD_FIELD, "root", f"root is {len(self.root)} bytes")
        if not 0 <= self.leaf_count <= 2**64 - 1:
            raise ProtocolError(Reason.BAD_FIELD, "leaf_count", "leaf count is not a u64")

    @classmethod
    def of(cls, leaves: Sequence[bytes]) -> BatchCommitment:
        return cls(merkle_root(leaves), len(leaves))

    def verify(
        self, leaf: bytes, index: int, proof: Sequence[bytes], *, prehashed: bool = False
    ) -> bool:
        return verify_inclusion(leaf, index, self.leaf_count, proof, self.root, prehashed=prehashed)

    def to_bytes(self) -> bytes:
        """root(32) || leaf_count(u64 le): 40 bytes."""
        return _COMMITMENT.pack(self.root, self.leaf_count)

    @classmethod
    def from_bytes(cls, data: bytes) -> BatchCommitment:
        if len(data) != _COMMITMENT.size:
            raise ProtocolError(
                Reason.BAD_LENGTH, "commitment", f"commitment is {len(data)} bytes, expected 40"
            )
        root, count = _COMMITMENT.unpack(data)
        return cls(root, count)
