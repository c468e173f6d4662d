"""Per-key snapshots: a state restored from the table behaves exactly like the original."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machpay.streams import snapshot
from machpay.streams.state import CloseReason, PartitionState
from machpay.streams.traffic import Agent, keypair, vendor_key
from machpay.wire.intents import AcceptedIntent

AGENTS = [keypair(f"snap{i}") for i in range(3)]
VENDORS = [vendor_key(f"snapv{i}") for i in range(3)]
PARTITION = 2

Op = list[AcceptedIntent] | None
"""A record: its intents, or None for a flush marker."""


@dataclass
class Outputs:
    proofs: list[bytes] = field(default_factory=list)
    batches: list[tuple[bytes, tuple[bytes, ...]]] = field(default_factory=list)
    duplicates: int = 0


def traffic(rnd: random.Random, n: int) -> list[AcceptedIntent]:
    """Honest payments with duplicates, equivocations and inconsistencies mixed in."""
    agents = [Agent(k) for k in AGENTS]
    out: list[AcceptedIntent] = []
    for _ in range(n):
        agent = rnd.choice(agents)
        vendor = rnd.choice(VENDORS)
        roll = rnd.random()
        if out and roll < 0.15:
            out.append(rnd.choice(out))  # redelivery
        elif out and roll < 0.22:
            victim = rnd.choice([i for i in out if i.agent == agent.public] or [out[0]])
            owner = next(a for a in agents if a.public == victim.agent)
            out.append(  # same nonce, another message
                owner.sign(
                    victim.vendor,
                    nonce=victim.signed.nonce,
                    cumulative=victim.signed.cumulative,
                    amount=victim.signed.amount,
                    context=bytes([rnd.randrange(1, 255)]) * 16,
                )
            )
        elif roll < 0.28 and agent.cumulative.get(vendor):
            out.append(  # a later nonce that under-counts
                agent.sign(
                    vendor,
                    nonce=agent.next_nonce + rnd.randrange(1, 4),
                    cumulative=agent.cumulative[vendor],
                    amount=min(rnd.randrange(1, 5), agent.cumulative[vendor]),
                )
            )
        else:
            out.append(agent.pay(vendor, rnd.randrange(1, 9)))
    return out


def chunks_of(rnd: random.Random, intents: list[AcceptedIntent]) -> list[list[Op]]:
    """Records of a few intents, flush markers between some, grouped into chunks."""
    ops: list[Op] = []
    i = 0
    while i < len(intents):
        size = rnd.randrange(1, 5)
        ops.append(intents[i : i + size])
        i += size
        if rnd.random() < 0.15:
            ops.append(None)
    chunks: list[list[Op]] = []
    while ops:
        size = rnd.randrange(1, 4)
        chunks.append(ops[:size])
        ops = ops[size:]
    return chunks


def run_chunk(
    state: PartitionState,
    writer: snapshot.SnapshotWriter,
    table: dict[bytes, bytes],
    chunk: list[Op],
    *,
    offset: int,
    out: Outputs,
    tear: int | None = None,
) -> int:
    agents: set[bytes] = set()
    vendors: set[bytes] = set()
    for op in chunk:
        if op is None:
            closed = state.flush(CloseReason.AGE, now_ms=offset)
        else:
            result = state.apply(op, now_ms=offset)
            closed = result.batches
            out.proofs += [p.proof_id for p in result.proofs]
            out.duplicates += result.duplicates
            agents |= result.touched
            vendors |= {i.vendor for i in op}
        out.batches += [(b.batch_id, b.intent_ids) for b in closed]
        vendors |= {b.vendor for b in closed}
        offset += 1
    writes, mark = writer.capture(state, offset, agents=agents, vendors=vendors)
    landed = [*writes, mark] if tear is None else writes[:tear]  # a crash before the mark
    for key, value in landed:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return offset


@contextmanager
def block(size: int) -> Iterator[None]:
    with patch.object(snapshot, "BLOCK", size):
        yield


def everything(state: PartitionState, covered: int) -> dict[bytes, bytes]:
    """Every key of the state as it would be written from scratch."""
    writes, mark = snapshot.SnapshotWriter(PARTITION).capture(
        state, covered, agents=state.agents, vendors=state.open
    )
    return {k: v for k, v in [*writes, mark] if v is not None}


def payloads(table: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """Each key's value as of the mark, without the offset it was written at."""
    covered, order, values, _ = snapshot.resolve(PARTITION, table)
    current = {k: v[9:] for k, v in values.items() if len(v) > 9}  # closed batches: gone
    current[b"mark"] = covered.to_bytes(8, "big") + b"".join(order)
    return current


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.randoms(use_true_random=False),
    st.integers(5, 60),
    st.integers(1, 6),
    st.integers(1, 5),
    st.booleans(),
)
def test_restoring_at_any_chunk_gives_the_same_outputs_and_state(
    rnd: random.Random, n: int, batch_size: int, block_size: int, torn: bool
) -> None:
    chunks = chunks_of(rnd, traffic(rnd, n))
    cut = rnd.randrange(len(chunks))
    with block(block_size):
        original = PartitionState(batch_size=batch_size)
        writer = snapshot.SnapshotWriter(PARTITION)
        table: dict[bytes, bytes] = {}
        before, after = Outputs(), Outputs()
        offset = 0
        for chunk in chunks[:cut]:
            offset = run_chunk(original, writer, table, chunk, offset=offset, out=before)
        at_mark = offset
        expected = everything(original, at_mark)
        crashed = dict(table)
        for chunk in chunks[cut:]:
            if torn and chunk is chunks[cut]:
                # kill -9 while this chunk's keys were landing: a prefix of them
                # reached the table, its mark did not.
                scratch = snapshot.SnapshotWriter(PARTITION, dict(writer.written))
                scratch.partial = {a: bytearray(b) for a, b in writer.partial.items()}
                scratch.slots = dict(writer.slots)
                probe_state = restore_copy(table, batch_size)
                tear_at = rnd.randrange(0, 40)
                run_chunk(
                    probe_state, scratch, crashed, chunk, offset=offset, out=Outputs(), tear=tear_at
                )
            offset = run_chunk(original, writer, table, chunk, offset=offset, out=after)
        restored = snapshot.restore(
            PARTITION, crashed, batch_size=batch_size, verify_signatures=True
        )
        assert restored.covered == at_mark
        assert everything(restored.state, at_mark) == expected
        # The restored state goes on from the mark: the same proofs, batches, duplicates.
        twin = Outputs()
        r_offset = at_mark
        r_table = dict(crashed)
        for chunk in chunks[cut:]:
            r_offset = run_chunk(
                restored.state, restored.writer, r_table, chunk, offset=r_offset, out=twin
            )
        assert twin == after
        assert everything(restored.state, offset) == everything(original, offset)
        # The tables written chunk by chunk (torn or not) hold a snapshot from scratch.
        assert payloads(table) == payloads(everything(original, offset))
        assert payloads(r_table) == payloads(everything(original, offset))
        again = snapshot.restore(PARTITION, r_table, batch_size=batch_size, verify_signatures=True)
        assert everything(again.state, offset) == everything(original, offset)


