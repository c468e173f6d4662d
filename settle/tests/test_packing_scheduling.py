"""Packing vouchers into measured transactions; priority ordering; commit offsets."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair as SoldersKeypair
from solders.pubkey import Pubkey

from machpay.protocol import Intent, Keypair, SignedIntent, sign_intent
from machpay.settle.precompile import THIS_INSTRUCTION, SignedEntry, ed25519_instruction
from machpay.settle.scheduling import OffsetTracker, WorkQueue
from machpay.settle.transactions import (
    MAX_TRANSACTION_BYTES,
    PackError,
    pack,
    serialized_size,
    sign,
)

PAYER = SoldersKeypair.from_seed(bytes(32))
PROGRAM = Pubkey.from_string("MachPay111111111111111111111111111111111111")
BLOCKHASH = Hash.default()


def voucher(i: int) -> SignedIntent:
    key = Keypair.from_seed(hashlib.sha256(b"pack" + i.to_bytes(4, "little")).digest())
    intent = Intent(
        domain=b"testtest",
        channel=hashlib.sha256(b"channel" + i.to_bytes(4, "little")).digest(),
        nonce=i + 1,
        cumulative=1000,
        amount=1,
        expires_at=2**40,
        context=bytes(16),
    )
    return sign_intent(intent, key)


def bond_of(v: SignedIntent) -> Pubkey:
    return Pubkey(hashlib.sha256(b"bond" + v.agent).digest())


def assemble(group: Sequence[SignedIntent]) -> list[Instruction]:
    """A settle-shaped transaction: the precompile + one instruction with 2 accounts per channel."""
    pre = ed25519_instruction(
        [SignedEntry(v.agent, v.signature, v.message) for v in group], THIS_INSTRUCTION
    )
    fixed = [AccountMeta(Pubkey(bytes([9]) * 32), False, False)] * 1
    per_channel = [
        meta
        for v in group
        for meta in (
            AccountMeta(Pubkey(v.intent.channel), False, True),
            AccountMeta(bond_of(v), False, True),
        )
    ]
    return [pre, Instruction(PROGRAM, bytes(8 + 32 + 8 + 8), fixed + per_channel)]


@pytest.mark.parametrize("with_table", [False, True])
def test_packing_fills_each_transaction_to_the_measured_limit(with_table: bool) -> None:
    vouchers = [voucher(i) for i in range(13)]
    tables = []
    if with_table:
        addresses = [Pubkey(v.intent.channel) for v in vouchers] + [bond_of(v) for v in vouchers]
        tables = [AddressLookupTableAccount(Pubkey.new_unique(), addresses)]
    groups = pack(vouchers, assemble, payer=PAYER.pubkey(), blockhash=BLOCKHASH, tables=tables)
    assert [v for g in groups for v in g.items] == vouchers  # order kept, nothing lost
    for g in groups:
        assert g.size <= MAX_TRANSACTION_BYTES
        assert len(bytes(sign(g.message, PAYER))) == g.size  # the measurement is the real size
    for g in groups[:-1]:  # each full group really could not take one more
        nxt = vouchers[vouchers.index(g.items[-1]) + 1]
        bigger = pack(
            [*g.items, nxt],
            assemble,
            payer=PAYER.pubkey(),
            blockhash=BLOCKHASH,
            tables=tables,
            max_bytes=10**6,
        )[0]
        assert bigger.size > MAX_TRANSACTION_BYTES
    per_tx = len(groups[0].items)
    # Measured: 207 precompile bytes per voucher + 2 account indexes + 64 bytes of keys
    # (273 per channel) without a table, 211 with one; ~330 bytes of fixed overhead.
    assert per_tx == (4 if with_table else 3)


def test_max_per_tx_and_items_that_never_fit() -> None:
    vouchers = [voucher(i) for i in range(5)]
    groups = pack(vouchers, assemble, payer=PAYER.pubkey(), blockhash=BLOCKHASH, max_per_tx=2)
    assert [len(g.items) for g in groups] == [2, 2, 1]
    with pytest.raises(PackError, match="does not fit"):
        pack(vouchers, assemble, payer=PAYER.pubkey(), blockhash=BLOCKHASH, max_bytes=300)


def test_serialized_size_counts_signatures() -> None:
    (group,) = pack([voucher(0)], assemble, payer=PAYER.pubkey(), blockhash=BLOCKHASH)
    assert serialized_size(group.message) == len(bytes(sign(group.message, PAYER)))


def test_withdrawing_agents_go_first() -> None:
    q: WorkQueue[str] = WorkQueue()
    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    q.push("batch1", [a])
    q.push("batch2", [b])
    q.push("batch3", [c], urgent=True)  # closed for a withdrawal by streams
    q.push("batch4", [b, c])
    assert q.withdrawal_requested(b) == 2  # batch2 and batch4 promoted
    q.push("batch5", [b])  # arrives after the request: urgent at once
    assert [q.pop() for _ in range(len(q))] == ["batch2", "batch3", "batch4", "batch5", "batch1"]
    assert q.pop() is None
    assert q.urgent_first([a, b, c]) == [b, a, c]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_held_proof_waits_for_its_agents_batches_queued_or_arriving_in_the_grace() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock)
    cheat, other = b"c" * 32, b"o" * 32
    q.push("other1", [other])
    q.push("cheat1", [cheat, other])
    q.push("cheat2", [cheat])
    assert q.hold("proof", cheat, 5.0) == 2  # cheat1 and cheat2 promoted
    assert len(q) == 4
    assert q.held == 1
    assert q.next_release_in() == 5.0
    assert q.pop() == "cheat1"  # the cheat's batches first, in arrival order
    clock.now += 1
    q.push("cheat3", [cheat])  # arrives within the grace: urgent at once
    assert q.pop() == "cheat2"
    assert q.pop() == "cheat3"
    assert q.pop() == "other1"  # the proof is still in its grace: others go on
    assert q.pop() is None
    assert not q.ready()
    assert len(q) == 1  # but it is not forgotten (its offset stays uncommitted)
    clock.now += 4
    q.push("cheat4", [cheat])  # grace over, yet a batch of the cheat still waits
    q.push("other2", [other])
    assert q.ready()
    assert q.pop() == "cheat4"
    assert q.pop() == "proof"  # before other2: proofs outrank batches once released
    assert q.pop() == "other2"
    assert len(q) == 0
    q.push("cheat5", [cheat])
    q.push("other3", [other])
    assert q.pop() == "cheat5"  # the cheat is no longer hurried: arrival order again


def test_a_zero_grace_proof_goes_before_any_batch_and_other_agents_do_not_block_it() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock)
    a, b = b"a" * 32, b"b" * 32
    q.push("b1", [b])
    q.hold("proof-a", a, 0.0)
    assert q.next_release_in() == 0.0
    assert q.pop() == "proof-a"
    assert q.pop() == "b1"


def test_two_proofs_for_one_agent_keep_it_hurried_until_both_are_out() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock)
    a, b = b"a" * 32, b"b" * 32
    q.hold("p1", a, 1.0)
    clock.now += 0.5
    q.hold("p2", a, 1.0)
    clock.now += 0.6
    assert q.pop() == "p1"
    q.push("b1", [b])
    q.push("a1", [a])  # p2 still held: a is hurried
    assert q.pop() == "a1"
    assert q.pop() == "b1"
    assert q.pop() is None
    clock.now += 1
    assert q.pop() == "p2"
    q.push("b2", [b])
    q.push("a2", [a])
    assert [q.pop(), q.pop()] == ["b2", "a2"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["batch", "proof", "tick"]), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    )
)
def test_no_proof_comes_out_before_a_batch_of_its_agent_pushed_before_its_release(
    steps: list[tuple[str, int]],
) -> None:
    """Any interleaving of pushes, holds, time passing and pops: every item comes out once,
    and a proof never comes out while a batch of its agent, pushed earlier, still waits."""
    clock = FakeClock()
    q: WorkQueue[tuple[str, int, int]] = WorkQueue(clock)
    agents = [bytes([i]) * 32 for i in range(4)]
    pushed: list[tuple[str, int, int]] = []
    popped: list[tuple[str, int, int]] = []
    waiting: set[tuple[str, int, int]] = set()
    for n, (what, who) in enumerate(steps):
        if what == "batch":
            item = ("batch", who, n)
            q.push(item, [agents[who]])
        elif what == "proof":
            item = ("proof", who, n)
            q.hold(item, agents[who], 2.0)
        else:
            clock.now += 1.0
            out = q.pop()
            if out is not None:
                if out[0] == "proof":
                    assert not any(w[0] == "batch" and w[1] == out[1] for w in waiting)
                waiting.discard(out)
                popped.append(out)
            continue
        pushed.append(item)
        waiting.add(item)
    clock.now += 10.0
    while (out := q.pop()) is not None:
        if out[0] == "proof":
            assert not any(w[0] == "batch" and w[1] == out[1] for w in waiting)
        waiting.discard(out)
        popped.append(out)
    assert sorted(popped) == sorted(pushed)
    assert len(q) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=30), st.data())
def test_queue_pops_every_item_once_urgent_before_normal(
    pushes: list[tuple[bool, int]], data: st.DataObject
) -> None:
    q: WorkQueue[int] = WorkQueue()
    agents = [bytes([i]) * 32 for i in range(4)]
    for i, (urgent, who) in enumerate(pushes):
        q.push(i, [agents[who]], urgent=urgent)
    withdrawing = data.draw(st.sets(st.integers(0, 3)))
    for who in withdrawing:
        q.withdrawal_requested(agents[who])
    order = [q.pop() for _ in range(len(pushes))]
    assert sorted(o for o in order if o is not None) == list(range(len(pushes)))
    assert len(q) == 0
    is_urgent = [pushes[i][0] or pushes[i][1] in withdrawing for i in order if i is not None]
    assert is_urgent == sorted(is_urgent, reverse=True)  # all urgent first
    # Within each class, arrival order.
    for flag in (True, False):
        same = [i for i, u in zip(order, is_urgent, strict=True) if u == flag]
        assert same == sorted(same, key=lambda x: x if x is not None else -1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 1000), unique=True, min_size=1, max_size=40), st.data())
def test_only_the_finished_prefix_is_committed(offsets: list[int], data: st.DataObject) -> None:
    tracker: OffsetTracker[int] = OffsetTracker()
    ordered = sorted(offsets)
    for o in ordered:
        tracker.fetched(0, o)
    finish_order = data.draw(st.permutations(ordered))
    finished: set[int] = set()
    committed = -1
    for o in finish_order:
        tracker.finished(0, o)
        finished.add(o)
        got = tracker.committable().get(0)
        prefix = 0
        while prefix < len(ordered) and ordered[prefix] in finished:
            prefix += 1
        expect = ordered[prefix - 1] + 1 if prefix else None
        if expect is not None and expect - 1 > committed:
            assert got == expect
            committed = expect - 1
        else:
            assert got is None
    assert tracker.outstanding() == 0
    with pytest.raises(KeyError):
        tracker.finished(0, 10**6)
