"""`machpay kafka smoke`: signed intents through a real Kafka, checked end to end.

What it does, in order: make sure a broker is running (starting the local one
if needed) and the topics exist; sign a few thousand payment intents from a
handful of agents to a handful of vendors, exactly as the SDK will; add what
a real network adds (gateway retries that duplicate an intent, and a few
tampered signatures); pack them into one Avro record per partition and
produce them with acks=all; consume them back in a consumer group, verify
every signature strictly and every id, drop duplicates, and print what it saw,
including the RFC 6962 root each vendor's batch would commit to.

An operator's check that a cluster, its topics and the wire format work
before any service is pointed at it; `machpay demo` (the machpay-demo
distribution) runs the whole product.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import click

from machpay import topics
from machpay.cli import AppContext, pass_app
from machpay.config import Settings
from machpay.protocol import (
    Intent,
    Keypair,
    ProtocolError,
    SignedIntent,
    address_to_bytes,
    bytes_to_address,
    channel_address,
    context_hash,
    merkle_root,
    request_hash,
    sign_intent,
)
from machpay.wire import WireCodec, WireDecodeError
from machpay.wire.intents import AcceptedIntent, intent_batch, unpack

SERVICES = (("search", 120), ("embed", 40), ("chat", 900), ("vision", 2_500))


@dataclass
class Traffic:
    """What the smoke test sends: every copy, and which ones are honest and unique."""

    sent: list[AcceptedIntent]
    unique_valid_ids: set[bytes]
    tampered_ids: set[bytes]
    duplicates: int
    vendors: dict[bytes, str]
    sign_seconds: float


@dataclass
class Seen:
    """What the consumer observed."""

    records: int = 0
    intents: int = 0
    verified: dict[bytes, AcceptedIntent] = field(default_factory=dict)
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    undecodable: int = 0
    wrong_partition: int = 0
    first_at: float = 0.0
    last_at: float = 0.0


def make_traffic(
    settings: Settings,
    *,
    count: int,
    agents: int,
    vendors: int,
    duplicates: int,
    tampered: int,
    seed: int,
) -> Traffic:
    """Sign ``count`` honest intents, then add duplicate and tampered copies."""
    rng = random.Random(seed)
    program_id = address_to_bytes(settings.deployment.machpay_program_id)
    domain = settings.deployment.domain
    # Fresh keys per run so repeated runs on one broker never collide.
    agent_keys = [Keypair.generate() for _ in range(agents)]
    vendor_keys = {Keypair.generate().public: f"vendor-{i}" for i in range(vendors)}
    vendor_list = list(vendor_keys)
    nonces = [rng.randrange(1, 1 << 32) for _ in agent_keys]
    cumulative: dict[tuple[int, bytes], int] = defaultdict(int)
    channels: dict[tuple[int, bytes], bytes] = {}
    expires_at = int(time.time()) + 300
    started = time.perf_counter()
    honest: list[AcceptedIntent] = []
    for n in range(count):
        a = rng.randrange(agents)
        vendor = rng.choice(vendor_list)
        service, price = rng.choice(SERVICES)
        key = (a, vendor)
        if key not in channels:
            channels[key] = channel_address(
                program_id=program_id, agent=agent_keys[a].public, vendor=vendor
            )
        cumulative[key] += price
        nonces[a] += 1
        path = f"/v1/{service}"
        body = f'{{"q": {n}}}'.encode()
        context = context_hash(service, request_hash("POST", path, "", body), os.urandom(16))
        intent = Intent(
            domain=domain,
            channel=channels[key],
            nonce=nonces[a],
            cumulative=cumulative[key],
            amount=price,
            expires_at=expires_at,
            context=context,
        )
        honest.append(
            AcceptedIntent(
                signed=sign_intent(intent, agent_keys[a]),
                vendor=vendor,
                service=service,
                route=f"POST {path}",
                accepted_at_ms=int(time.time() * 1000),
            )
        )
    sign_seconds = time.perf_counter() - started

    sent = list(honest)
    # A gateway that retries a produce after a lost ack sends the same intent again.
    sent += rng.sample(honest, min(duplicates, len(honest)))
    tampered_ids: set[bytes] = set()
    for original in rng.sample(honest, min(tampered, len(honest))):
        forged = bytearray(original.signed.message)
        forged[57] ^= 0x01  # cumulative, low byte: a forged raise the agent never signed
        signed = SignedIntent(bytes(forged), original.signed.signature, original.signed.agent)
        tampered_ids.add(signed.id)
        sent.append(
            AcceptedIntent(
                signed=signed,
                vendor=original.vendor,
                service=original.service,
                route=original.route,
                accepted_at_ms=original.accepted_at_ms,
            )
        )
    rng.shuffle(sent)
    # Per-agent order matters downstream (nonces); restore it for each agent.
    sent.sort(key=lambda i: (i.agent, i.signed.nonce))
    return Traffic(
        sent=sent,
        unique_valid_ids={i.id for i in honest},
        tampered_ids=tampered_ids,
        duplicates=min(duplicates, len(honest)),
        vendors=vendor_keys,
        sign_seconds=sign_seconds,
    )


async def produce(
    settings: Settings, codec: WireCodec, intents: list[AcceptedIntent], *, producer_id: str
) -> tuple[int, dict[int, int]]:
    """Produce intents packed one record per partition; returns (records, per-partition)."""
    from aiokafka import AIOKafkaProducer

    from machpay.kafka.clients import producer_kwargs, topic_name
    from machpay.kafka.packing import pack_by_partition

    name = topic_name(topics.INTENTS_ACCEPTED, settings.kafka)
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka, role="demo"))
    await producer.start()
    try:
        partitions = len(await producer.partitions_for(name))
        grouped = pack_by_partition(intents, partitions, max_per_record=500)
        sends = []
        per_partition: dict[int, int] = {}
        now = int(time.time() * 1000)
        for partition, chunks in grouped.items():
            for chunk in chunks:
                value = codec.encode(
                    topics.INTENTS_ACCEPTED, intent_batch(chunk, producer=producer_id, now_ms=now)
                )
                sends.append(await producer.send(name, value, partition=partition))
                per_partition[partition] = per_partition.get(partition, 0) + len(chunk)
        await asyncio.gather(*sends)  # every record acknowledged by the broker (acks=all)
        return len(sends), per_partition
    finally:
        await producer.stop()


async def end_offsets(settings: Settings) -> dict[int, int]:
    """Current end offset of every partition of intents.accepted."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from machpay.kafka.admin import alist_topics
    from machpay.kafka.clients import consumer_kwargs, topic_name

    name = topic_name(topics.INTENTS_ACCEPTED, settings.kafka)
    count = (await alist_topics(settings.kafka)).get(name)
    if not count:
        raise click.ClickException(f"topic {name} does not exist; run `machpay kafka topics`")
    parts = [TopicPartition(name, p) for p in range(count)]
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings.kafka, group_id=None, role="demo"))
    await consumer.start()
    try:
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def consume_and_verify(
    settings: Settings,
    codec: WireCodec,
    *,
    group_id: str,
    start: dict[int, int],
    stop: dict[int, int],
    timeout_s: float,
    progress: Callable[[Seen], None] | None = None,
) -> Seen:
    """Read [start, stop) of every partition in a consumer group; verify everything."""
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

    from machpay.kafka.clients import consumer_kwargs, topic_name

    name = topic_name(topics.INTENTS_ACCEPTED, settings.kafka)
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings.kafka, group_id=group_id, role="demo"))
    partitions = len(start)

    class SeekToRunStart(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: object) -> None:
            return None

        async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
            for tp in assigned:
                consumer.seek(tp, start.get(tp.partition, 0))

    seen = Seen()
    await consumer.start()
    consumer.subscribe([name], listener=SeekToRunStart())
    deadline = time.monotonic() + timeout_s
    try:
        position = dict(start)
        while any(position[p] < stop[p] for p in stop) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=200)
            for tp, messages in batches.items():
                for msg in messages:
                    position[tp.partition] = msg.offset + 1
                    if msg.offset >= stop[tp.partition]:
                        continue
                    _check_record(codec, msg.value, (tp.partition, msg.offset), partitions, seen)
            if batches:
                await consumer.commit()
                if progress is not None:
                    progress(seen)
    finally:
        await consumer.stop()
    return seen


