"""The shared fixtures against the session broker: aiokafka groups, topic checks, Faust."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import NewTopic

from machpay.config import Settings
from machpay.kafka.admin import (
    TopicMismatchError,
    _admin,
    acreate_topics,
    adelete_topics,
    alist_topics,
)
from machpay.kafka.clients import consumer_kwargs, partition_for_key, producer_kwargs, topic_name
from machpay.topics import AGENTS_STATUS, ALL_TOPICS, INTENTS_ACCEPTED

pytestmark = pytest.mark.integration


async def test_fixture_created_every_topic_under_a_unique_prefix(kafka_settings: Settings) -> None:
    kafka = kafka_settings.kafka
    assert kafka.topic_prefix.startswith("t")
    topics = await alist_topics(kafka)
    for topic in ALL_TOPICS:
        assert topics[topic_name(topic, kafka)] == kafka_settings.local_kafka.partitions


async def test_two_consumers_share_partitions_in_a_group(kafka_settings: Settings) -> None:
    kafka = kafka_settings.kafka
    topic = topic_name(INTENTS_ACCEPTED, kafka)
    n = kafka_settings.local_kafka.partitions

    producer = AIOKafkaProducer(**producer_kwargs(kafka, role="test"))
    await producer.start()
    try:
        for i in range(60):
            key = f"agent-{i % 12}".encode()
            meta = await producer.send_and_wait(topic, b"v%d" % i, key=key)
            assert meta.partition == partition_for_key(key, n)
    finally:
        await producer.stop()

    started = time.monotonic()
    a = AIOKafkaConsumer(topic, **consumer_kwargs(kafka, group_id="g", role="a"))
    b = AIOKafkaConsumer(topic, **consumer_kwargs(kafka, group_id="g", role="b"))
    await a.start()
    await b.start()
    got: dict[str, list[bytes]] = {"a": [], "b": []}
    try:
        while len(got["a"]) + len(got["b"]) < 60:
            assert time.monotonic() - started < 30, f"only {got} after 30s"
            for name, consumer in (("a", a), ("b", b)):
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    got[name] += [r.value for r in records if r.value is not None]
                if batch:
                    await consumer.commit()
        assignment_a = {tp.partition for tp in a.assignment()}
        assignment_b = {tp.partition for tp in b.assignment()}
    finally:
        await a.stop()
        await b.stop()
    assert sorted(got["a"] + got["b"]) == sorted(b"v%d" % i for i in range(60))
    assert assignment_a | assignment_b == set(range(n))
    assert not assignment_a & assignment_b


async def test_mismatched_existing_topic_is_reported(kafka_settings: Settings) -> None:
    kafka = kafka_settings.kafka
    prefix = kafka.topic_prefix + "other."
    name = AGENTS_STATUS.qualified(prefix)
    client = await _admin(kafka)
    try:  # a non-compacted, 2-partition topic where a compacted one is declared
        await client.create_topics([NewTopic(name, 2, 1)])
    finally:
        await client.close()
    try:
        with pytest.raises(TopicMismatchError) as err:
            await acreate_topics(kafka, default_partitions=3, prefix=prefix, topics=[AGENTS_STATUS])
        text = str(err.value)
        assert name in text
        assert "has 2 partitions, declared 3" in text
        assert "cleanup.policy is 'delete', declared 'compact'" in text
        results = await acreate_topics(
            kafka, default_partitions=2, prefix=prefix, topics=[AGENTS_STATUS], strict=False
        )
        assert results[0].action == "exists"
        assert results[0].problems == ("cleanup.policy is 'delete', declared 'compact'",)
    finally:
        assert await adelete_topics(kafka, prefix=prefix, topics=[AGENTS_STATUS]) == [name]


FAUST_APP = """
import os, sys
import faust

bootstrap, source, app_id, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
app = faust.App(
    app_id,
    broker=f"kafka://{bootstrap}",
    store="memory://",
    web_enabled=False,
    topic_partitions=int(sys.argv[5]),
    topic_replication_factor=1,
    broker_session_timeout=6.0,
    broker_heartbeat_interval=0.5,
)
topic = app.topic(source, key_serializer="raw", value_serializer="raw")
counts = app.Table("counts", default=int)
seen = 0


@app.agent(topic)
async def count(stream):
    global seen
    async for key, _value in stream.items():
        counts[key.decode()] += 1
        seen += 1
        if seen == expected:
            print(f"FAUST-OK {seen} records, {len(counts)} keys", flush=True)
            os.kill(os.getpid(), 15)


if __name__ == "__main__":
    # The worker command turns the web server on (0.0.0.0:6066) whatever web_enabled says.
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()
"""


@pytest.mark.slow
async def test_faust_agent_and_table_run_on_this_broker(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    kafka = kafka_settings.kafka
    source = topic_name(INTENTS_ACCEPTED, kafka)
    app_id = kafka.topic_prefix + "faust-probe"
    producer = AIOKafkaProducer(**producer_kwargs(kafka, role="test"))
    await producer.start()
    try:
        for i in range(20):
            await producer.send_and_wait(source, b"x", key=f"agent-{i % 5}".encode())
    finally:
        await producer.stop()

    script = tmp_path / "faust_probe.py"
    script.write_text(textwrap.dedent(FAUST_APP))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        kafka.bootstrap_servers,
        source,
        app_id,
        "20",
        str(kafka_settings.local_kafka.partitions),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        pytest.fail("Faust worker did not finish in 90s:\n" + out.decode()[-3000:])
    text = out.decode()
    assert "FAUST-OK 20 records, 5 keys" in text, text[-3000:]

    # The table's changelog is a real, compacted topic holding the counts.
    changelog = f"{app_id}-counts-changelog"
    topics = await alist_topics(kafka)
    assert changelog in topics
    reader = AIOKafkaConsumer(changelog, **consumer_kwargs(kafka, group_id=None, role="reader"))
    await reader.start()
    try:
        records: list[Any] = []
        deadline = time.monotonic() + 10
        while len(records) < 20 and time.monotonic() < deadline:
            batch = await reader.getmany(timeout_ms=500)
            records += [r for rs in batch.values() for r in rs]
    finally:
        await reader.stop()
    assert len(records) == 20
    final = {r.key: r.value for r in records}
    assert sorted(final.values()) == [b"4"] * 5
