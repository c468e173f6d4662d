"""The two offences an honest agent can never commit, as pure functions.

1. Equivocation: same agent, same nonce, two different messages.
2. Channel inconsistency: same agent and channel, ``nonce_a < nonce_b`` and
   ``cumulative_b < cumulative_a + amount_b`` (the later intent does not
   account for everything authorised before it).

Both also require the same ``domain``: an agent may legitimately run
independent nonce counters on two deployments (say devnet and mainnet) with
one key, and a deployment's program only slashes for intents addressed to it.

Detectors assume the caller already verified both signatures (the streams
do, once per intent) but check every structural precondition themselves.
A proof holds the two intents in a canonical order, so the same offence
always yields byte-identical proofs and the same ``proof_id``, whichever
order the detector saw them in: downstream publishes and slashes once per id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum

from machpay.protocol.errors import ProtocolError, Reason
from machpay.protocol.intent import SIGNED_INTENT_LEN, SignedIntent

_PROOF_TAG = b"machpay:proof:v1"
PROOF_LEN = 1 + 2 * SIGNED_INTENT_LEN


class ProofKind(IntEnum):
    EQUIVOCATION = 1
    CHANNEL_INCONSISTENCY = 2


def compute_proof_id(kind: ProofKind, first_id: bytes, second_id: bytes) -> bytes:
    """SHA-256(tag || kind || id_first || id_second): one id per offence."""
    return hashlib.sha256(_PROOF_TAG + bytes((kind,)) + first_id + second_id).digest()


@dataclass(frozen=True, slots=True)
class FraudProof:
    """Two signed intents that together prove an offence, in canonical order."""

    kind: ProofKind
    first: SignedIntent
    second: SignedIntent
    proof_id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "proof_id", compute_proof_id(self.kind, self.first.id, self.second.id)
        )

    @property
    def agent(self) -> bytes:
        return self.first.agent

    def to_bytes(self) -> bytes:
        """kind(1) || first(193) || second(193)."""
        return bytes((self.kind,)) + self.first.to_bytes() + self.second.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> FraudProof:
        """Parse only; call :func:`verify_proof` before acting on it."""
        if len(data) != PROOF_LEN:
            raise ProtocolError(
                Reason.BAD_LENGTH, "proof", f"proof is {len(data)} bytes, expected {PROOF_LEN}"
            )
        try:
            kind = ProofKind(data[0])
        except ValueError:
            raise ProtocolError(Reason.BAD_FIELD, "kind", f"unknown proof kind {data[0]}") from None
        first = SignedIntent.from_bytes(data[1 : 1 + SIGNED_INTENT_LEN])
        second = SignedIntent.from_bytes(data[1 + SIGNED_INTENT_LEN :])
        return cls(kind, first, second)


def _comparable(a: SignedIntent, b: SignedIntent) -> bool:
    return a.agent == b.agent and a.intent.domain == b.intent.domain


def detect_equivocation(a: SignedIntent, b: SignedIntent) -> FraudProof | None:
    """Same agent, same domain, same nonce, different messages; ordered by id."""
    if not _comparable(a, b) or a.intent.nonce != b.intent.nonce or a.id == b.id:
        return None
    first, second = (a, b) if a.id < b.id else (b, a)
    return FraudProof(ProofKind.EQUIVOCATION, first, second)


def detect_inconsistency(a: SignedIntent, b: SignedIntent) -> FraudProof | None:
    """Same agent, domain and channel, the later nonce under-counts; ordered by nonce.

    Python integers do not overflow; the Rust side must compute
    ``cumulative_a + amount_b`` in u128 (or treat overflow as the offence,
    since any u64 ``cumulative_b`` is then smaller).
    """
    if not _comparable(a, b):
        return None
    ia, ib = a.intent, b.intent
    if ia.channel != ib.channel or ia.nonce == ib.nonce:
        return None
    if ia.nonce > ib.nonce:
        a, b, ia, ib = b, a, ib, ia
    if ib.cumulative < ia.cumulative + ib.amount:
        return FraudProof(ProofKind.CHANNEL_INCONSISTENCY, a, b)
    return None


def detect_fraud(a: SignedIntent, b: SignedIntent) -> FraudProof | None:
    """Either offence (they are exclusive: one needs equal nonces, the other not)."""
    return detect_equivocation(a, b) or detect_inconsistency(a, b)


def verify_proof(proof: FraudProof) -> None:
    """Everything the settler must know before submitting a proof on-chain.

    Both signatures verify strictly, the rule holds, and the intents are in
    canonical order (a reordered copy would carry a second ``proof_id`` for
    the same offence). Raises :class:`ProtocolError` otherwise.
    """
    proof.first.verify()
    proof.second.verify()
    if proof.kind == ProofKind.EQUIVOCATION:
        expected = detect_equivocation(proof.first, proof.second)
    else:
        expected = detect_inconsistency(proof.first, proof.second)
    if expected is None:
        raise ProtocolError(
            Reason.INVALID_PROOF,
            "kind",
            f"the two intents do not prove {proof.kind.name.lower()}",
        )
    if expected.first is not proof.first:
        raise ProtocolError(Reason.INVALID_PROOF, "order", "intents are not in canonical order")
