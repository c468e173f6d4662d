"""Compact per-key snapshots of a :class:`~machpay.streams.state.PartitionState`.

The Faust app keeps each partition's state in memory and writes what changed
in a chunk to its state table, once per chunk per key, never once per intent.
A worker given the partition rebuilds the state from these keys (recovered by
Faust from the table's changelog) plus the tail of ``intents.accepted`` after
the offset the snapshot covers. Everything here is pure (bytes in, bytes out)
so the round trip is tested without Kafka.

Keys (every key of partition ``p`` is written to changelog partition ``p``,
co-partitioned with ``intents.accepted``):

* ``b"H" + agent``: the agent's head: how many intents it has, its ban reason,
  proof ids and the ids of its equivocating second messages ("twins");
* ``b"E" + agent + block``: the agent's intents in arrival order, ``BLOCK``
  per key. A full block never changes again, so a chunk rewrites only the
  agent's last block(s) and a value never grows past ``BLOCK`` intents;
* ``b"B" + partition + vendor``: an open vendor batch (a value without a body
  once it closes);
* ``b"M" + partition``: the mark: the first offset of the partition *not*
  covered by the snapshot, and the vendors of the open batches in opening
  order. Written last in every chunk, after every other key of that chunk is
  acknowledged.

Every value starts with the offset it covers, and every key but the mark
has two *slots* (a last byte 0 or 1) that its writes alternate between, so
the previous value of a key survives while the next one is written. A chunk's
keys are acknowledged before its mark is sent and marks land in chunk order,
so at most one chunk's values cover more than the mark (a crash between its
keys and its mark, or inside its keys): :func:`restore` takes, per key, the
newest slot the mark covers, which is the key's value as of the mark, and the
writer then overwrites the slot it did not take. A kill -9 at any point
therefore costs the next owner the records after the mark, never a replay
from the start.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice

from machpay.protocol import MESSAGE_LEN, SignedIntent
from machpay.streams.state import AgentState, ChannelLog, OpenBatch, PartitionState

FORMAT = 1
BLOCK = 256
"""Intents per block key (~41 KB per value at most): a smaller block rewrites fewer bytes
per chunk, a larger one writes fewer keys."""

_HEAD, _BLOCK, _BATCH, _MARK = b"H", b"E", b"B", b"M"
_SIG = 64
_ENTRY = MESSAGE_LEN + _SIG + 1  # message, signature, in-channel flag
_COVER = struct.Struct(">BQ")  # format, covered offset
_U32 = struct.Struct(">I")
_BATCH_FIXED = struct.Struct(">QQ")  # opened_at_ms, total

Write = tuple[bytes, bytes | None]
"""One table write: key and value (None deletes the key)."""


class SnapshotError(ValueError):
    """A table value that does not decode; the message names the key."""


class TornSnapshotError(SnapshotError):
    """The values the mark covers do not agree with it (never expected: lost records)."""


def head_key(agent: bytes) -> bytes:
    return _HEAD + agent


def block_key(agent: bytes, block: int) -> bytes:
    return _BLOCK + agent + _U32.pack(block)


def batch_key(partition: int, vendor: bytes) -> bytes:
    return _BATCH + _U32.pack(partition) + vendor


def mark_key(partition: int) -> bytes:
    return _MARK + _U32.pack(partition)


def slotted(base: bytes, slot: int) -> bytes:
    """The table key of one of a base key's two slots."""
    return base + bytes((slot,))


def key_agent(key: bytes) -> bytes | None:
    """The agent a head or block key belongs to (None for batch and mark keys)."""
    if key[:1] in (_HEAD, _BLOCK):
        return key[1:33]
    return None


def key_partition(key: bytes) -> int | None:
    """The partition a batch or mark key names (None for agent keys)."""
    if key[:1] in (_BATCH, _MARK):
        return int(_U32.unpack_from(key, 1)[0])
    return None


