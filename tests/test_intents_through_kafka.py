"""End to end on the real broker: signed intents -> Avro records -> consumer group -> verified.

The first slice of the pipeline: what a gateway will produce and what the
stream processors will consume, with the real codec, the real packing by
partition and a real Kafka consumer group.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from click.testing import CliRunner

from machpay import topics
from machpay.cli import cli
from machpay.config import Settings
from machpay.kafka.clients import consumer_kwargs, partition_for_key, producer_kwargs, topic_name
from machpay.kafka.packing import pack_by_partition
from machpay.protocol import (
    Intent,
    Keypair,
    address_to_bytes,
    channel_address,
    intent_id,
    sign_intent,
    verify_strict,
)
from machpay.wire import WireCodec, WireDecodeError
from machpay.wire.intents import AcceptedIntent, intent_batch, unpack

pytestmark = pytest.mark.integration

AGENTS = 6
VENDORS = 3
PER_AGENT = 100


def _signed_traffic(settings: Settings) -> list[AcceptedIntent]:
    program = address_to_bytes(settings.deployment.machpay_program_id)
    vendors = [hashlib.sha256(f"vendor-{v}".encode()).digest() for v in range(VENDORS)]
    out = []
    for a in range(AGENTS):
        kp = Keypair.from_seed(hashlib.sha256(f"slice-agent-{a}".encode()).digest())
        cumulative: dict[bytes, int] = defaultdict(int)
        for n in range(PER_AGENT):
            vendor = vendors[(a + n) % VENDORS]
            amount = 10 + n % 7
            cumulative[vendor] += amount
            intent = Intent(
                domain=settings.deployment.domain,
                channel=channel_address(program_id=program, agent=kp.public, vendor=vendor),
                nonce=n + 1,
                cumulative=cumulative[vendor],
                amount=amount,
                expires_at=int(time.time()) + 600,
                context=hashlib.sha256(f"{a}/{n}".encode()).digest()[:16],
            )
            out.append(
                AcceptedIntent(
                    signed=sign_intent(intent, kp),
                    vendor=vendor,
                    service="search",
                    route="GET /v1/search",
                    accepted_at_ms=int(time.time() * 1000),
                )
            )
    return out


async def _produce(settings: Settings, codec: WireCodec, intents: list[AcceptedIntent]) -> int:
    name = topic_name(topics.INTENTS_ACCEPTED, settings.kafka)
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka, role="slice-test"))
    await producer.start()
    try:
        partitions = len(await producer.partitions_for(name))
        futures = []
        for partition, chunks in pack_by_partition(intents, partitions, max_per_record=64).items():
            for chunk in chunks:
                value = codec.encode(
                    topics.INTENTS_ACCEPTED, intent_batch(chunk, producer="slice", now_ms=1)
                )
                futures.append(await producer.send(name, value, partition=partition))
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def _consume(
    settings: Settings, codec: WireCodec, want_intents: int, *, timeout_s: float = 30
) -> list[tuple[int, AcceptedIntent]]:
    name = topic_name(topics.INTENTS_ACCEPTED, settings.kafka)
    consumer = AIOKafkaConsumer(
        name, **consumer_kwargs(settings.kafka, group_id=f"{settings.kafka.topic_prefix}slice")
    )
    await consumer.start()
    seen: list[tuple[int, AcceptedIntent]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < want_intents and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                for msg in messages:
                    value = codec.decode(
                        msg.value, topic=name, partition=tp.partition, offset=msg.offset
                    )
                    seen.extend((tp.partition, i) for i in unpack(value))
            await consumer.commit()
    finally:
        await consumer.stop()
    return seen


async def test_signed_intents_come_back_verified_from_a_consumer_group(
    kafka_settings: Settings,
) -> None:
    codec = WireCodec(topic_prefix=kafka_settings.kafka.topic_prefix)
    sent = _signed_traffic(kafka_settings)
    records = await _produce(kafka_settings, codec, sent)
    assert records < len(sent) / 10, f"{records} records for {len(sent)} intents: not packed"

    received = await _consume(kafka_settings, codec, len(sent))

    assert len(received) == len(sent), f"sent {len(sent)} intents, consumed {len(received)}"
    assert {i.id for _, i in received} == {i.id for i in sent}, "consumed ids differ from sent"
    partitions = 6
    last_nonce: dict[bytes, int] = {}
    for partition, accepted in received:
        signed = accepted.signed
        verify_strict(signed.message, signed.signature, signed.agent)
        assert accepted.id == intent_id(signed.message), "id is not SHA-256 of the message"
        assert partition == partition_for_key(signed.agent, partitions), (
            "intent landed outside its agent's partition"
        )
        assert signed.nonce > last_nonce.get(signed.agent, 0), "per-agent order was not kept"
        last_nonce[signed.agent] = signed.nonce


async def test_undecodable_record_names_topic_partition_and_offset_and_can_be_dead_lettered(
    kafka_settings: Settings,
) -> None:
    codec = WireCodec(topic_prefix=kafka_settings.kafka.topic_prefix)
    name = topic_name(topics.INTENTS_ACCEPTED, kafka_settings.kafka)
    producer = AIOKafkaProducer(**producer_kwargs(kafka_settings.kafka))
    await producer.start()
    try:
        meta = await producer.send_and_wait(name, b"\x00\x00\x00\x00\x01garbage", partition=2)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(name, **consumer_kwargs(kafka_settings.kafka, group_id=None))
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), timeout=15)
    finally:
        await consumer.stop()
    with pytest.raises(WireDecodeError) as err:
        codec.decode(msg.value, topic=name, partition=msg.partition, offset=msg.offset)
    text = str(err.value)
    assert f"{name}[2]@{meta.offset}" in text, f"error does not locate the record: {text}"
    assert err.value.raw == msg.value

    dead_letter = err.value.dead_letter(source="slice-test", at_ms=1)
    framed = codec.encode(topics.INTENTS_REJECTED, dead_letter)
    back = codec.decode(framed, topic=topics.INTENTS_REJECTED, partition=0, offset=0)
    assert back["raw"] == msg.value
    assert back["origin"] == {"topic": name, "partition": 2, "offset": meta.offset}


def test_kafka_smoke_command_accounts_for_every_intent(kafka_settings: Settings) -> None:
    env = {
        "MACHPAY_KAFKA__TOPIC_PREFIX": kafka_settings.kafka.topic_prefix,
        "MACHPAY_KAFKA__SESSION_TIMEOUT_MS": str(kafka_settings.kafka.session_timeout_ms),
        "MACHPAY_KAFKA__HEARTBEAT_INTERVAL_MS": str(kafka_settings.kafka.heartbeat_interval_ms),
    }
    result = CliRunner().invoke(
        cli,
        ["kafka", "smoke", "--bootstrap", kafka_settings.kafka.bootstrap_servers, "--count", "800"],
        env=env,
    )
    assert result.exit_code == 0, f"machpay kafka smoke failed:\n{result.output}"
    assert "RESULT: every intent accounted for" in result.output, result.output
    assert "duplicates dropped     50" in result.output
    assert "bad_signature: 5" in result.output
