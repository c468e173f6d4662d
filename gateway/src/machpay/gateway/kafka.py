"""The gateway's Kafka side, always off the response path.

* :class:`IntentEmitter` drains accepted intents (already spooled) to
  ``intents.accepted``: every few ms it takes what is queued, packs it into
  one ``IntentBatch`` record per partition (the agent's partition, so
  per-agent order holds) and produces with acks=all; once every record of a
  round is acknowledged it acknowledges the spool up to the round's last
  position. If Kafka is away the queue (and the spool) grows and the same
  round is retried, in order, until Kafka returns. Refusals go to
  ``intents.rejected`` one record each, best effort: a bounded queue, and a
  counted drop when it is full.
* :class:`StatusFeed` keeps the local cache of the compacted ``agents.status``
  topic: a group-less consumer of every partition from the beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from machpay import topics
from machpay.config import Settings
from machpay.gateway.ledger import AgentStatus, ExposureBook
from machpay.gateway.spool import Position, Spool
from machpay.kafka.admin import alist_topics
from machpay.kafka.clients import consumer_kwargs, producer_kwargs, topic_name
from machpay.kafka.packing import pack_by_partition
from machpay.wire import WireCodec
from machpay.wire.intents import AcceptedIntent, intent_batch

log = logging.getLogger(__name__)

MAX_INTENTS_PER_ROUND = 5_000
MAX_REJECTED_QUEUED = 10_000
RETRY_SECONDS = 0.5


class IntentEmitter:
    def __init__(
        self,
        settings: Settings,
        codec: WireCodec,
        spool: Spool,
        *,
        producer_id: str,
        linger_ms: int,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.spool = spool
        self.producer_id = producer_id
        self.linger = linger_ms / 1000
        self.accepted_topic = topic_name(topics.INTENTS_ACCEPTED, settings.kafka)
        self.rejected_topic = topic_name(topics.INTENTS_REJECTED, settings.kafka)
        self.queue: deque[tuple[AcceptedIntent, Position | None]] = deque()
        self.rejected: deque[dict[str, Any]] = deque()
        self.rejected_dropped = 0
        self.produced_intents = 0
        self.produced_records = 0
        self.connected = False
        self.connect_failures = 0  # consecutive; 0 also while the first attempt runs
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._producer: Any = None

    # -- the request path only calls these (no await) -----------------------------

    def enqueue(self, intent: AcceptedIntent, position: Position | None) -> None:
        self.queue.append((intent, position))
        self._wake.set()

    def reject(self, record: dict[str, Any]) -> None:
        if len(self.rejected) >= MAX_REJECTED_QUEUED:
            self.rejected_dropped += 1
            return
        self.rejected.append(record)
        self._wake.set()

    # -- background ---------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="intent-emitter")

    async def stop(self, *, drain_seconds: float = 5.0) -> None:
        """Try to drain what is queued for a while, then stop (the spool keeps the rest)."""
        deadline = time.monotonic() + drain_seconds
        while (
            (self.queue or self.rejected)
            and (self.connected or self.connect_failures == 0)
            and time.monotonic() < deadline
        ):
            self._wake.set()
            await asyncio.sleep(0.01)
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close_producer()

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        self.connected = False
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _connect(self) -> Any:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            **producer_kwargs(self.settings.kafka, role="gateway", linger_ms=2)
        )
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer

    async def _run(self) -> None:
        while not self._stopping:
            if self._producer is None:  # connect eagerly: readiness reports it
                try:
                    self._producer = await self._connect()
                    self.connected = True
                    self.connect_failures = 0
                    log.info("gateway: connected to Kafka; %d intents queued", len(self.queue))
                except Exception as exc:
                    self.connect_failures += 1
                    log.warning("gateway: Kafka unreachable (%s); spooling", exc)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
            if not (self.queue or self.rejected):
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.linger:
                await asyncio.sleep(self.linger)
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("gateway: producing failed (%s); will retry in order", exc)
                await self._close_producer()
                await asyncio.sleep(RETRY_SECONDS)

    async def _round(self) -> None:
        producer = self._producer
        taken = [self.queue[i] for i in range(min(len(self.queue), MAX_INTENTS_PER_ROUND))]
        rejected = [self.rejected[i] for i in range(min(len(self.rejected), 1_000))]
        sends = []
        if taken:
            partitions = len(await producer.partitions_for(self.accepted_topic))
            now = int(time.time() * 1000)
            grouped = pack_by_partition([item[0] for item in taken], partitions)
            for partition, chunks in grouped.items():
                for chunk in chunks:
                    value = self.codec.encode(
                        topics.INTENTS_ACCEPTED,
                        intent_batch(chunk, producer=self.producer_id, now_ms=now),
                    )
                    sends.append(
                        await producer.send(self.accepted_topic, value, partition=partition)
                    )
        for record in rejected:
            value = self.codec.encode(topics.INTENTS_REJECTED, record)
            sends.append(await producer.send(self.rejected_topic, value, key=record["agent"]))
        await asyncio.gather(*sends)  # acks=all: every record is on the in-sync replicas
        for _ in taken:
            self.queue.popleft()
        for _ in rejected:
            self.rejected.popleft()
        self.produced_intents += len(taken)
        self.produced_records += len(sends) - len(rejected)
        last = next((pos for _, pos in reversed(taken) if pos is not None), None)
        if last is not None:
            self.spool.ack(last)


class StatusFeed:
    """Follows ``agents.status`` from the beginning into an :class:`ExposureBook`."""

    def __init__(
        self,
        settings: Settings,
        codec: WireCodec,
        book: ExposureBook,
        *,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.book = book
        self.topic = topic_name(topics.AGENTS_STATUS, settings.kafka)
        self.caught_up = False
        self.records = 0
        self.undecodable = 0
        self._task: asyncio.Task[None] | None = None
        self._on_error = on_error

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="status-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("gateway: agents.status feed interrupted (%s); retrying", exc)
                await asyncio.sleep(RETRY_SECONDS * 2)

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            **consumer_kwargs(self.settings.kafka, group_id=None, role="gateway-status")
        )
        await consumer.start()
        try:
            count = (await alist_topics(self.settings.kafka)).get(self.topic, 0)
            if not count:
                raise RuntimeError(
                    f"topic {self.topic} does not exist (run `machpay kafka topics`)"
                )
            assigned = [TopicPartition(self.topic, p) for p in range(count)]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            ends = await consumer.end_offsets(assigned)
            self.caught_up = all(offset == 0 for offset in ends.values())
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
                for tp, messages in batches.items():
                    for msg in messages:
                        self._apply(msg.value, tp.partition, msg.offset)
                if not self.caught_up:
                    positions = [await consumer.position(tp) for tp in ends]
                    self.caught_up = all(
                        pos >= end for pos, end in zip(positions, ends.values(), strict=True)
                    )
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def _apply(self, value: bytes | None, partition: int, offset: int) -> None:
        if value is None:  # a tombstone: nothing to cache
            return
        self.records += 1
        try:
            record = self.codec.decode(
                value, topic=topics.AGENTS_STATUS, partition=partition, offset=offset
            )
            self.book.update(AgentStatus.from_record(record))
        except Exception as exc:
            self.undecodable += 1
            log.warning(
                "gateway: undecodable agents.status record %d/%d: %s", partition, offset, exc
            )