# -- encoding ------------------------------------------------------------------


def _ids(ids: Iterable[bytes]) -> bytes:
    items = list(ids)
    return _U32.pack(len(items)) + b"".join(items)


def _read_ids(data: bytes, pos: int, size: int = 32) -> tuple[list[bytes], int]:
    (n,) = _U32.unpack_from(data, pos)
    pos += 4
    end = pos + n * size
    if end > len(data):
        raise SnapshotError(f"{n} ids of {size} bytes overrun the value")
    return [data[i : i + size] for i in range(pos, end, size)], end


def _covered(data: bytes, key: bytes) -> tuple[int, int]:
    if len(data) < _COVER.size:
        raise SnapshotError(f"table value of {key.hex()} is {len(data)} bytes")
    fmt, covered = _COVER.unpack_from(data)
    if fmt != FORMAT:
        raise SnapshotError(f"table value of {key.hex()} has format {fmt}, expected {FORMAT}")
    return covered, _COVER.size


def encode_head(state: AgentState, covered: int) -> bytes:
    reason = (state.ban_reason or "").encode()
    return b"".join(
        (
            _COVER.pack(FORMAT, covered),
            _U32.pack(len(state.nonces)),
            _U32.pack(len(reason)),
            reason,
            _ids(sorted(state.proof_ids)),
            _ids(sorted(state.twins)),
        )
    )


def _in_channel(state: AgentState, signed: SignedIntent) -> bool:
    log = state.channels.get(signed.intent.channel)
    if log is None:
        return False
    if log.intents[-1] is signed:  # in-order traffic: the newest intent is the last
        return True
    i = bisect.bisect_left(log.nonces, signed.intent.nonce)
    return i < len(log.nonces) and log.intents[i] is signed


def encode_batch(batch: OpenBatch, covered: int) -> bytes:
    pairs = b"".join(channel + agent for channel, agent in batch.channels.items())
    return b"".join(
        (
            _COVER.pack(FORMAT, covered),
            _BATCH_FIXED.pack(batch.opened_at_ms, batch.total),
            _ids(batch.ids),
            _U32.pack(len(batch.channels)),
            pairs,
            _ids(sorted(batch.agents)),
        )
    )


def encode_mark(covered: int, open_vendors: Iterable[bytes] = ()) -> bytes:
    return _COVER.pack(FORMAT, covered) + _ids(open_vendors)


# -- what a chunk writes -----------------------------------------------------------


@dataclass
class SnapshotWriter:
    """The keys one chunk changed in a partition, mark last.

    Intents are encoded once, when first written: an agent's entries are
    append-only (arrival order) and an entry never changes, so the writer
    keeps the encoded entries of each agent's last, not yet full block and
    appends to it; full blocks are never written again.
    """

    partition: int
    written: dict[bytes, int] = field(default_factory=dict)
    """agent -> intents already encoded (as of the last capture)."""
    partial: dict[bytes, bytearray] = field(default_factory=dict)
    """agent -> encoded entries of its last block, if that block is not full."""
    slots: dict[bytes, int] = field(default_factory=dict)
    """base key -> the slot holding its latest write (the next write takes the other)."""

    def _write(self, base: bytes, value: bytes) -> Write:
        slot = self.slots.get(base, 1) ^ 1
        self.slots[base] = slot
        return slotted(base, slot), value

    def capture(
        self,
        state: PartitionState,
        covered: int,
        *,
        agents: Iterable[bytes],
        vendors: Iterable[bytes],
    ) -> tuple[list[Write], Write]:
        """(the chunk's writes, then the mark to send once they are acknowledged)."""
        writes: list[Write] = []
        cover = _COVER.pack(FORMAT, covered)
        for agent in agents:
            st = state.agents.get(agent)
            if st is None:
                continue
            before = self.written.get(agent, 0)
            count = len(st.nonces)
            if count > before:
                buf = self.partial.pop(agent, None) or bytearray()
                block = before // BLOCK
                channels = st.channels
                for i, signed in enumerate(islice(st.nonces.values(), before, None), before):
                    if i // BLOCK != block:  # the previous block is full: written for the last time
                        writes.append(self._write(block_key(agent, block), cover + buf))
                        buf, block = bytearray(), i // BLOCK
                    # message, signature, in-consistent-set flag (once per intent: inlined)
                    log = channels.get(signed.intent.channel)
                    buf += signed.message
                    buf += signed.signature
                    if log is not None and log.intents[-1] is signed:
                        buf.append(1)
                    else:
                        buf.append(1 if _in_channel(st, signed) else 0)
                writes.append(self._write(block_key(agent, block), cover + buf))
                if count % BLOCK:
                    self.partial[agent] = buf
                self.written[agent] = count
            writes.append(self._write(head_key(agent), encode_head(st, covered)))
        for vendor in vendors:
            batch = state.open.get(vendor)
            # A closed batch is a value without a body (not a tombstone: the
            # other slot must stop counting too).
            value = cover if batch is None else encode_batch(batch, covered)
            writes.append(self._write(batch_key(self.partition, vendor), value))
        return writes, (mark_key(self.partition), encode_mark(covered, state.open))


