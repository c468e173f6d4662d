"""Shared aiokafka client settings and Kafka's default key partitioner.

Every component builds its producers, consumers and admin clients from
:class:`~machpay.config.KafkaSettings` through these functions, so timeouts,
client ids and durability settings are the same everywhere::

    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka, role="gateway"))
    consumer = AIOKafkaConsumer(topic, **consumer_kwargs(settings.kafka, group_id="streams"))

:func:`partition_for_key` returns the partition Kafka's default partitioner
(Java client, librdkafka's ``murmur2_random`` and aiokafka alike) picks for a
key. Producers that pack many intents into one record per partition use it to
group intents exactly as keyed records would be spread.
"""

from __future__ import annotations

from typing import Any

from machpay.config import KafkaSettings
from machpay.topics import Topic

__all__ = [
    "admin_kwargs",
    "consumer_kwargs",
    "murmur2",
    "partition_for_key",
    "producer_kwargs",
    "topic_name",
]

_MASK32 = 0xFFFFFFFF
_M = 0x5BD1E995
_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """32-bit MurmurHash2 exactly as ``org.apache.kafka.common.utils.Utils.murmur2``.

    Returns the signed 32-bit value the Java method returns.
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    whole = length - (length % 4)
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner assigns a record with this key.

    ``(murmur2(key) & 0x7fffffff) % partitions``, the same as Java's
    ``BuiltInPartitioner.partitionForKey`` and aiokafka's ``DefaultPartitioner``.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def topic_name(topic: Topic, kafka: KafkaSettings) -> str:
    """The topic's name on the cluster: the deployment's prefix plus the declared name."""
    return topic.qualified(kafka.topic_prefix)


def _client_id(kafka: KafkaSettings, role: str | None) -> str:
    return f"{kafka.client_id}-{role}" if role else kafka.client_id


def _common(kafka: KafkaSettings, role: str | None) -> dict[str, Any]:
    return {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": _client_id(kafka, role),
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
    }


def producer_kwargs(
    kafka: KafkaSettings,
    *,
    role: str | None = None,
    linger_ms: int = 5,
    **overrides: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``aiokafka.AIOKafkaProducer``.

    Durable by default: ``acks='all'`` with the idempotent producer, so a retry
    after a lost acknowledgement never writes a record twice. ``linger_ms``
    lets the client batch records bound for the same partition. ``role`` is
    appended to the client id (``machpay-gateway``) so brokers and metrics can
    tell components apart. ``overrides`` replace any computed value.
    """
    kwargs = _common(kafka, role)
    kwargs.update(acks="all", enable_idempotence=True, linger_ms=linger_ms)
    kwargs.update(overrides)
    return kwargs


def consumer_kwargs(
    kafka: KafkaSettings,
    *,
    group_id: str | None,
    role: str | None = None,
    auto_offset_reset: str = "earliest",
    enable_auto_commit: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``aiokafka.AIOKafkaConsumer``.

    Offsets are committed explicitly by default (after processing: at least
    once). ``group_id=None`` makes a group-less consumer (manual assignment).
    Session and heartbeat timeouts come from the settings; tests use short ones.
    """
    if kafka.heartbeat_interval_ms >= kafka.session_timeout_ms:
        raise ValueError(
            f"kafka.heartbeat_interval_ms ({kafka.heartbeat_interval_ms}) must be below "
            f"kafka.session_timeout_ms ({kafka.session_timeout_ms})"
        )
    kwargs = _common(kafka, role)
    kwargs.update(
        group_id=group_id,
        auto_offset_reset=auto_offset_reset,
        enable_auto_commit=enable_auto_commit,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
    )
    kwargs.update(overrides)
    return kwargs


def admin_kwargs(
    kafka: KafkaSettings, *, role: str | None = "admin", **overrides: Any
) -> dict[str, Any]:
    """Keyword arguments for ``aiokafka.admin.AIOKafkaAdminClient``."""
    kwargs = _common(kafka, role)
    kwargs.update(overrides)
    return kwargs