def _check_record(
    codec: WireCodec, data: bytes, where: tuple[int, int], partitions: int, seen: Seen
) -> None:
    """Decode one record and verify every intent in it, tallying into ``seen``."""
    from machpay.kafka.clients import partition_for_key

    seen.records += 1
    partition, offset = where
    try:
        batch = codec.decode(
            data, topic=topics.INTENTS_ACCEPTED, partition=partition, offset=offset
        )
    except WireDecodeError:
        seen.undecodable += 1
        return
    now = time.monotonic()
    seen.first_at = seen.first_at or now
    seen.last_at = now
    for record in batch["intents"]:
        seen.intents += 1
        try:
            (accepted,) = unpack({"intents": [record]})
            accepted.signed.verify()
        except ProtocolError as exc:
            seen.rejected[str(exc.reason)] += 1
            continue
        if partition_for_key(accepted.agent, partitions) != partition:
            seen.wrong_partition += 1
        if accepted.id in seen.verified:
            seen.duplicates += 1
            continue
        seen.verified[accepted.id] = accepted


async def run_demo(
    settings: Settings,
    *,
    count: int,
    agents: int,
    vendors: int,
    duplicates: int,
    tampered: int,
    seed: int,
    echo: Callable[[str], None],
) -> tuple[Traffic, Seen]:
    codec = WireCodec.from_settings(
        settings.schema_registry, topic_prefix=settings.kafka.topic_prefix
    )
    traffic = make_traffic(
        settings,
        count=count,
        agents=agents,
        vendors=vendors,
        duplicates=duplicates,
        tampered=tampered,
        seed=seed,
    )
    echo(
        f"signed {count:,} intents from {agents} agents to {vendors} vendors in "
        f"{traffic.sign_seconds:.2f}s ({count / traffic.sign_seconds:,.0f}/s); added "
        f"{traffic.duplicates} retried duplicates and {len(traffic.tampered_ids)} tampered copies"
    )
    start = await end_offsets(settings)
    t0 = time.perf_counter()
    run_id = os.urandom(4).hex()
    records, per_partition = await produce(
        settings, codec, traffic.sent, producer_id=f"demo-{run_id}"
    )
    produce_s = time.perf_counter() - t0
    echo(
        f"produced {len(traffic.sent):,} intents as {records} Avro records (acks=all) to "
        f"{topics.INTENTS_ACCEPTED.qualified(settings.kafka.topic_prefix)} in {produce_s:.2f}s; "
        "intents per partition: " + ", ".join(f"{p}:{n}" for p, n in sorted(per_partition.items()))
    )
    stop = await end_offsets(settings)

    def progress(seen: Seen) -> None:
        echo(f"  consumed {seen.records} records / {seen.intents:,} intents ...")

    t1 = time.perf_counter()
    seen = await consume_and_verify(
        settings,
        codec,
        group_id=f"machpay-demo-{run_id}",
        start=start,
        stop=stop,
        timeout_s=60,
        progress=progress,
    )
    echo(
        f"consumed back in consumer group machpay-demo-{run_id} in {time.perf_counter() - t1:.2f}s"
    )
    return traffic, seen