def restore_copy(table: dict[bytes, bytes], batch_size: int) -> PartitionState:
    return snapshot.restore(PARTITION, table, batch_size=batch_size, verify_signatures=True).state


def test_no_mark_means_an_empty_state_at_offset_zero() -> None:
    restored = snapshot.restore(PARTITION, {}, batch_size=10, verify_signatures=True)
    assert restored.covered == 0
    assert restored.state.agents == {}
    assert restored.state.open == {}


def test_values_the_mark_does_not_cover_are_ignored_and_overwritten_next() -> None:
    agent = Agent(AGENTS[0])
    state = PartitionState(batch_size=100)
    state.apply([agent.pay(VENDORS[0], 3)], now_ms=1)
    writer = snapshot.SnapshotWriter(PARTITION)
    writes, mark = writer.capture(state, 4, agents={agent.public}, vendors={VENDORS[0]})
    table = {k: v for k, v in [*writes, mark] if v is not None}
    second = agent.pay(VENDORS[0], 2)
    state.apply([second], now_ms=2)
    newer, _ = writer.capture(state, 5, agents={agent.public}, vendors={VENDORS[0]})
    table.update({k: v for k, v in newer if v is not None})  # keys landed, the mark did not
    restored = snapshot.restore(PARTITION, table, batch_size=100, verify_signatures=True)
    assert restored.covered == 4
    assert len(restored.state.agents[agent.public].nonces) == 1
    assert restored.state.open[VENDORS[0]].total == 3
    # The next write of each key goes to the slot holding the uncovered value.
    restored.state.apply([second], now_ms=2)
    again, _ = restored.writer.capture(
        restored.state, 5, agents={agent.public}, vendors={VENDORS[0]}
    )
    assert {k for k, _ in again} == {k for k, _ in newer}


