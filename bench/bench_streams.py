"""Stream worker throughput against a plain aiokafka consume-check-produce loop, same run.

Both read the same pre-produced ``intents.accepted`` records (1,000 signed
intents per record, as gateways pack them) from a fresh consumer group, on a
local broker (fresh, on free ports, or ``MACHPAY_BENCH_BOOTSTRAP``):

* **worker**: :class:`machpay.streams.worker.StreamsWorker`, the whole path:
  decode, dedupe, equivocation and channel checks, batching with Merkle
  roots, statuses, produce with acks=all, commit;
* **plain loop**: the Python ceiling: decode, the same Ed25519 check, a dict
  dedupe, a last-cumulative check per channel, one Merkle root per 10,000
  intents, one produce per record, commit.

Each is measured with signature re-verification on (every intent verified
again, ~17.7k/s per core) and off (trusting the gateway's verification).
The rate is intents/s between the first and the last processed intent.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.bench_gateway import _kafka
from bench.harness import Figure, median, record
from machpay import topics
from machpay.config import Settings, StreamsSettings
from machpay.kafka.clients import consumer_kwargs, producer_kwargs, topic_name
from machpay.kafka.packing import pack_by_partition
from machpay.protocol import ProtocolError, merkle_root
from machpay.streams.traffic import Agent, keypair, vendor_key
from machpay.streams.worker import StreamsWorker
from machpay.wire import WireCodec
from machpay.wire.intents import AcceptedIntent, intent_batch, unpack

AGENTS = 200
VENDORS = 10
INTENTS = 100_000
RUNS = 3


def traffic() -> list[AcceptedIntent]:
    agents = [Agent(keypair(f"bench-{i}")) for i in range(AGENTS)]
    vendors = [vendor_key(f"bench-{i}") for i in range(VENDORS)]
    return [agents[i % AGENTS].pay(vendors[i % VENDORS], 1 + i % 5) for i in range(INTENTS)]


async def produce(settings: Settings, intents: list[AcceptedIntent]) -> None:
    kafka = settings.kafka
    topic = topic_name(topics.INTENTS_ACCEPTED, kafka)
    codec = WireCodec(topic_prefix=kafka.topic_prefix)
    producer = AIOKafkaProducer(**producer_kwargs(kafka, role="bench", max_request_size=4 << 20))
    await producer.start()
    try:
        packed = pack_by_partition(intents, settings.local_kafka.partitions)
        for partition, chunks in packed.items():
            for chunk in chunks:
                value = codec.encode(topic, intent_batch(chunk, producer="bench", now_ms=1))
                await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


async def _timed(counter: Callable[[], int], task: asyncio.Task[Any]) -> float:
    """intents/s between the first and the last processed intent."""
    first: float | None = None
    first_count = 0
    deadline = time.monotonic() + 300
    while counter() < INTENTS and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
        if first is None and counter() > 0:
            first, first_count = time.perf_counter(), counter()
        if task.done():
            task.result()
    end = time.perf_counter()
    assert first is not None
    return (counter() - first_count) / (end - first)


async def run_worker(settings: Settings, group: str, verify: bool) -> float:
    cfg = StreamsSettings(  # type: ignore[call-arg]
        group_id=group, worker_id=group, batch_max_intents=10_000, verify_signatures=verify
    )
    worker = StreamsWorker(settings.model_copy(update={"streams": cfg}))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        return await _timed(lambda: worker.counters.intents, task)
    finally:
        stop.set()
        await task


async def plain_loop(settings: Settings, group: str, verify: bool, count: list[int]) -> None:
    kafka = settings.kafka
    source = topic_name(topics.INTENTS_ACCEPTED, kafka)
    out = topic_name(topics.INTENTS_REJECTED, kafka)
    codec = WireCodec(topic_prefix=kafka.topic_prefix)
    consumer = AIOKafkaConsumer(source, **consumer_kwargs(kafka, group_id=group))
    producer = AIOKafkaProducer(**producer_kwargs(kafka, role="bench-plain"))
    await consumer.start()
    await producer.start()
    seen: dict[tuple[bytes, int], bytes] = {}
    last_cum: dict[bytes, int] = {}
    pending: dict[bytes, list[bytes]] = {}
    try:
        while count[0] < INTENTS:
            got = await consumer.getmany(timeout_ms=100, max_records=500)
            futures = []
            for tp, recs in got.items():
                for rec in recs:
                    value = codec.decode(
                        rec.value, topic=source, partition=tp.partition, offset=rec.offset
                    )
                    for intent in unpack(value):
                        signed = intent.signed
                        if verify:
                            try:
                                signed.verify()
                            except ProtocolError:
                                continue
                        key = (signed.agent, signed.intent.nonce)
                        if seen.get(key) == signed.id:
                            continue
                        seen[key] = signed.id
                        ch = signed.intent.channel
                        if signed.intent.cumulative < last_cum.get(ch, 0) + signed.intent.amount:
                            continue
                        last_cum[ch] = signed.intent.cumulative
                        ids = pending.setdefault(intent.vendor, [])
                        ids.append(signed.id)
                        if len(ids) >= 10_000:
                            merkle_root(ids)
                            pending[intent.vendor] = []
                    count[0] += len(value["intents"])
                    futures.append(await producer.send(out, rec.value[:64], key=rec.key))
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def run_plain(settings: Settings, group: str, verify: bool) -> float:
    count = [0]
    task = asyncio.create_task(plain_loop(settings, group, verify, count))
    try:
        return await _timed(lambda: count[0], task)
    finally:
        await task


async def measure(settings: Settings) -> list[Figure]:
    print(f"  signing and producing {INTENTS:,} intents")
    await produce(settings, traffic())
    runs: dict[str, list[float]] = {}
    for i in range(RUNS):
        for verify in (True, False):
            tag = "verify" if verify else "trust"
            runs.setdefault(f"worker-{tag}", []).append(
                await run_worker(settings, f"w{i}{tag}", verify)
            )
            runs.setdefault(f"plain-{tag}", []).append(
                await run_plain(settings, f"p{i}{tag}", verify)
            )
    figures = []
    for tag, note in (("verify", "signatures re-verified"), ("trust", "gateway-verified")):
        worker, plain = runs[f"worker-{tag}"], runs[f"plain-{tag}"]
        figures.append(
            Figure(
                name=f"worker intents/s ({note})",
                value=median(worker),
                unit="intents/s",
                baseline=f"plain aiokafka loop ({note})",
                baseline_value=median(plain),
                target=">= 50k/s; >= 0.4x plain loop",
                runs=worker,
            )
        )
    return figures


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, _kafka(Path(tmp)) as settings:
        if settings is None:
            print("  no Kafka broker: skipped")
            return
        figures = asyncio.run(measure(settings))
        record("streams", figures, "python -m bench streams")


if __name__ == "__main__":
    main()
