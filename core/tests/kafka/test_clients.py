"""Client kwargs and the key partitioner (must equal Kafka's Java default partitioner)."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from machpay.config import KafkaSettings
from machpay.kafka.clients import (
    admin_kwargs,
    consumer_kwargs,
    murmur2,
    partition_for_key,
    producer_kwargs,
    topic_name,
)
from machpay.topics import AGENTS_STATUS

# Output of org.apache.kafka.common.utils.Utils.murmur2 (kafka-clients 4.1.1,
# Java 17) and toPositive(h) % 6 / % 7, recorded by running the Java method.
JAVA_MURMUR2 = [
    (b"", 275646681, 3, 2),
    (b"a", -1563381124, 4, 5),
    (b"ab", 316155434, 2, 0),
    (b"abc", 479470107, 3, 4),
    (b"21", -973932308, 0, 3),
    (b"foobar", -790332482, 0, 0),
    (b"a-little-bit-long-string", -985981536, 2, 1),
    (b"a-little-bit-longer-string", -1486304829, 5, 0),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971, 5, 3),
    (b"agent-1", 1915575295, 1, 4),
    (b"machpay", 1618997293, 1, 4),
]
JAVA_MURMUR2_BINARY = [
    (bytes(range(256)), -1948347274),
    (b"\xff\xfe\x80", -160726397),
]


@pytest.mark.parametrize(("key", "java_hash", "p6", "p7"), JAVA_MURMUR2)
def test_murmur2_matches_java(key: bytes, java_hash: int, p6: int, p7: int) -> None:
    assert murmur2(key) == java_hash
    assert partition_for_key(key, 6) == p6
    assert partition_for_key(key, 7) == p7


@pytest.mark.parametrize(("key", "java_hash"), JAVA_MURMUR2_BINARY)
def test_murmur2_matches_java_on_high_bytes(key: bytes, java_hash: int) -> None:
    # Java bytes are signed; the hash must treat them as unsigned like Java's & 0xff.
    assert murmur2(key) == java_hash


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=512))
def test_partition_for_key_equals_aiokafka_default_partitioner(key: bytes, n: int) -> None:
    partitions = list(range(n))
    assert partition_for_key(key, n) == DefaultPartitioner()(key, partitions, partitions)


def test_partition_for_key_rejects_zero_partitions() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        partition_for_key(b"k", 0)


def test_producer_kwargs_are_durable_and_named() -> None:
    kafka = KafkaSettings(bootstrap_servers="h1:1,h2:2", client_id="mp")  # type: ignore[call-arg]
    kw = producer_kwargs(kafka, role="gateway")
    assert kw["bootstrap_servers"] == "h1:1,h2:2"
    assert kw["client_id"] == "mp-gateway"
    assert kw["acks"] == "all"
    assert kw["enable_idempotence"] is True
    assert kw["linger_ms"] == 5
    assert producer_kwargs(kafka, linger_ms=0, acks=1)["acks"] == 1


def test_consumer_kwargs_carry_group_timeouts() -> None:
    kafka = KafkaSettings(session_timeout_ms=6000, heartbeat_interval_ms=500)  # type: ignore[call-arg]
    kw = consumer_kwargs(kafka, group_id="streams")
    assert kw["group_id"] == "streams"
    assert kw["session_timeout_ms"] == 6000
    assert kw["heartbeat_interval_ms"] == 500
    assert kw["enable_auto_commit"] is False
    assert kw["auto_offset_reset"] == "earliest"
    assert kw["client_id"] == "machpay"


def test_consumer_kwargs_refuse_heartbeat_above_session() -> None:
    kafka = KafkaSettings(session_timeout_ms=1000, heartbeat_interval_ms=1000)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="heartbeat_interval_ms"):
        consumer_kwargs(kafka, group_id="g")


def test_admin_kwargs_and_topic_name() -> None:
    kafka = KafkaSettings(topic_prefix="dev.")  # type: ignore[call-arg]
    assert admin_kwargs(kafka)["client_id"] == "machpay-admin"
    assert topic_name(AGENTS_STATUS, kafka) == "dev.agents.status"
