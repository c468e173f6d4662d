"""What the settler refuses before it spends a lamport (no broker, no chain needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from solders.keypair import Keypair as SoldersKeypair

from machpay.config import load_settings
from machpay.protocol import (
    FraudProof,
    Intent,
    Keypair,
    ProofKind,
    SignedIntent,
    detect_inconsistency,
    sign_intent,
)
from machpay.settle.chain import Chain
from machpay.settle.service import load_deployment
from machpay.settle.settler import BatchWork, ProofWork, Settler

TP = TopicPartition("t", 0)


@pytest.fixture
def settler(tmp_path: Path) -> Settler:
    # An endpoint nothing listens on: any RPC call would fail the test.
    settings = load_settings(
        environ={},
        overrides={
            "settle": {
                "state_dir": str(tmp_path),
                "rpc_url": "http://127.0.0.1:9",
                "poll_interval_seconds": 0.01,
                "use_lookup_table": False,
            }
        },
    )
    return Settler(
        settings, SoldersKeypair(), load_deployment(settings), Chain("http://127.0.0.1:9")
    )


def intent(settler: Settler, key: Keypair, vendor: bytes, **fields: int) -> SignedIntent:
    defaults = {"nonce": 1, "cumulative": 10, "amount": 1, "expires_at": 2**40}
    defaults.update(fields)
    return sign_intent(
        Intent(
            domain=settler.domain,
            channel=bytes(settler.deployment.channel(key.public, vendor)),
            context=bytes(16),
            **defaults,
        ),
        key,
    )


def key(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(name.encode()).digest())


async def test_proofs_that_do_not_verify_are_refused_without_a_transaction(
    settler: Settler,
) -> None:
    agent, vendor = key("cheat"), b"v" * 32
    a = intent(settler, agent, vendor, nonce=1, cumulative=10, amount=10)
    b = intent(settler, agent, vendor, nonce=2, cumulative=12, amount=5)
    proof = detect_inconsistency(a, b)
    assert proof is not None
    reordered = FraudProof(ProofKind.CHANNEL_INCONSISTENCY, b, a)
    assert not await settler.submit_proof(ProofWork(TP, 0, reordered, reordered.proof_id))
    honest = intent(settler, agent, vendor, nonce=3, cumulative=30, amount=1)
    not_fraud = FraudProof(ProofKind.CHANNEL_INCONSISTENCY, a, honest)
    assert not await settler.submit_proof(ProofWork(TP, 1, not_fraud, not_fraud.proof_id))
    assert not await settler.submit_proof(ProofWork(TP, 2, None, proof.proof_id, "malformed"))
    assert settler.counters.proofs_invalid == 3
    assert settler.counters.proofs_submitted == 0
    assert settler.journal.count() == 0


def test_vouchers_the_program_would_refuse_are_named(settler: Settler) -> None:
    vendor = b"v" * 32
    good = intent(settler, key("a"), vendor)
    other = intent(settler, key("b"), vendor)
    forged = SignedIntent(other.message, good.signature, other.agent)
    wrong_domain = sign_intent(
        Intent(
            domain=b"otherdep",
            channel=bytes(settler.deployment.channel(key("c").public, vendor)),
            nonce=1,
            cumulative=5,
            amount=1,
            expires_at=2**40,
            context=bytes(16),
        ),
        key("c"),
    )
    elsewhere = intent(settler, key("d"), b"w" * 32)  # a channel of another vendor
    work = BatchWork(
        tp=TP,
        offset=0,
        batch_id=bytes(32),
        vendor=vendor,
        root=bytes(32),
        leaf_count=4,
        total=4,
        vouchers=(good, forged, wrong_domain, elsewhere),
        urgent=False,
    )
    valid, problems = settler._valid_vouchers(work)  # the pre-packing check
    assert valid == [good]
    assert [p.split(":")[1] for p in problems] == ["bad_signature", "wrong_domain", "wrong_channel"]


async def test_an_unreachable_endpoint_never_makes_the_settler_give_a_batch_up(
    settler: Settler,
) -> None:
    vendor = b"v" * 32
    voucher = intent(settler, key("a"), vendor)
    work = BatchWork(
        tp=TP,
        offset=7,
        batch_id=bytes(32),
        vendor=vendor,
        root=bytes(32),
        leaf_count=1,
        total=1,
        vouchers=(voucher,),
        urgent=False,
    )
    settler.tracker.fetched(TP, 7)
    settler.queue.push(work, work.agents)
    for _ in range(settler.cfg.max_attempts + 2):  # more passes than attempts allowed
        await settler.work_one()
        assert len(settler.queue) == 1  # back in the queue, every time
    assert settler.tracker.committable() == {}  # its offset is not committed
    assert settler.counters.batches_failed == 0
    assert settler.journal.count() == 0


def _batch_of(settler: Settler, agent: Keypair, offset: int) -> BatchWork:
    voucher = intent(settler, agent, b"v" * 32)
    return BatchWork(
        tp=TP,
        offset=offset,
        batch_id=offset.to_bytes(32, "big"),
        vendor=b"v" * 32,
        root=bytes(32),
        leaf_count=1,
        total=1,
        vouchers=(voucher,),
        urgent=False,
    )


async def test_a_proof_is_held_while_its_agents_batches_go_first_and_its_offset_stays_open(
    settler: Settler,
) -> None:
    cheat, honest = key("held-cheat"), key("held-honest")
    a = intent(settler, cheat, b"v" * 32, nonce=1, cumulative=10, amount=10)
    b = intent(settler, cheat, b"v" * 32, nonce=2, cumulative=12, amount=5)
    proof = detect_inconsistency(a, b)
    assert proof is not None
    other, mine = _batch_of(settler, honest, 1), _batch_of(settler, cheat, 2)
    work = ProofWork(TP, 3, proof, proof.proof_id)
    for offset in (1, 2, 3):
        settler.tracker.fetched(TP, offset)
    settler._enqueue(other)
    settler._enqueue(mine)
    settler._enqueue(work)  # default grace: held
    assert settler.counters.proofs_held == 1
    assert settler.queue.held == 1
    assert settler.queue.pop() is mine  # the cheat's batch moved ahead of the honest one
    assert settler.queue.pop() is other
    assert settler.queue.pop() is None  # the proof waits out its grace
    assert len(settler.queue) == 1
    assert settler.tracker.committable() == {}  # nothing was finished
    # A proof this process already slashed, or a malformed one, is not held.
    settler._proofs_done.add(proof.proof_id)
    settler._enqueue(ProofWork(TP, 4, proof, proof.proof_id))
    settler._enqueue(ProofWork(TP, 5, None, bytes(32), "malformed"))
    assert settler.queue.held == 1
    assert settler.queue.ready()


def test_a_zero_grace_submits_proofs_at_once(tmp_path: Path) -> None:
    settings = load_settings(
        environ={},
        overrides={
            "settle": {
                "state_dir": str(tmp_path),
                "rpc_url": "http://127.0.0.1:9",
                "use_lookup_table": False,
                "slash_grace_seconds": 0,
            }
        },
    )
    settler = Settler(
        settings, SoldersKeypair(), load_deployment(settings), Chain("http://127.0.0.1:9")
    )
    cheat = key("zero-cheat")
    a = intent(settler, cheat, b"v" * 32, nonce=1, cumulative=10, amount=10)
    b = intent(settler, cheat, b"v" * 32, nonce=2, cumulative=12, amount=5)
    proof = detect_inconsistency(a, b)
    assert proof is not None
    mine = _batch_of(settler, cheat, 1)
    work = ProofWork(TP, 2, proof, proof.proof_id)
    settler._enqueue(mine)
    settler._enqueue(work)
    assert settler.counters.proofs_held == 0
    assert settler.queue.pop() is work  # the old order: the proof first
    assert settler.queue.pop() is mine
