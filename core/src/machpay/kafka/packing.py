"""Producers send one record per partition holding many intents.

Faust pays ~90 µs per record before any work (QUALITY.md), so producers never
send one intent per record. They group what they accepted by the partition a
record keyed by the agent would land on (Kafka's murmur2 partitioner, so
per-agent order holds exactly as with keyed records) and send one
``machpay.IntentBatch`` per partition. Consumers unpack the list and can
check that every intent sits in its agent's partition.
"""

from __future__ import annotations

from collections.abc import Iterable

from machpay.kafka.clients import partition_for_key
from machpay.wire.intents import AcceptedIntent

#: Kafka's default max.request.size is 1 MiB; an accepted intent is ~300 bytes
#: on the wire, so 1,000 per record stays well under it.
MAX_INTENTS_PER_RECORD = 1_000


def pack_by_partition(
    intents: Iterable[AcceptedIntent],
    partitions: int,
    *,
    max_per_record: int = MAX_INTENTS_PER_RECORD,
) -> dict[int, list[list[AcceptedIntent]]]:
    """Group intents by their agent's partition, in arrival order, in chunks.

    Returns partition -> list of chunks, each chunk one future record.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if max_per_record < 1:
        raise ValueError(f"max_per_record must be >= 1, got {max_per_record}")
    grouped: dict[int, list[list[AcceptedIntent]]] = {}
    cache: dict[bytes, int] = {}
    for intent in intents:
        agent = intent.signed.agent
        partition = cache.get(agent)
        if partition is None:
            partition = cache[agent] = partition_for_key(agent, partitions)
        chunks = grouped.setdefault(partition, [[]])
        if len(chunks[-1]) >= max_per_record:
            chunks.append([])
        chunks[-1].append(intent)
    return grouped
