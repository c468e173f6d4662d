"""Fraud rules: honest agents never yield proofs; constructed offences always do."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from machpay.protocol import (
    FraudProof,
    Intent,
    Keypair,
    ProofKind,
    ProtocolError,
    Reason,
    SignedIntent,
    channel_address,
    compute_proof_id,
    detect_equivocation,
    detect_fraud,
    detect_inconsistency,
    sign_intent,
    verify_proof,
)
from machpay.protocol.intent import U64_MAX

PROGRAM = hashlib.sha256(b"program").digest()
DOMAIN = b"mp-test1"
AGENT = Keypair.from_seed(hashlib.sha256(b"fraud-agent").digest())
OTHER_AGENT = Keypair.from_seed(hashlib.sha256(b"fraud-agent-2").digest())
VENDORS = [hashlib.sha256(f"fraud-vendor-{i}".encode()).digest() for i in range(3)]


def channel(vendor: int, agent: Keypair = AGENT) -> bytes:
    return channel_address(program_id=PROGRAM, agent=agent.public, vendor=VENDORS[vendor])


def signed(
    *,
    nonce: int,
    cumulative: int,
    amount: int,
    vendor: int = 0,
    agent: Keypair = AGENT,
    domain: bytes = DOMAIN,
    context: bytes = bytes(16),
) -> SignedIntent:
    intent = Intent(
        domain=domain,
        channel=channel(vendor, agent),
        nonce=nonce,
        cumulative=cumulative,
        amount=amount,
        expires_at=2_000_000_000,
        context=context,
    )
    return sign_intent(intent, agent)


def assert_symmetric_proof(a: SignedIntent, b: SignedIntent, kind: ProofKind) -> FraudProof:
    ab, ba = detect_fraud(a, b), detect_fraud(b, a)
    assert ab is not None, f"expected {kind.name} for nonces {a.nonce}/{b.nonce}"
    assert ba is not None, f"expected {kind.name} with arguments swapped"
    assert ab.kind == ba.kind == kind, f"wrong kind {ab.kind.name}, expected {kind.name}"
    assert ab.to_bytes() == ba.to_bytes(), "proof bytes depend on argument order"
    assert ab.proof_id == ba.proof_id, "proof id depends on argument order"
    assert ab.proof_id == compute_proof_id(kind, ab.first.id, ab.second.id)
    verify_proof(ab)
    return ab


# --- honest agent as a state machine ----------------------------------------------------


class HonestAgent(RuleBasedStateMachine):
    """One agent paying several vendors from one durable nonce counter.

    Some intents are never seen by the detector (lost, or served by another
    replica): that must not make an honest history look fraudulent.
    """

    @initialize()
    def start(self) -> None:
        self.next_nonce = 0
        self.cumulative = [0, 0, 0]
        self.seen: list[SignedIntent] = []

    @rule(vendor=st.integers(0, 2), amount=st.integers(1, 10**6), observed=st.booleans())
    def pay(self, vendor: int, amount: int, observed: bool) -> None:
        self.cumulative[vendor] += amount
        intent = signed(
            nonce=self.next_nonce,
            cumulative=self.cumulative[vendor],
            amount=amount,
            vendor=vendor,
            context=self.next_nonce.to_bytes(16, "little"),
        )
        self.next_nonce += 1
        if observed:
            for earlier in self.seen:
                proof = detect_fraud(earlier, intent)
                assert proof is None, (
                    f"honest pair flagged as {proof.kind.name}: "
                    f"nonce {earlier.nonce} (cum {earlier.cumulative}) vs "
                    f"nonce {intent.nonce} (cum {intent.cumulative}, amount {intent.amount})"
                )
            self.seen.append(intent)

    @rule(skip=st.integers(1, 1000))
    def burn_nonces(self, skip: int) -> None:
        """A crashed SDK may lose reserved nonces; gaps are fine, reuse is not."""
        self.next_nonce += skip

    @invariant()
    def duplicates_are_not_fraud(self) -> None:
        if self.seen:
            last = self.seen[-1]
            assert detect_fraud(last, last) is None, "the same intent twice is a replay, not fraud"


HonestAgent.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
TestHonestAgent = HonestAgent.TestCase


@st.composite
def honest_histories(draw: st.DrawFn) -> list[SignedIntent]:
    steps = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 1000)), max_size=12))
    totals = [0, 0, 0]
    history = []
    for nonce, (vendor, amount) in enumerate(steps):
        totals[vendor] += amount
        history.append(
            signed(nonce=nonce * 3, cumulative=totals[vendor], amount=amount, vendor=vendor)
        )
    return history


@given(honest_histories())
@settings(max_examples=40, deadline=None)
def test_no_pair_of_an_honest_history_is_fraud(history: list[SignedIntent]) -> None:
    for a, b in itertools.permutations(history, 2):
        assert detect_fraud(a, b) is None, f"honest nonces {a.nonce}/{b.nonce} flagged"


# --- constructed offences ----------------------------------------------------------------


@given(honest_histories().filter(bool), st.data())
@settings(max_examples=40, deadline=None)
def test_reusing_any_nonce_is_equivocation(
    history: list[SignedIntent], data: st.DataObject
) -> None:
    victim = data.draw(st.sampled_from(history))
    vendor = data.draw(st.integers(0, 2))
    twin = signed(
        nonce=victim.nonce,
        cumulative=victim.cumulative + 1,
        amount=1,
        vendor=vendor,
        context=b"\x01" * 16,
    )
    proof = assert_symmetric_proof(victim, twin, ProofKind.EQUIVOCATION)
    assert proof.first.id < proof.second.id, "equivocation proofs are ordered by intent id"


@given(honest_histories().filter(bool), st.data())
@settings(max_examples=40, deadline=None)
def test_undercounting_later_intent_is_inconsistency(
    history: list[SignedIntent], data: st.DataObject
) -> None:
    earlier = data.draw(st.sampled_from(history))
    vendor = next(i for i in range(len(VENDORS)) if channel(i) == earlier.channel)
    amount = data.draw(st.integers(1, 1000))
    # Anything below earlier.cumulative + amount forgets part of what was authorised.
    cumulative = data.draw(st.integers(amount, earlier.cumulative + amount - 1))
    later = signed(
        nonce=10_000 + data.draw(st.integers(0, 100)),
        cumulative=cumulative,
        amount=amount,
        vendor=vendor,
    )
    proof = assert_symmetric_proof(earlier, later, ProofKind.CHANNEL_INCONSISTENCY)
    assert proof.first.nonce < proof.second.nonce, "inconsistency proofs are ordered by nonce"


def test_inconsistency_boundary_is_exact() -> None:
    a = signed(nonce=10, cumulative=100, amount=10)
    assert detect_inconsistency(a, signed(nonce=11, cumulative=110, amount=10)) is None
    assert detect_inconsistency(a, signed(nonce=11, cumulative=109, amount=9)) is None
    proof = detect_inconsistency(a, signed(nonce=11, cumulative=109, amount=10))
    assert proof is not None, "109 < 100 + 10 must be flagged"


def test_inconsistency_survives_u64_overflow_of_the_sum() -> None:
    a = signed(nonce=1, cumulative=U64_MAX, amount=1)
    b = signed(nonce=2, cumulative=5, amount=5)
    assert_symmetric_proof(a, b, ProofKind.CHANNEL_INCONSISTENCY)


# --- structural preconditions --------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        (
            signed(nonce=5, cumulative=10, amount=1),
            signed(nonce=5, cumulative=20, amount=1, agent=OTHER_AGENT),
            "different agents may share a nonce",
        ),
        (
            signed(nonce=5, cumulative=10, amount=1),
            signed(nonce=5, cumulative=20, amount=1, domain=b"mp-test2"),
            "another deployment's intents are not judged here",
        ),
        (
            signed(nonce=5, cumulative=10, amount=1),
            signed(nonce=6, cumulative=3, amount=3, vendor=1),
            "running totals are per channel",
        ),
        (
            signed(nonce=5, cumulative=10, amount=1),
            signed(nonce=5, cumulative=10, amount=1),
            "identical messages are the same intent",
        ),
    ],
)
def test_no_proof_without_the_preconditions(a: SignedIntent, b: SignedIntent, why: str) -> None:
    assert detect_fraud(a, b) is None, why
    assert detect_fraud(b, a) is None, why


def test_inconsistency_needs_the_same_agent_not_only_the_same_channel() -> None:
    a = signed(nonce=5, cumulative=10, amount=1)
    # Same channel bytes, but signed by another key (a forged companion).
    intent = Intent(
        domain=DOMAIN,
        channel=a.channel,
        nonce=6,
        cumulative=1,
        amount=1,
        expires_at=0,
        context=bytes(16),
    )
    b = sign_intent(intent, OTHER_AGENT)
    assert detect_inconsistency(a, b) is None


def test_equivocation_and_inconsistency_are_exclusive() -> None:
    a = signed(nonce=5, cumulative=10, amount=1)
    b = signed(nonce=5, cumulative=1, amount=1)
    assert detect_inconsistency(a, b) is None, "equal nonces are equivocation territory"
    assert detect_equivocation(a, b) is not None


# --- proof objects and verify_proof ------------------------------------------------------

A = signed(nonce=10, cumulative=100, amount=10)
B = signed(nonce=11, cumulative=105, amount=10)


def rejects(reason: Reason, field: str, proof: FraudProof) -> None:
    with pytest.raises(ProtocolError) as info:
        verify_proof(proof)
    got = info.value
    assert (got.reason, got.field) == (reason, field), f"{got.reason.value}[{got.field}]"


def test_proof_bytes_round_trip() -> None:
    proof = detect_fraud(A, B)
    assert proof is not None
    data = proof.to_bytes()
    assert len(data) == 1 + 2 * 193
    again = FraudProof.from_bytes(data)
    assert again == proof
    assert again.proof_id == proof.proof_id
    assert proof.agent == AGENT.public


def test_proof_from_bytes_rejects_garbage() -> None:
    proof = detect_fraud(A, B)
    assert proof is not None
    with pytest.raises(ProtocolError) as info:
        FraudProof.from_bytes(proof.to_bytes()[:-1])
    assert info.value.reason is Reason.BAD_LENGTH
    with pytest.raises(ProtocolError) as info:
        FraudProof.from_bytes(b"\x09" + proof.to_bytes()[1:])
    assert (info.value.reason, info.value.field) == (Reason.BAD_FIELD, "kind")


def test_verify_proof_rejects_reordered_intents() -> None:
    rejects(Reason.INVALID_PROOF, "order", FraudProof(ProofKind.CHANNEL_INCONSISTENCY, B, A))
    a = signed(nonce=3, cumulative=1, amount=1)
    b = signed(nonce=3, cumulative=2, amount=1)
    low, high = sorted((a, b), key=lambda s: s.id)
    rejects(Reason.INVALID_PROOF, "order", FraudProof(ProofKind.EQUIVOCATION, high, low))


def test_verify_proof_rejects_the_wrong_kind_and_honest_pairs() -> None:
    rejects(Reason.INVALID_PROOF, "kind", FraudProof(ProofKind.EQUIVOCATION, A, B))
    honest = signed(nonce=11, cumulative=110, amount=10)
    rejects(Reason.INVALID_PROOF, "kind", FraudProof(ProofKind.CHANNEL_INCONSISTENCY, A, honest))


def test_verify_proof_checks_both_signatures() -> None:
    forged = SignedIntent(B.message, A.signature, B.agent)
    rejects(
        Reason.BAD_SIGNATURE, "signature", FraudProof(ProofKind.CHANNEL_INCONSISTENCY, A, forged)
    )
    forged_first = SignedIntent(A.message, B.signature, A.agent)
    rejects(
        Reason.BAD_SIGNATURE,
        "signature",
        FraudProof(ProofKind.CHANNEL_INCONSISTENCY, forged_first, B),
    )