def summary(traffic: Traffic, seen: Seen) -> tuple[list[str], bool]:
    """Readable report lines and whether everything matched."""
    lines = [
        "",
        "what the consumer saw",
        f"  records                {seen.records}",
        f"  intents                {seen.intents:,}",
        f"  verified, unique       {len(seen.verified):,}"
        f"   (sent {len(traffic.unique_valid_ids):,})",
        f"  duplicates dropped     {seen.duplicates}   (sent {traffic.duplicates})",
        "  rejected               "
        + (", ".join(f"{k}: {v}" for k, v in seen.rejected.items()) or "none")
        + f"   (sent {len(traffic.tampered_ids)} tampered)",
        f"  undecodable records    {seen.undecodable}",
        f"  intent in wrong partition {seen.wrong_partition}",
        "",
        "per vendor (what one batch each would commit to on-chain)",
    ]
    by_vendor: dict[bytes, list[AcceptedIntent]] = defaultdict(list)
    for accepted in seen.verified.values():
        by_vendor[accepted.vendor].append(accepted)
    for vendor, name in traffic.vendors.items():
        items = sorted(by_vendor.get(vendor, []), key=lambda i: (i.agent, i.signed.nonce))
        total = sum(i.signed.amount for i in items)
        root = merkle_root([i.id for i in items])
        channels = len({i.signed.channel for i in items})
        lines.append(
            f"  {name:<9} {bytes_to_address(vendor)[:8]}…  {len(items):>5} intents  "
            f"{channels:>3} channels  {total:>10,} lamports  root {root.hex()[:16]}…"
        )
    ok = (
        set(seen.verified) == traffic.unique_valid_ids
        and seen.duplicates == traffic.duplicates
        and sum(seen.rejected.values()) == len(traffic.tampered_ids)
        and seen.undecodable == 0
        and seen.wrong_partition == 0
    )
    lines += ["", "RESULT: " + ("every intent accounted for" if ok else "MISMATCH (see above)")]
    return lines, ok


