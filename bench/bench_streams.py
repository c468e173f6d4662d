"""Stream worker throughput against a plain aiokafka consume-check-produce loop, same run.

Both read the same pre-produced ``intents.accepted`` records (1,000 signed
intents per record, as gateways pack them) from a fresh consumer group, on a
local broker (fresh, on free ports, or ``MACHPAY_BENCH_BOOTSTRAP``):

* **worker**: :class:`machpay.streams.app.StreamsApp`, the whole Faust
  topology as ``machpay streams worker`` runs it: ``take_events`` chunks,
  decode, dedupe, equivocation and channel checks, batching with Merkle
  roots, statuses, produce with acks=all, per-key snapshots to the state
  table (changelog, acks=all), Faust's commits;
* **plain loop**: the Python ceiling: decode, the same Ed25519 check, a dict
  dedupe, a last-cumulative check per channel, one Merkle root per 10,000
  intents, one produce per record, commit.

Each is measured with signature re-verification on (every intent verified
again, ~17.7k/s per core) and off (trusting the gateway's verification).
The rate is intents/s between the first and the last processed intent.

Also in the same run, without re-verification: a **naive Faust agent**
(faust-streaming, one intent per record, a nonce table and a
last-cumulative table written per intent) over ``NAIVE_INTENTS`` records,
in a subprocess, as the anchor the architecture's "records carry many
intents" rule is measured against.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from bench.harness import Figure, local_kafka, median, record
from machpay import topics
from machpay.config import Settings, StreamsSettings
from machpay.kafka.admin import acreate_topics
from machpay.kafka.clients import consumer_kwargs, producer_kwargs, topic_name
from machpay.kafka.packing import pack_by_partition
from machpay.protocol import ProtocolError, merkle_root
from machpay.streams.app import StreamsApp
from machpay.streams.traffic import Agent, keypair, vendor_key
from machpay.wire import WireCodec
from machpay.wire.intents import AcceptedIntent, intent_batch, unpack

AGENTS = 200
VENDORS = 10
INTENTS = 100_000
RUNS = 3
NAIVE_INTENTS = 10_000
NAIVE_TIMEOUT_S = 120

NAIVE_FAUST_APP = """
import os, sys, time
import faust
from machpay.wire import WireCodec
from machpay.wire.intents import unpack

bootstrap, source, app_id, expected, partitions, prefix = sys.argv[1:7]
expected = int(expected)
app = faust.App(
    app_id,
    broker=f"kafka://{bootstrap}",
    store="memory://",
    web_enabled=False,
    topic_partitions=int(partitions),
    topic_replication_factor=1,
    broker_session_timeout=6.0,
    broker_heartbeat_interval=0.5,
    producer_linger=0.005,
    producer_max_batch_size=1 << 20,
)
topic = app.topic(source, key_serializer="raw", value_serializer="raw")
nonces = app.Table("nonces", default=str)
latest = app.Table("latest", default=int)
codec = WireCodec(topic_prefix=prefix)
seen = 0
first = None


@app.agent(topic)
async def check(stream):
    global seen, first
    async for event in stream.events():
        msg = event.message
        value = codec.decode(event.value, topic=source, partition=msg.partition, offset=msg.offset)
        for intent in unpack(value):
            signed = intent.signed
            key = f"{signed.agent.hex()}:{signed.nonce}"
            ident = signed.id.hex()
            if nonces[key] == ident:
                continue
            nonces[key] = ident
            channel = signed.intent.channel.hex()
            if signed.cumulative >= latest[channel] + signed.amount:
                latest[channel] = signed.cumulative
            seen += 1
        if first is None:
            first = time.perf_counter()
        if seen >= expected:
            print(f"NAIVE-RATE {(seen - 1) / (time.perf_counter() - first)}", flush=True)
            os.kill(os.getpid(), 15)