def test_a_mark_that_disagrees_with_the_table_is_a_torn_snapshot() -> None:
    state = PartitionState(batch_size=100)
    state.apply([Agent(AGENTS[0]).pay(VENDORS[0], 3)], now_ms=1)
    table = everything(state, 1)
    table[snapshot.mark_key(PARTITION)] = snapshot.encode_mark(1, [VENDORS[1]])
    with pytest.raises(snapshot.TornSnapshotError, match="lists 1 open batches"):
        snapshot.restore(PARTITION, table, batch_size=100, verify_signatures=True)


def test_a_missing_block_or_a_bad_value_is_named() -> None:
    agent = Agent(AGENTS[1])
    state = PartitionState(batch_size=100)
    state.apply([agent.pay(VENDORS[1], 2)], now_ms=1)
    table = everything(state, 1)
    broken = dict(table)
    del broken[snapshot.slotted(snapshot.block_key(agent.public, 0), 0)]
    with pytest.raises(snapshot.SnapshotError, match="no block 0"):
        snapshot.restore(PARTITION, broken, batch_size=100, verify_signatures=True)
    broken = dict(table)
    broken[snapshot.slotted(snapshot.head_key(agent.public), 0)] = b"\x09" + bytes(8)
    with pytest.raises(snapshot.SnapshotError, match="format 9"):
        snapshot.restore(PARTITION, broken, batch_size=100, verify_signatures=True)


def test_partition_keys_keeps_only_the_partitions_agents_batches_and_mark() -> None:
    mine, other = b"\x01" * 32, b"\x02" * 32
    items = [
        (snapshot.head_key(mine), b"h"),
        (snapshot.block_key(other, 0), b"b"),
        (snapshot.batch_key(PARTITION, VENDORS[0]), b"x"),
        (snapshot.batch_key(PARTITION + 1, VENDORS[0]), b"y"),
        (snapshot.mark_key(PARTITION), b"m"),
        (snapshot.mark_key(0), b"n"),
    ]
    owner = {mine: PARTITION, other: 0}
    kept = dict(snapshot.partition_keys(items, PARTITION, owner.__getitem__))
    assert set(kept) == {
        snapshot.head_key(mine),
        snapshot.batch_key(PARTITION, VENDORS[0]),
        snapshot.mark_key(PARTITION),
    }


def test_full_blocks_are_not_rewritten() -> None:
    agent = Agent(AGENTS[2])
    state = PartitionState(batch_size=1_000)
    writer = snapshot.SnapshotWriter(PARTITION)
    with block(4):
        state.apply([agent.pay(VENDORS[0], 1) for _ in range(9)], now_ms=1)
        first, _ = writer.capture(state, 1, agents={agent.public}, vendors=())
        state.apply([agent.pay(VENDORS[0], 1)], now_ms=2)
        second, _ = writer.capture(state, 2, agents={agent.public}, vendors=())
    assert [k[:-1] for k, _ in first] == [
        snapshot.block_key(agent.public, 0),
        snapshot.block_key(agent.public, 1),
        snapshot.block_key(agent.public, 2),
        snapshot.head_key(agent.public),
    ]
    # 10 intents: blocks 0 and 1 are full and unchanged; only block 2 and the head.
    assert [k[:-1] for k, _ in second] == [
        snapshot.block_key(agent.public, 2),
        snapshot.head_key(agent.public),
    ]
