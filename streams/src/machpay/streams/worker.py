"""`machpay streams worker`: the processing core on a plain aiokafka consume-check-produce loop.

One loop per worker process:

1. ``getmany`` a chunk of ``intents.accepted`` records (each carrying many
   intents) for the partitions this worker owns in the consumer group;
2. the first time a partition shows up after an assignment, rebuild its
   in-memory state by replaying the partition from its start up to the
   first offset fetched (the group's committed offset), with every output
   suppressed: those outputs were produced and acknowledged before that
   offset was committed;
3. apply the chunk to :class:`~machpay.streams.state.PartitionState`, produce
   proofs, statuses, batches and dead letters, wait for every acknowledgement
   (acks=all), and only then commit the offsets (at least once);
4. when an open batch grows old, or holds an agent whose withdrawal is
   pending, write a *flush marker* (an empty IntentBatch) into that partition:
   batches are cut where the marker sits in the log, so any replay cuts them
   at the same places and re-emits the same batch ids.

``chain.events`` and ``settlements`` are read whole by every worker (no
group) into a :class:`~machpay.streams.state.Ledger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from machpay import topics
from machpay.config import Settings
from machpay.kafka.admin import alist_topics
from machpay.kafka.clients import consumer_kwargs, partition_for_key, producer_kwargs, topic_name
from machpay.protocol import ProtocolError
from machpay.streams import records
from machpay.streams.state import (
    ChunkResult,
    CloseReason,
    Ledger,
    PartitionState,
    StatusBook,
)
from machpay.wire import WireCodec
from machpay.wire.codec import WireDecodeError
from machpay.wire.intents import AcceptedIntent

log = logging.getLogger("machpay.streams")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Counters:
    records: int = 0
    intents: int = 0
    duplicates: int = 0
    rejected: int = 0
    proofs: int = 0
    batches: int = 0
    statuses: int = 0
    rebuilt_records: int = 0


@dataclass
class _Owned:
    state: PartitionState
    marker_sent_at: float | None = None
    opened_wall: float | None = None
    next_offset: int = 0
    """The first offset of the partition not yet applied to ``state``."""


@dataclass
class _Outbox:
    sends: list[Awaitable[Any]] = field(default_factory=list)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: StreamsWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self.worker.owned.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        return None  # the loop rebuilds each new partition's state before applying its records


class StreamsWorker:
    """One stream worker; several share the partitions through the consumer group."""

    def __init__(self, settings: Settings, *, codec: WireCodec | None = None) -> None:
        self.settings = settings
        self.cfg = settings.streams
        kafka = settings.kafka
        self.codec = codec or WireCodec.from_settings(
            settings.schema_registry, topic_prefix=kafka.topic_prefix
        )
        self.source = topic_name(topics.INTENTS_ACCEPTED, kafka)
        self.t_proofs = topic_name(topics.FRAUD_PROOFS, kafka)
        self.t_status = topic_name(topics.AGENTS_STATUS, kafka)
        self.t_batches = topic_name(topics.BATCHES_READY, kafka)
        self.t_rejected = topic_name(topics.INTENTS_REJECTED, kafka)
        self.t_chain = topic_name(topics.CHAIN_EVENTS, kafka)
        self.t_settlements = topic_name(topics.SETTLEMENTS, kafka)
        self.owned: dict[int, _Owned] = {}
        self.ledger = Ledger()
        self.book = StatusBook()
        self.counters = Counters()
        self.partitions = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._facts: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._partition_of: dict[bytes, int] = {}
        self._inflight: tuple[asyncio.Future[Any] | None, dict[Any, int]] = (None, {})

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        kafka = self.settings.kafka
        role = f"streams-{self.cfg.worker_id}"
        self._producer = AIOKafkaProducer(
            **producer_kwargs(
                kafka,
                role=role,
                linger_ms=self.cfg.producer_linger_ms,
                max_batch_size=self.cfg.producer_max_batch_bytes,
                max_request_size=4 << 20,
            )
        )
        await self._producer.start()
        self._facts = AIOKafkaConsumer(**consumer_kwargs(kafka, group_id=None, role=role))
        await self._facts.start()
        counts = await alist_topics(kafka)
        missing = [t for t in (self.source, self.t_chain, self.t_settlements) if t not in counts]
        if missing:
            raise RuntimeError(f"topics {missing} do not exist; run `machpay kafka up` first")
        self.partitions = counts[self.source]
        fact_tps = [
            TopicPartition(t, p)
            for t in (self.t_chain, self.t_settlements)
            for p in range(counts[t])
        ]
        self._facts.assign(fact_tps)
        await self._facts.seek_to_beginning(*fact_tps)
        self._consumer = AIOKafkaConsumer(
            **consumer_kwargs(kafka, group_id=self.cfg.group_id, role=role)
        )
        self._consumer.subscribe([self.source], listener=_Listener(self))
        await self._consumer.start()

    async def stop(self) -> None:
        for client in (self._consumer, self._facts, self._producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            while not stop.is_set():
                await self.step()
            await self._settle(self._inflight)
            self._inflight = (None, {})
            await self._shutdown_markers()
        finally:
            await self.stop()

    # -- one iteration ----------------------------------------------------------

    async def step(self) -> None:
        assert self._consumer is not None
        assert self._facts is not None
        outbox = _Outbox()
        facts = await self._facts.getmany(timeout_ms=0, max_records=5_000)
        touched: set[bytes] = set()
        for tp, recs in facts.items():
            for rec in recs:
                touched |= self._apply_fact(tp, rec)
        batch = await self._consumer.getmany(timeout_ms=100, max_records=self.cfg.fetch_max_records)
        commits: dict[TopicPartition, int] = {}
        assignment = self._consumer.assignment()
        for tp in assignment:
            if tp.partition not in self.owned:
                # Eagerly, so batches left open by a dead owner close even when no
                # new intent arrives on this partition.
                committed = await self._consumer.committed(tp)
                await self._take(tp, committed or 0)
        for tp, recs in batch.items():
            if not recs or tp not in assignment:
                continue
            owned = self.owned.get(tp.partition) or await self._take(tp, recs[0].offset)
            if recs[0].offset > owned.next_offset:  # never expected: fill the gap silently
                await self._rebuild(tp, owned, recs[0].offset)
            for rec in recs:
                if rec.offset >= owned.next_offset:
                    touched |= self._apply_record(tp, owned, rec, outbox, live=True)
                    owned.next_offset = rec.offset + 1
            commits[tp] = recs[-1].offset + 1
        self._publish_statuses(touched, outbox)
        # Pipelined: this chunk's outputs are in flight while the previous
        # chunk's offsets are committed (its outputs are all acknowledged).
        previous, self._inflight = (
            self._inflight,
            (
                asyncio.ensure_future(asyncio.gather(*outbox.sends)) if outbox.sends else None,
                commits,
            ),
        )
        await self._settle(previous)
        await self._markers()

    async def _take(self, tp: TopicPartition, until: int) -> _Owned:
        owned = self.owned[tp.partition] = _Owned(
            PartitionState(
                batch_size=self.cfg.batch_max_intents,
                verify_signatures=self.cfg.verify_signatures,
            )
        )
        await self._rebuild(tp, owned, until)
        if owned.state.open:
            owned.opened_wall = time.monotonic()
        return owned

    async def _settle(self, inflight: tuple[asyncio.Future[Any] | None, dict[Any, int]]) -> None:
        """Wait for a chunk's acknowledgements, then commit its offsets."""
        sends, commits = inflight
        if sends is not None:
            await sends
        if commits:
            assert self._consumer is not None
            try:
                await self._consumer.commit(commits)
            except KafkaError as exc:  # rebalance: the new owner redoes it, idempotently
                log.warning("commit of %s failed (%s); records will be redelivered", commits, exc)

    # -- facts ------------------------------------------------------------------

    def _apply_fact(self, tp: TopicPartition, rec: Any) -> set[bytes]:
        try:
            value = self.codec.decode(
                rec.value, topic=tp.topic, partition=tp.partition, offset=rec.offset
            )
        except WireDecodeError as exc:
            log.warning("skipping undecodable fact: %s", exc)
            return set()
        if tp.topic == self.t_chain:
            agent = self.ledger.chain_event(
                value["kind"],
                value["agent"],
                value["amount"],
                signature=value["signature"],
                account=value["account"],
                unlock_at=value["unlock_at"],
            )
            return {agent} if agent is not None else set()
        return self.ledger.settlement(
            value["batch_id"],
            value["status"],
            [
                (c["channel"], c["agent"], c["settled_cumulative"], c["paid"])
                for c in value["channels"]
            ],
        )

    # -- intents ----------------------------------------------------------------

    async def _rebuild(self, tp: TopicPartition, owned: _Owned, until: int) -> None:
        """Replay ``tp`` from ``owned.next_offset`` up to ``until``, outputs suppressed."""
        if until <= owned.next_offset:
            return
        reader = AIOKafkaConsumer(**consumer_kwargs(self.settings.kafka, group_id=None))
        await reader.start()
        try:
            reader.assign([tp])
            if owned.next_offset == 0:
                await reader.seek_to_beginning(tp)
            else:
                reader.seek(tp, owned.next_offset)
            position = await reader.position(tp)
            end = (await reader.end_offsets([tp]))[tp]
            until = min(until, end)
            while position < until:
                got = await reader.getmany(tp, timeout_ms=1_000, max_records=1_000)
                for rec in got.get(tp, []):
                    if rec.offset >= until:
                        position = until
                        break
                    self._apply_record(tp, owned, rec, _Outbox(), live=False)
                    self.counters.rebuilt_records += 1
                    position = rec.offset + 1
        finally:
            await reader.stop()
        owned.next_offset = until
        log.info("rebuilt partition %d from %d records", tp.partition, until)

    def _owner_partition(self, agent: bytes) -> int:
        p = self._partition_of.get(agent)
        if p is None:
            p = self._partition_of[agent] = partition_for_key(agent, self.partitions)
        return p

    def _apply_record(
        self, tp: TopicPartition, owned: _Owned, rec: Any, outbox: _Outbox, *, live: bool
    ) -> set[bytes]:
        now = now_ms()
        where = {"topic": tp.topic, "partition": tp.partition, "offset": rec.offset}
        if live:
            self.counters.records += 1
        try:
            value = self.codec.decode(
                rec.value, topic=tp.topic, partition=tp.partition, offset=rec.offset
            )
        except WireDecodeError as exc:
            if live:
                self._send(
                    outbox, self.t_rejected, None, exc.dead_letter(source=records.SOURCE, at_ms=now)
                )
                self.counters.rejected += 1
            return set()
        state = owned.state
        if not value["intents"]:
            producer = value["producer"]
            if producer.startswith(records.FLUSH_PREFIX):
                reason, agents = records.parse_flush(producer)
                result = ChunkResult(batches=state.flush(reason, now, agents=agents))
                owned.marker_sent_at = None
                owned.opened_wall = time.monotonic() if state.open else None
                if live:
                    self._emit(result, tp, rec.offset, outbox, now)
            return set()
        intents: list[AcceptedIntent] = []
        partition_of = self._partition_of
        for item in value["intents"]:
            try:
                accepted = AcceptedIntent.from_record(item)
            except ProtocolError as exc:
                if live:
                    self._send(
                        outbox,
                        self.t_rejected,
                        item.get("agent"),
                        records.rejected_raw(
                            item,
                            reason=exc.reason.value,
                            detail=str(exc),
                            field=exc.field,
                            now_ms=now,
                            **where,
                        ),
                    )
                    self.counters.rejected += 1
                continue
            owner = partition_of.get(accepted.signed.agent)
            if owner is None:
                owner = self._owner_partition(accepted.signed.agent)
            if owner != tp.partition:
                if live:
                    self._send(
                        outbox,
                        self.t_rejected,
                        accepted.agent,
                        records.rejected_raw(
                            item,
                            reason="wrong_partition",
                            detail=f"agent belongs to partition {owner}",
                            field="agent",
                            now_ms=now,
                            **where,
                        ),
                    )
                    self.counters.rejected += 1
                continue
            intents.append(accepted)
        result = state.apply(intents, now)
        if state.open and owned.opened_wall is None:
            owned.opened_wall = time.monotonic()
        if live:
            self.counters.intents += len(intents)
            self.counters.duplicates += result.duplicates
            self._emit(result, tp, rec.offset, outbox, now)
            return result.touched
        return set()

    def _emit(
        self, result: ChunkResult, tp: TopicPartition, offset: int, outbox: _Outbox, now: int
    ) -> None:
        for proof in result.proofs:
            self._send(
                outbox,
                self.t_proofs,
                proof.agent,
                records.fraud_proof(proof, detected_by=self.cfg.worker_id, now_ms=now),
            )
        for closed in result.batches:
            self._send(outbox, self.t_batches, closed.vendor, records.batch(closed))
        for rejection in result.rejected:
            self._send(
                outbox,
                self.t_rejected,
                rejection.intent.agent,
                records.rejected(
                    rejection, topic=tp.topic, partition=tp.partition, offset=offset, now_ms=now
                ),
            )
        self.counters.proofs += len(result.proofs)
        self.counters.batches += len(result.batches)
        self.counters.rejected += len(result.rejected)

    def _publish_statuses(self, agents: set[bytes], outbox: _Outbox) -> None:
        now = now_ms()
        for agent in agents:
            owned = self.owned.get(self._owner_partition(agent))
            if owned is None:
                continue  # another worker owns this agent
            snap = self.ledger.snapshot(agent, owned.state.agents.get(agent))
            version = self.book.update(agent, snap, now)
            if version is not None:
                self._send(
                    outbox,
                    self.t_status,
                    agent,
                    records.agent_status(agent, snap, version=version, now_ms=now),
                )
                self.counters.statuses += 1

    def _send(self, outbox: _Outbox, topic: str, key: bytes | None, value: dict[str, Any]) -> None:
        assert self._producer is not None
        data = self.codec.encode(topic, value)
        outbox.sends.append(self._send_one(topic, key, data))

    async def _send_one(self, topic: str, key: bytes | None, data: bytes) -> None:
        assert self._producer is not None
        fut = await self._producer.send(topic, data, key=key)
        await fut

    # -- flush markers ----------------------------------------------------------

    async def _markers(self) -> None:
        assert self._producer is not None
        mono = time.monotonic()
        max_age = self.cfg.batch_max_age_ms / 1000
        pending = self.ledger.pending
        sends: list[Awaitable[Any]] = []
        for partition, owned in list(self.owned.items()):
            if not owned.state.open:
                continue
            if owned.marker_sent_at is not None and mono - owned.marker_sent_at < 2 * max_age:
                continue
            withdrawing = owned.state.open_agents() & pending.keys() if pending else set()
            if withdrawing:
                marker = records.flush_marker(CloseReason.WITHDRAWAL, withdrawing)
            elif owned.opened_wall is not None and mono - owned.opened_wall >= max_age:
                marker = records.flush_marker(CloseReason.AGE)
            else:
                continue
            value = {"producer": marker, "produced_at_ms": now_ms(), "intents": []}
            data = self.codec.encode(self.source, value)
            owned.marker_sent_at = mono
            sends.append(self._send_marker(partition, data))
        if sends:
            await asyncio.gather(*sends)

    async def _shutdown_markers(self) -> None:
        """Ask whoever owns our partitions next to close the batches we leave open."""
        value = {
            "producer": records.flush_marker(CloseReason.SHUTDOWN),
            "produced_at_ms": now_ms(),
            "intents": [],
        }
        data = self.codec.encode(self.source, value)
        open_partitions = [p for p, owned in self.owned.items() if owned.state.open]
        await asyncio.gather(*(self._send_marker(p, data) for p in open_partitions))

    async def _send_marker(self, partition: int, data: bytes) -> None:
        assert self._producer is not None
        fut = await self._producer.send(self.source, data, partition=partition)
        await fut
