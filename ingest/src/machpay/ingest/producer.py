"""The receiver's Kafka producer: acks=all, bounded in flight, never buffering without end.

A request hands its encoded records to :meth:`IngestProducer.produce`, which
answers only once the broker acknowledged every one of them (acks=all, the
idempotent producer from :func:`machpay.kafka.clients.producer_kwargs`), so
the HTTP answer that follows means durable.

Backpressure, checked before anything is sent:

* records and bytes handed to the producer and not yet acknowledged are
  counted; a request that would push either above its bound is refused with
  :class:`OverloadedError` (the app answers 429 + Retry-After) and nothing of it is
  sent. The counts fall when the broker answers, not when a request gives up
  waiting, so a slow broker keeps new work out;
* while the producer is not connected (Kafka unreachable at start) every
  request is refused with :class:`KafkaUnavailableError` (503 + Retry-After) and nothing
  is sent; a background task keeps trying to connect;
* a produce not acknowledged within ``produce_timeout_seconds`` raises
  :class:`KafkaUnavailableError`. Some of its records may have landed: the client
  retries the batch, and intent ids (content hashes) make the duplicates
  harmless downstream (at-least-once, idempotent effects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from machpay.config import Settings
from machpay.kafka.clients import producer_kwargs

log = logging.getLogger(__name__)

CONNECT_RETRY_SECONDS = 0.5


class OverloadedError(Exception):
    """Admitting this request would exceed an in-flight bound; nothing was sent."""


class KafkaUnavailableError(Exception):
    """Kafka is unreachable or did not acknowledge in time."""


@dataclass(frozen=True, slots=True)
class Send:
    """One record to produce: topic, value and either a partition or a key."""

    topic: str
    value: bytes
    partition: int | None = None
    key: bytes | None = None


class IngestProducer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = settings.ingest
        self.in_flight_records = 0
        self.in_flight_bytes = 0
        self.connected = False
        self.acknowledged_records = 0
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._partitions: dict[str, int] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._connect(), name="ingest-kafka")

    async def _connect(self) -> None:
        from aiokafka import AIOKafkaProducer

        while self._producer is None:
            producer = AIOKafkaProducer(
                **producer_kwargs(
                    self.settings.kafka, role="ingest", linger_ms=self.config.producer_linger_ms
                )
            )
            try:
                await producer.start()
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                log.warning("ingest: Kafka unreachable (%s); retrying", exc)
                await asyncio.sleep(CONNECT_RETRY_SECONDS)
                continue
            self._producer = producer
            self.connected = True
            log.info("ingest: connected to Kafka at %s", self.settings.kafka.bootstrap_servers)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        producer, self._producer = self._producer, None
        self.connected = False
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    # -- producing ----------------------------------------------------------------------------

    async def partitions(self, topic: str) -> int:
        """Partition count of ``topic`` (cached; metadata fetched once)."""
        count = self._partitions.get(topic)
        if count is None:
            if self._producer is None:
                raise KafkaUnavailableError("not connected to Kafka")
            try:
                found = await asyncio.wait_for(
                    self._producer.partitions_for(topic), self.config.produce_timeout_seconds
                )
            except Exception as exc:
                raise KafkaUnavailableError(f"no metadata for topic {topic}: {exc!r}") from exc
            if not found:
                raise KafkaUnavailableError(f"topic {topic} does not exist")
            count = self._partitions[topic] = len(found)
        return count

    def check_admission(self, records: int, nbytes: int) -> None:
        """Raise OverloadedError/KafkaUnavailableError if this request may not be sent now."""
        if self._producer is None:
            raise KafkaUnavailableError("not connected to Kafka")
        busy = self.in_flight_records > 0
        if busy and self.in_flight_records + records > self.config.max_in_flight_records:
            raise OverloadedError(
                f"{self.in_flight_records} records awaiting acknowledgement; the bound is "
                f"ingest.max_in_flight_records = {self.config.max_in_flight_records}"
            )
        if busy and self.in_flight_bytes + nbytes > self.config.max_in_flight_bytes:
            raise OverloadedError(
                f"{self.in_flight_bytes} bytes awaiting acknowledgement; the bound is "
                f"ingest.max_in_flight_bytes = {self.config.max_in_flight_bytes}"
            )

    async def produce(self, sends: list[Send], *, records: int) -> None:
        """Send everything and wait for acks=all; ``records`` counts intents/logs inside."""
        if not sends:
            return
        nbytes = sum(len(s.value) for s in sends)
        self.check_admission(records, nbytes)
        producer = self._producer
        self.in_flight_records += records
        self.in_flight_bytes += nbytes
        futures: list[asyncio.Future[Any]] = []

        def release(settled: asyncio.Future[Any] | None = None) -> None:
            self.in_flight_records -= records
            self.in_flight_bytes -= nbytes
            if settled is not None and not settled.cancelled():
                settled.exception()  # retrieved: reported to the request, if it still waits

        try:
            async with asyncio.timeout(self.config.produce_timeout_seconds):
                for s in sends:
                    futures.append(
                        await producer.send(s.topic, s.value, key=s.key, partition=s.partition)
                    )
                done = asyncio.gather(*futures)
                # Counts fall when the broker has answered every record, even if this
                # request stopped waiting: a slow broker keeps new work out.
                done.add_done_callback(release)
                await asyncio.shield(done)
        except TimeoutError:
            if len(futures) < len(sends):
                self._release_later(futures, release)
            raise KafkaUnavailableError(
                f"Kafka did not acknowledge within ingest.produce_timeout_seconds = "
                f"{self.config.produce_timeout_seconds}"
            ) from None
        except Exception as exc:
            if len(futures) < len(sends):
                self._release_later(futures, release)
            raise KafkaUnavailableError(f"producing failed: {exc!r}") from exc
        self.acknowledged_records += records

    @staticmethod
    def _release_later(
        futures: list[asyncio.Future[Any]], release: Callable[[asyncio.Future[Any] | None], None]
    ) -> None:
        """Not every record was handed over: release once those that were are settled."""
        if not futures:
            release(None)
            return
        settled = asyncio.gather(*futures, return_exceptions=True)
        settled.add_done_callback(release)