if __name__ == "__main__":
    # The worker command turns the web server on (0.0.0.0:6066) whatever web_enabled says.
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()
"""


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
    worker = StreamsApp(settings.model_copy(update={"streams": cfg}))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        rate = await _timed(lambda: worker.counters.intents, task)
    finally:
        stop.set()
        await task
    c = worker.counters
    print(
        f"    faust worker ({'verify' if verify else 'trust'}): {rate:,.0f} intents/s; "
        f"{c.records} records in {c.chunks} chunks, {c.table_writes} table writes "
        f"({1000 * c.table_writes / max(c.intents, 1):.1f} per 1k intents), "
        f"{c.tail_records} read on take"
    )
    return rate


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


async def commit_to_end(settings: Settings, group: str) -> None:
    """Commit the end of every partition for ``group``: as if it had processed everything."""
    kafka = settings.kafka
    source = topic_name(topics.INTENTS_ACCEPTED, kafka)
    consumer = AIOKafkaConsumer(**consumer_kwargs(kafka, group_id=group))
    await consumer.start()
    try:
        tps = [TopicPartition(source, p) for p in range(settings.local_kafka.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: end for tp, end in ends.items() if end})
    finally:
        await consumer.stop()


async def run_take(settings: Settings, group: str) -> float:
    """Seconds a fresh worker in ``group`` spends taking every partition (restore + tail)."""
    cfg = StreamsSettings(  # type: ignore[call-arg]
        group_id=group, worker_id=f"{group}-take", batch_max_intents=10_000, verify_signatures=False
    )
    worker = StreamsApp(settings.model_copy(update={"streams": cfg}))
    stop = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    try:
        deadline = time.monotonic() + 300
        while len(worker.owned) < settings.local_kafka.partitions and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
            if task.done():
                task.result()
        started = time.perf_counter() - start
    finally:
        stop.set()
        await task
    c = worker.counters
    print(
        f"    take ({group}): {c.take_seconds:.2f} s in takes ({started:.1f} s from start, "
        f"Faust start and group join included); {c.restored_records} records restored "
        f"from the table, {c.tail_records} read from the partitions"
    )
    return c.take_seconds


async def run_plain(settings: Settings, group: str, verify: bool) -> float:
    count = [0]
    task = asyncio.create_task(plain_loop(settings, group, verify, count))
    try:
        rate = await _timed(lambda: count[0], task)
    finally:
        await task
    print(f"    plain loop ({'verify' if verify else 'trust'}): {rate:,.0f} intents/s")
    return rate


async def naive_faust(settings: Settings, intents: list[AcceptedIntent], tmp: Path) -> float:
    """intents/s of the naive one-intent-per-record Faust agent (subprocess)."""
    kafka = settings.kafka.model_copy(update={"topic_prefix": settings.kafka.topic_prefix + "n."})
    partitions = settings.local_kafka.partitions
    await acreate_topics(kafka, default_partitions=partitions, topics=[topics.INTENTS_ACCEPTED])
    source = topic_name(topics.INTENTS_ACCEPTED, kafka)
    codec = WireCodec(topic_prefix=kafka.topic_prefix)
    producer = AIOKafkaProducer(**producer_kwargs(kafka, role="bench-naive"))
    await producer.start()
    try:
        for intent in intents:
            value = codec.encode(source, intent_batch([intent], producer="bench", now_ms=1))
            await producer.send(source, value, key=intent.agent)
        await producer.flush()
    finally:
        await producer.stop()
    script = tmp / "naive_faust.py"
    script.write_text(NAIVE_FAUST_APP)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        kafka.bootstrap_servers,
        source,
        kafka.topic_prefix + "naive",
        str(len(intents)),
        str(partitions),
        kafka.topic_prefix,
        cwd=tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), NAIVE_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    for line in text.splitlines():  # Faust logs what the agent prints
        if "NAIVE-RATE " in line:
            return float(line.split("NAIVE-RATE ", 1)[1].split()[0])
    raise RuntimeError("naive Faust agent did not finish:\n" + text[-2000:])


async def measure(settings: Settings) -> list[Figure]:
    print(f"  signing and producing {INTENTS:,} intents")
    intents = traffic()
    await produce(settings, intents)
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
    # Taking over the partitions: from the state table the last trust run left
    # (snapshot + the tail to its commit), against replaying them from the
    # start (a group whose offsets are committed at the end, no snapshot).
    for i in range(RUNS):
        runs.setdefault("take-table", []).append(await run_take(settings, f"w{i}trust"))
        await commit_to_end(settings, f"{settings.kafka.topic_prefix}r{i}")
        runs.setdefault("take-replay", []).append(await run_take(settings, f"r{i}"))
    with tempfile.TemporaryDirectory() as tmp:
        naive = await naive_faust(settings, intents[:NAIVE_INTENTS], Path(tmp))
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
    figures.append(
        Figure(
            name="worker intents/s vs naive Faust (gateway-verified)",
            value=median(runs["worker-trust"]),
            unit="intents/s",
            baseline="naive one-intent-per-record Faust agent",
            baseline_value=naive,
            target=">= 5x naive Faust",
            runs=runs["worker-trust"],
        )
    )
    figures.append(
        Figure(
            name=f"take of {settings.local_kafka.partitions} partitions ({INTENTS:,} intents), "
            "restored from the state table",
            value=median(runs["take-table"]),
            unit="s",
            baseline="the same take replaying the partitions from their start",
            baseline_value=median(runs["take-replay"]),
            target="< 1 (the table spares the replay)",
            runs=runs["take-table"],
        )
    )
    return figures


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, local_kafka(Path(tmp), "streams") as settings:
        if settings is None:
            print("  no Kafka broker: skipped")
            return
        figures = asyncio.run(measure(settings))
        record("streams", figures, "python -m bench streams")


if __name__ == "__main__":
    main()
