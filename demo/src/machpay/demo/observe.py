"""Everything the demo's services publish, read back as it happens.

One group-less consumer of every topic the report speaks of runs in a
background thread; the demo waits on what it has seen ("every batch
confirmed", "the cheat is banned") and the report is built from it. It reads
what any operator could read from the cluster, nothing from inside a service.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from machpay import topics
from machpay.config import Settings
from machpay.topics import Topic

WATCHED: tuple[Topic, ...] = (
    topics.INTENTS_ACCEPTED,
    topics.INTENTS_REJECTED,
    topics.FRAUD_PROOFS,
    topics.AGENTS_STATUS,
    topics.BATCHES_READY,
    topics.SETTLEMENTS,
    topics.CHAIN_EVENTS,
)


class TopicObserver:
    """Decoded values of :data:`WATCHED` topics, per topic in arrival order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._values: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo-observer", daemon=True)

    def start(self) -> TopicObserver:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the topic observer could not connect to Kafka in 30s")
        self._raise()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def values(self, topic: Topic) -> list[dict[str, Any]]:
        self._raise()
        with self._lock:
            return list(self._values[topic.name])

    def count(self, topic: Topic, predicate: Callable[[dict[str, Any]], bool] | None = None) -> int:
        values = self.values(topic)
        return len(values) if predicate is None else sum(1 for v in values if predicate(v))

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"topic observer failed: {self._error}") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from machpay.kafka.admin import alist_topics
        from machpay.kafka.clients import consumer_kwargs, topic_name
        from machpay.wire import WireCodec

        kafka = self.settings.kafka
        codec = WireCodec.from_settings(
            self.settings.schema_registry, topic_prefix=kafka.topic_prefix
        )
        by_name = {topic_name(t, kafka): t for t in WATCHED}
        consumer = AIOKafkaConsumer(**consumer_kwargs(kafka, group_id=None, role="demo-observer"))
        await consumer.start()
        try:
            counts = await alist_topics(kafka)
            parts = [TopicPartition(n, p) for n in by_name for p in range(counts.get(n, 0))]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            self._ready.set()
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                decoded: list[tuple[str, dict[str, Any]]] = []
                for tp, messages in batches.items():
                    topic = by_name[tp.topic]
                    for msg in messages:
                        if msg.value is None:
                            continue
                        value = codec.decode(
                            msg.value, topic=topic, partition=tp.partition, offset=msg.offset
                        )
                        decoded.append((topic.name, value))
                if decoded:
                    with self._lock:
                        for name, value in decoded:
                            self._values[name].append(value)
        finally:
            await consumer.stop()