# -- restoring ---------------------------------------------------------------------


@dataclass
class Restored:
    state: PartitionState
    covered: int
    """The first offset of the partition not in ``state``."""
    writer: SnapshotWriter


def partition_keys(
    items: Iterable[tuple[bytes, bytes]], partition: int, owner_of: Callable[[bytes], int]
) -> Iterator[tuple[bytes, bytes]]:
    """The table entries that belong to ``partition`` (agents through ``owner_of``)."""
    for key, value in items:
        agent = key_agent(key)
        if agent is not None:
            if owner_of(agent) == partition:
                yield key, value
        elif key_partition(key) == partition:
            yield key, value


def resolve(
    partition: int, entries: Mapping[bytes, bytes]
) -> tuple[int, list[bytes], dict[bytes, bytes], dict[bytes, int]]:
    """(covered, open vendors, base key -> value as of the mark, base key -> slot to keep).

    Without a mark nothing is covered: every value is ignored.
    """
    mark = entries.get(mark_key(partition))
    if mark is None:
        return 0, [], {}, {}
    covered, pos = _covered(mark, mark_key(partition))
    try:
        order, _ = _read_ids(mark, pos)
    except struct.error as exc:
        raise SnapshotError(f"mark of partition {partition} does not decode: {exc}") from exc
    best: dict[bytes, tuple[int, int, bytes]] = {}
    ahead: dict[bytes, int] = {}
    for key, value in entries.items():
        if key[:1] == _MARK:
            continue
        base, slot = key[:-1], key[-1]
        at, _ = _covered(value, key)
        if at > covered:
            ahead[base] = slot  # a chunk whose mark never landed: overwrite it next
        elif base not in best or at > best[base][0]:
            best[base] = (at, slot, value)
    keep = {base: slot ^ 1 for base, slot in ahead.items()}
    keep.update({base: slot for base, (_, slot, _) in best.items()})
    return covered, order, {base: v for base, (_, _, v) in best.items()}, keep