@click.command("smoke")
@click.option("--count", default=5_000, show_default=True, help="Honest intents to sign.")
@click.option("--agents", default=20, show_default=True, help="Number of agent keys.")
@click.option("--vendors", default=4, show_default=True, help="Number of vendor keys.")
@click.option(
    "--duplicates", default=50, show_default=True, help="Retried copies of honest intents to add."
)
@click.option("--tampered", default=5, show_default=True, help="Copies with a forged field to add.")
@click.option("--seed", default=7, show_default=True, help="Seed for the traffic mix.")
@click.option(
    "--bootstrap",
    help="Use this Kafka cluster instead of the local broker (default: start or reuse "
    "the local one from `machpay kafka up`).",
)
@pass_app
def smoke(
    app: AppContext,
    *,
    count: int,
    agents: int,
    vendors: int,
    duplicates: int,
    tampered: int,
    seed: int,
    bootstrap: str | None,
) -> None:
    """Push signed payment intents through a real Kafka broker and check every one came back.

    Starts the local single-node broker if it is not running (it stays up
    afterwards: stop it with `machpay kafka down`), creates the topics, signs
    intents, produces them packed per partition, reads them back in a consumer
    group and verifies each one.
    """
    from machpay.kafka.admin import KafkaAdminError, create_topics
    from machpay.kafka.broker import BrokerError, LocalBroker

    settings = app.settings
    if bootstrap is None:
        broker = LocalBroker(settings.local_kafka, echo=click.echo)
        try:
            if broker.running_pid() is None:
                click.echo("starting the local Kafka broker (stop it with `machpay kafka down`)")
                broker.fetch()
                if not broker.status(with_topics=False).formatted:
                    broker.format()
                broker.start()
            else:
                click.echo(f"using the running local Kafka broker on {broker.bootstrap}")
        except BrokerError as exc:
            raise click.ClickException(str(exc)) from exc
        bootstrap = broker.bootstrap
    kafka = settings.kafka.model_validate(
        {**settings.kafka.model_dump(), "bootstrap_servers": bootstrap}
    )
    settings = settings.model_copy(update={"kafka": kafka})
    try:
        create_topics(settings, strict=False)
    except KafkaAdminError as exc:
        raise click.ClickException(str(exc)) from exc

    traffic, seen = asyncio.run(
        run_demo(
            settings,
            count=count,
            agents=agents,
            vendors=vendors,
            duplicates=duplicates,
            tampered=tampered,
            seed=seed,
            echo=click.echo,
        )
    )
    lines, ok = summary(traffic, seen)
    for line in lines:
        click.echo(line)
    if not ok:
        raise click.ClickException("the consumer did not see exactly what was produced")
