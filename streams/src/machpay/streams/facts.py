"""Chain facts and settlements, read whole by every worker into a :class:`Ledger`.

``chain.events`` is keyed by account and ``settlements`` by vendor, so the
facts about the agents a worker owns are spread over every partition of
both topics. Each worker therefore reads both topics from the beginning
without a consumer group. Facts are few next to intents, the Ledger
recognises a repeated fact by its identity (kind, account, signature or
batch, channel), and nothing but statuses depends on when a fact arrives, so
this reader needs no commits and no snapshot.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from machpay import topics
from machpay.config import Settings
from machpay.kafka.clients import consumer_kwargs, topic_name
from machpay.streams.state import Ledger
from machpay.wire import WireCodec
from machpay.wire.codec import WireDecodeError

log = logging.getLogger("machpay.streams.facts")


class FactsReader:
    """Follows ``chain.events`` and ``settlements`` from their start into ``ledger``."""

    def __init__(self, settings: Settings, codec: WireCodec, ledger: Ledger) -> None:
        kafka = settings.kafka
        self.settings = settings
        self.codec = codec
        self.ledger = ledger
        self.t_chain = topic_name(topics.CHAIN_EVENTS, kafka)
        self.t_settlements = topic_name(topics.SETTLEMENTS, kafka)
        self._consumer: AIOKafkaConsumer | None = None
        self.facts = 0

    async def start(self, partitions: dict[str, int]) -> None:
        role = f"streams-{self.settings.streams.worker_id}-facts"
        self._consumer = AIOKafkaConsumer(
            **consumer_kwargs(self.settings.kafka, group_id=None, role=role)
        )
        await self._consumer.start()
        tps = [
            TopicPartition(t, p)
            for t in (self.t_chain, self.t_settlements)
            for p in range(partitions[t])
        ]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self, timeout_ms: int) -> set[bytes]:
        """Apply what arrived; the agents whose status may have changed."""
        assert self._consumer is not None
        got = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=5_000)
        touched: set[bytes] = set()
        for tp, recs in got.items():
            for rec in recs:
                touched |= self._apply(tp, rec)
        return touched

    def _apply(self, tp: TopicPartition, rec: Any) -> set[bytes]:
        try:
            value = self.codec.decode(
                rec.value, topic=tp.topic, partition=tp.partition, offset=rec.offset
            )
        except WireDecodeError as exc:
            log.warning("skipping undecodable fact: %s", exc)
            return set()
        self.facts += 1
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