def restore(
    partition: int,
    entries: Mapping[bytes, bytes],
    *,
    batch_size: int,
    verify_signatures: bool,
) -> Restored:
    """Rebuild a partition's state as of its mark from its table entries.

    ``entries`` are the table's keys of this partition (see
    :func:`partition_keys`). Without a mark the snapshot is empty (covered 0).
    Raises :class:`TornSnapshotError` when the values do not agree with the
    mark, :class:`SnapshotError` when a value does not decode.
    """
    state = PartitionState(batch_size=batch_size, verify_signatures=verify_signatures)
    writer = SnapshotWriter(partition)
    covered, order, values, keep = resolve(partition, entries)
    writer.slots = keep
    batches: dict[bytes, OpenBatch] = {}
    for base, value in values.items():
        kind = base[:1]
        if kind == _HEAD:
            agent = base[1:]
            state.agents[agent] = _restore_agent(agent, value, values, _COVER.size)
            count = len(state.agents[agent].nonces)
            writer.written[agent] = count
            if count % BLOCK:
                last = values[block_key(agent, count // BLOCK)]
                writer.partial[agent] = bytearray(
                    last[_COVER.size : _COVER.size + (count % BLOCK) * _ENTRY]
                )
        elif kind == _BATCH and key_partition(base) == partition and len(value) > _COVER.size:
            batches[base[5:]] = _restore_batch(base, value, _COVER.size)
    if set(order) != set(batches):
        raise TornSnapshotError(
            f"partition {partition}: the mark lists {len(order)} open batches, "
            f"the table holds {len(batches)}"
        )
    for vendor in order:  # opening order, as the original state had them
        state.open[vendor] = batches[vendor]
    return Restored(state, covered, writer)


def _restore_agent(
    agent: bytes, head: bytes, entries: Mapping[bytes, bytes], pos: int
) -> AgentState:
    try:
        (count,) = _U32.unpack_from(head, pos)
        (reason_len,) = _U32.unpack_from(head, pos + 4)
        pos += 8
        reason = head[pos : pos + reason_len].decode()
        pos += reason_len
        proof_ids, pos = _read_ids(head, pos)
        twins, pos = _read_ids(head, pos)
    except (struct.error, UnicodeDecodeError) as exc:
        raise SnapshotError(f"head of agent {agent.hex()} does not decode: {exc}") from exc
    st = AgentState()
    st.ban_reason = reason or None
    st.proof_ids = set(proof_ids)
    st.twins = set(twins)
    in_channel: dict[bytes, list[SignedIntent]] = {}
    for block in range((count + BLOCK - 1) // BLOCK):
        key = block_key(agent, block)
        data = entries.get(key)
        if data is None:
            raise SnapshotError(f"agent {agent.hex()} has {count} intents but no block {block}")
        want = min(BLOCK, count - block * BLOCK)
        if len(data) < _COVER.size + want * _ENTRY:
            raise SnapshotError(f"block {block} of agent {agent.hex()} holds < {want} intents")
        for i in range(want):
            at = _COVER.size + i * _ENTRY
            signed = SignedIntent(
                data[at : at + MESSAGE_LEN], data[at + MESSAGE_LEN : at + MESSAGE_LEN + _SIG], agent
            )
            st.nonces[signed.intent.nonce] = signed
            if data[at + _ENTRY - 1]:
                in_channel.setdefault(signed.intent.channel, []).append(signed)
    for channel, intents in in_channel.items():
        intents.sort(key=lambda s: s.intent.nonce)
        log = ChannelLog()
        log.nonces = [s.intent.nonce for s in intents]
        log.cums = [s.intent.cumulative for s in intents]
        log.intents = intents
        log.latest = intents[-1]  # a consistent set: cumulative rises with the nonce
        st.channels[channel] = log
    return st


def _restore_batch(key: bytes, value: bytes, pos: int) -> OpenBatch:
    try:
        opened_at_ms, total = _BATCH_FIXED.unpack_from(value, pos)
        pos += _BATCH_FIXED.size
        ids, pos = _read_ids(value, pos)
        pairs, pos = _read_ids(value, pos, 64)
        agents, pos = _read_ids(value, pos)
    except struct.error as exc:
        raise SnapshotError(f"open batch {key.hex()} does not decode: {exc}") from exc
    batch = OpenBatch(opened_at_ms)
    batch.ids = ids
    batch.total = total
    batch.channels = {p[:32]: p[32:] for p in pairs}
    batch.agents = set(agents)
    return batch
