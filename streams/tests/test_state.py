"""The pure processing core: dedupe, the two fraud rules, batching, exposure."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machpay.protocol import (
    MerkleTree,
    ProofKind,
    SignedIntent,
    verify_inclusion,
    verify_proof,
)
from machpay.streams.records import FLUSH_PREFIX, flush_marker, parse_flush
from machpay.streams.state import (
    ChannelLog,
    ClosedBatch,
    CloseReason,
    Ledger,
    PartitionState,
    StatusBook,
    batch_id,
)
from machpay.streams.traffic import Agent, accepted, keypair, vendor_key
from machpay.wire.intents import AcceptedIntent

AGENTS = [Agent(keypair(f"a{i}")) for i in range(3)]
VENDORS = [vendor_key(f"v{i}") for i in range(3)]

# (agent index, vendor index, amount)
steps = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(1, 1_000)),
    min_size=1,
    max_size=40,
)


def honest(plan: list[tuple[int, int, int]]) -> list[AcceptedIntent]:
    agents = [Agent(a.key) for a in AGENTS]
    return [agents[a].pay(VENDORS[v], amount) for a, v, amount in plan]


def all_batches(state: PartitionState, intents: list[AcceptedIntent]) -> list[ClosedBatch]:
    result = state.apply(intents, now_ms=1)
    return result.batches + state.flush(CloseReason.AGE, now_ms=2)


def check_batches(batches: list[ClosedBatch]) -> list[bytes]:
    ids: list[bytes] = []
    for batch in batches:
        tree = MerkleTree(batch.intent_ids)
        assert batch.root == tree.root
        for i, leaf in enumerate(batch.intent_ids):
            assert verify_inclusion(leaf, i, batch.leaf_count, tree.proof(i), batch.root)
        assert batch.batch_id == batch_id(batch.vendor, batch.root, batch.leaf_count)
        ids += batch.intent_ids
    return ids


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps, st.integers(1, 7), st.randoms(use_true_random=False))
def test_honest_traffic_shuffled_with_duplicates_yields_no_proof_and_one_batch_per_intent(
    plan: list[tuple[int, int, int]], batch_size: int, rnd: random.Random
) -> None:
    intents = honest(plan)
    redelivered = intents + rnd.sample(intents, k=len(intents) // 2)
    rnd.shuffle(redelivered)  # any arrival order: the checks do not assume nonce order
    state = PartitionState(batch_size=batch_size)
    result = state.apply(redelivered, now_ms=1)
    assert result.proofs == []
    assert result.rejected == []
    assert result.duplicates == len(redelivered) - len(intents)
    ids = check_batches(result.batches + state.flush(CloseReason.AGE, now_ms=2))
    assert sorted(ids) == sorted(i.id for i in intents)
    for batch in result.batches:
        assert batch.leaf_count == batch_size
        assert batch.close_reason is CloseReason.SIZE
    assert all(s.ban_reason is None for s in state.agents.values())


@settings(max_examples=30, deadline=None)
@given(steps, st.data())
def test_equivocation_yields_exactly_one_proof_and_a_ban(
    plan: list[tuple[int, int, int]], data: st.DataObject
) -> None:
    intents = honest(plan)
    victim = data.draw(st.sampled_from(intents))
    signer = next(a for a in AGENTS if a.public == victim.agent)
    twin = signer.sign(
        victim.vendor,
        nonce=victim.signed.nonce,
        cumulative=victim.signed.cumulative,
        amount=victim.signed.amount,
        context=b"\x01" * 16,  # another request: a second message for the same nonce
    )
    stream = [*intents, twin, twin, victim]  # repeated offence: still one proof
    at = data.draw(st.integers(0, len(intents)))
    stream = [*stream[:at], twin, *stream[at:]]
    state = PartitionState(batch_size=5)
    result = state.apply(stream, now_ms=1)
    assert len(result.proofs) == 1
    proof = result.proofs[0]
    assert proof.kind is ProofKind.EQUIVOCATION
    assert {proof.first.id, proof.second.id} == {victim.id, twin.id}
    verify_proof(proof)
    assert state.agents[victim.agent].ban_reason is not None
    ids = check_batches(result.batches + state.flush(CloseReason.AGE, now_ms=2))
    assert sorted(ids) == sorted([i.id for i in intents] + [twin.id])


@settings(max_examples=30, deadline=None)
@given(steps, st.data())
def test_channel_inconsistency_yields_exactly_one_proof(
    plan: list[tuple[int, int, int]], data: st.DataObject
) -> None:
    intents = honest(plan)
    victim = data.draw(st.sampled_from(intents))
    signer = next(a for a in AGENTS if a.public == victim.agent)
    # A fresh nonce on the same channel that under-counts: it reuses the
    # victim's cumulative although it comes later and pays more.
    cheat = signer.sign(
        victim.vendor,
        nonce=10_000,
        cumulative=victim.signed.cumulative,
        amount=1,
    )
    stream = list(intents)
    random.Random(data.draw(st.integers(0, 1000))).shuffle(stream)
    stream += [cheat, cheat]
    state = PartitionState(batch_size=4)
    result = state.apply(stream, now_ms=1)
    assert len(result.proofs) == 1
    proof = result.proofs[0]
    assert proof.kind is ProofKind.CHANNEL_INCONSISTENCY
    verify_proof(proof)
    assert cheat.id in {proof.first.id, proof.second.id}
    assert state.agents[victim.agent].ban_reason is not None
    ids = check_batches(result.batches + state.flush(CloseReason.AGE, now_ms=2))
    assert sorted(ids) == sorted([i.id for i in intents] + [cheat.id])


def test_inconsistency_found_against_the_successor_when_arriving_late() -> None:
    agent = Agent(keypair("late"))
    vendor = VENDORS[0]
    a = agent.sign(vendor, nonce=1, cumulative=10, amount=10)
    c = agent.sign(vendor, nonce=3, cumulative=30, amount=10)
    b = agent.sign(vendor, nonce=2, cumulative=25, amount=10)  # 30 < 25 + 10
    log = ChannelLog()
    assert log.check_and_insert(a.signed) is None
    assert log.check_and_insert(c.signed) is None
    proof = log.check_and_insert(b.signed)
    assert proof is not None
    assert (proof.first.id, proof.second.id) == (b.id, c.id)
    assert log.nonces == [1, 3]  # the violating intent stays out of the consistent set


def test_bad_signature_is_rejected_and_enters_no_batch() -> None:
    good = Agent(keypair("sig")).pay(VENDORS[0], 5)
    forged = accepted(SignedIntent(good.signed.message, bytes(64), good.signed.agent), good.vendor)
    state = PartitionState(batch_size=10)
    result = state.apply([forged, good], now_ms=1)
    assert [r.intent.id for r in result.rejected] == [forged.id]
    assert result.rejected[0].reason
    assert result.accepted == 1
    assert [b.intent_ids for b in state.flush(CloseReason.AGE, now_ms=2)] == [(good.id,)]


def test_replay_from_the_start_rebuilds_identical_batches() -> None:
    intents = honest([(i % 3, i % 2, 1 + i) for i in range(50)])
    first = PartitionState(batch_size=7)
    cut = 23
    emitted = first.apply(intents[:cut], now_ms=1).batches
    # A crash here: a new owner replays the whole partition and cuts at the same places.
    second = PartitionState(batch_size=7)
    replayed = second.apply(intents, now_ms=99).batches
    assert [b.batch_id for b in replayed[: len(emitted)]] == [b.batch_id for b in emitted]


def test_vouchers_are_the_latest_cumulative_per_channel() -> None:
    agent = Agent(keypair("voucher"))
    intents = [agent.pay(VENDORS[0], 3) for _ in range(4)]
    state = PartitionState(batch_size=100)
    state.apply(intents, now_ms=1)
    (batch,) = state.flush(CloseReason.WITHDRAWAL, now_ms=2)
    assert [v.id for v in batch.vouchers] == [intents[-1].id]
    assert batch.total == 12


def test_exposure_follows_intents_settlements_and_bond_events() -> None:
    agent = Agent(keypair("exposure"))
    state = PartitionState(batch_size=100)
    state.apply([agent.pay(VENDORS[0], 10), agent.pay(VENDORS[1], 5)], now_ms=1)
    ledger = Ledger()
    book = StatusBook()
    me = agent.public
    agent_state = state.agents[me]
    assert ledger.snapshot(me, agent_state).exposure == 15
    assert ledger.chain_event("BOND_DEPOSITED", me, 1000, signature="s1", account=me) == me
    assert ledger.chain_event("BOND_DEPOSITED", me, 1000, signature="s1", account=me) is None
    channel = agent.channel(VENDORS[0])
    assert ledger.settlement(b"b" * 32, "CONFIRMED", [(channel, me, 10, 10)]) == {me}
    assert ledger.settlement(b"b" * 32, "CONFIRMED", [(channel, me, 10, 10)]) == set()
    snap = ledger.snapshot(me, agent_state)
    assert (snap.bond, snap.exposure, snap.settled) == (990, 5, 10)  # bond net of payments
    ledger.chain_event("WITHDRAW_REQUESTED", me, 400, signature="s2", account=me, unlock_at=9)
    assert ledger.snapshot(me, agent_state).pending_withdrawal == (400, 9)
    v1 = book.update(me, ledger.snapshot(me, agent_state), now_ms=5)
    assert v1 == 5
    assert book.update(me, ledger.snapshot(me, agent_state), now_ms=6) is None
    ledger.chain_event("WITHDRAWN", me, 400, signature="s3", account=me)
    v2 = book.update(me, ledger.snapshot(me, agent_state), now_ms=5)
    assert v2 == 6  # monotonic even when the clock did not move
    assert ledger.snapshot(me, agent_state).bond == 590  # 1000 - 10 paid - 400 withdrawn


def test_the_bond_in_a_status_is_what_globalbond_holds_after_payments_and_a_slash() -> None:
    agent = Agent(keypair("bond-net"))
    ledger = Ledger()
    me, channel = agent.public, agent.channel(VENDORS[0])
    ledger.chain_event("BOND_DEPOSITED", me, 1_000, signature="d1", account=b"bond")
    ledger.settlement(b"b" * 32, "CONFIRMED", [(channel, me, 300, 300)])
    assert ledger.snapshot(me, None).bond == 700
    # The slash takes what was left (700): the bond is empty, not negative.
    ledger.chain_event("SLASHED", me, 700, signature="s1", account=b"bond")
    assert ledger.snapshot(me, None).bond == 0


def test_an_insolvent_fact_refuses_the_agent_and_a_top_up_does_not_clear_it() -> None:
    agent = Agent(keypair("insolvent"))
    state = PartitionState(batch_size=100)
    state.apply([agent.pay(VENDORS[0], 5_000)], now_ms=1)
    ledger, book = Ledger(), StatusBook()
    me, channel = agent.public, agent.channel(VENDORS[0])
    agent_state = state.agents[me]
    ledger.chain_event("BOND_DEPOSITED", me, 1_000, signature="d1", account=b"bond")
    # The program paid what the bond held and moved settled by exactly that.
    assert ledger.settlement(b"b" * 32, "CONFIRMED", [(channel, me, 1_000, 1_000)]) == {me}
    assert not ledger.snapshot(me, agent_state).insolvent
    v1 = book.update(me, ledger.snapshot(me, agent_state), now_ms=10)
    assert v1 is not None
    assert ledger.chain_event("AGENT_INSOLVENT", me, 4_000, signature="t1", account=channel) == me
    snap = ledger.snapshot(me, agent_state)
    assert snap.insolvent
    assert (snap.exposure, snap.settled) == (4_000, 1_000)
    v2 = book.update(me, snap, now_ms=10)
    assert v2 is not None
    assert v2 > v1  # the change is published
    # Redelivered, or a later short settlement (another signature): nothing new to publish.
    assert ledger.chain_event("AGENT_INSOLVENT", me, 4_000, signature="t1", account=channel) is None
    assert ledger.chain_event("AGENT_INSOLVENT", me, 4_000, signature="t2", account=channel) is None
    # A top-up lets the same voucher collect the rest; the Bond stays insolvent on-chain.
    assert ledger.chain_event("BOND_DEPOSITED", me, 10_000, signature="d2", account=b"bond") == me
    assert ledger.settlement(b"c" * 32, "CONFIRMED", [(channel, me, 5_000, 4_000)]) == {me}
    snap = ledger.snapshot(me, agent_state)
    assert snap.insolvent
    assert (snap.bond, snap.exposure, snap.settled) == (6_000, 0, 5_000)  # 11,000 in, 5,000 paid
    assert me in ledger.agents()


def test_settlement_rows_alone_never_make_an_agent_insolvent() -> None:
    agent = Agent(keypair("rows-only"))
    ledger = Ledger()
    me, channel = agent.public, agent.channel(VENDORS[1])
    # The row of an earlier settlement never arrived (journal lost, retention):
    # settled jumps by more than this row paid. That is a gap, not a shortfall.
    assert ledger.settlement(b"d" * 32, "CONFIRMED", [(channel, me, 9_000, 1_000)]) == {me}
    assert not ledger.snapshot(me, None).insolvent
    assert ledger.settled[channel] == 9_000
    assert ledger.settlement(b"e" * 32, "FAILED", [(channel, me, 12_000, 0)]) == set()
    assert ledger.insolvent == set()


@pytest.mark.parametrize("kind", ["UNKNOWN", "BATCH_SETTLED", "VENDOR_REGISTERED"])
def test_kinds_that_move_no_status_are_ignored(kind: str) -> None:
    ledger = Ledger()
    me = AGENTS[0].public
    assert ledger.chain_event(kind, me, 7, signature="x", account=me) is None
    assert ledger.snapshot(me, None) == Ledger().snapshot(me, None)
    assert ledger.chain_event("AGENT_INSOLVENT", None, 7, signature="y", account=me) is None


fact_kinds = st.sampled_from(["BOND_DEPOSITED", "AGENT_INSOLVENT", "BATCH_SETTLED", "UNKNOWN"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(fact_kinds, st.integers(0, 2), st.integers(0, 5)), max_size=25),
    st.randoms(use_true_random=False),
)
def test_insolvency_is_whether_a_fact_says_so_whatever_the_order_and_redelivery(
    facts: list[tuple[str, int, int]], rnd: random.Random
) -> None:
    agents = [a.public for a in AGENTS]
    delivered = facts + [rnd.choice(facts) for _ in facts[: len(facts) // 2]]  # redeliveries
    rnd.shuffle(delivered)
    ledger = Ledger()
    for kind, who, sig in delivered:
        ledger.chain_event(kind, agents[who], 100, signature=f"s{sig}", account=agents[who])
    expected = {agents[who] for kind, who, _ in facts if kind == "AGENT_INSOLVENT"}
    assert ledger.insolvent == expected
    assert all(ledger.snapshot(a, None).insolvent == (a in expected) for a in agents)
    deposits = {(who, sig) for kind, who, sig in facts if kind == "BOND_DEPOSITED"}
    for i, a in enumerate(agents):  # each distinct deposit counted once
        assert ledger.snapshot(a, None).bond == 100 * sum(1 for who, _ in deposits if who == i)


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        PartitionState(batch_size=0)


@settings(max_examples=30, deadline=None)
@given(
    steps,
    st.lists(st.integers(0, 40), max_size=6),
    st.lists(st.integers(0, 40), max_size=6),
    st.integers(1, 6),
)
def test_batch_ids_depend_on_the_log_only_not_on_chunking_or_clock(
    plan: list[tuple[int, int, int]], flushes: list[int], cuts: list[int], batch_size: int
) -> None:
    # A live run and a replay see the same log (intents and flush markers) in
    # different chunks and at different times; they must emit the same batches.
    intents = honest(plan)
    log: list[AcceptedIntent | None] = list(intents)
    for at in sorted(flushes, reverse=True):
        log.insert(min(at, len(log)), None)  # None: a flush marker

    def run(chunk_cuts: list[int], clock: int) -> list[bytes]:
        state = PartitionState(batch_size=batch_size)
        out: list[bytes] = []
        bounds = sorted({0, len(log), *(min(c, len(log)) for c in chunk_cuts)})
        for lo, hi in itertools.pairwise(bounds):
            pending: list[AcceptedIntent] = []
            for item in log[lo:hi]:
                if item is None:
                    out += [b.batch_id for b in state.apply(pending, clock).batches]
                    pending = []
                    out += [b.batch_id for b in state.flush(CloseReason.AGE, clock)]
                else:
                    pending.append(item)
            out += [b.batch_id for b in state.apply(pending, clock).batches]
            clock += 7
        return out

    assert run([], 1) == run(cuts, 1_000)


def test_a_withdrawal_flush_closes_only_batches_holding_that_agent() -> None:
    leaving, staying = Agent(keypair("leaving")), Agent(keypair("staying"))
    state = PartitionState(batch_size=100)
    state.apply(
        [leaving.pay(VENDORS[0], 1), staying.pay(VENDORS[1], 1), staying.pay(VENDORS[0], 1)], 1
    )
    closed = state.flush(CloseReason.WITHDRAWAL, 2, agents={leaving.public})
    assert [b.vendor for b in closed] == [VENDORS[0]]
    assert list(state.open) == [VENDORS[1]]


def test_flush_markers_round_trip() -> None:
    agents = {b"\x01" * 32, b"\x02" * 32}
    assert parse_flush(flush_marker(CloseReason.WITHDRAWAL, agents)) == (
        CloseReason.WITHDRAWAL,
        agents,
    )
    assert parse_flush(flush_marker(CloseReason.AGE)) == (CloseReason.AGE, None)
    assert parse_flush(FLUSH_PREFIX + "WHATEVER:zz") == (CloseReason.AGE, None)
