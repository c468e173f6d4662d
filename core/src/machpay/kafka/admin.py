"""Create, check and delete MachPay's topics on any Kafka cluster.

Topics come only from :mod:`machpay.topics` (brokers run with
``auto.create.topics.enable=false``). Creation is idempotent: an existing topic
is fine as long as its partition count and cleanup policy match the
declaration; a mismatch is reported per topic and, by default, raised as
:class:`TopicMismatchError` so a deployment never runs on topics it did not
expect.

The ``a``-prefixed functions are coroutines; the others wrap them for
synchronous callers (the CLI, pytest fixtures).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from machpay.config import KafkaSettings, Settings
from machpay.kafka.clients import admin_kwargs
from machpay.topics import ALL_TOPICS, Topic

__all__ = [
    "KafkaAdminError",
    "TopicMismatchError",
    "TopicResult",
    "acreate_topics",
    "adelete_topics",
    "alist_topics",
    "create_topics",
    "delete_topics",
    "list_topics",
    "run_sync",
]

T = TypeVar("T")

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3


class KafkaAdminError(Exception):
    """The cluster refused an admin request; the message names topic and error."""


@dataclass(frozen=True, slots=True)
class TopicResult:
    """What happened to one declared topic."""

    name: str
    partitions: int
    compacted: bool
    action: Literal["created", "exists"]
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


class TopicMismatchError(KafkaAdminError):
    """Existing topics differ from their declarations in machpay.topics."""

    def __init__(self, results: list[TopicResult]) -> None:
        self.results = results
        bad = [f"  {r.name}: {'; '.join(r.problems)}" for r in results if r.problems]
        super().__init__(
            "existing topics do not match machpay.topics:\n"
            + "\n".join(bad)
            + "\ndelete them (or use a fresh broker / another topic_prefix) and create again"
        )


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from synchronous code, even if this thread has a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _admin(kafka: KafkaSettings) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    client = AIOKafkaAdminClient(**admin_kwargs(kafka))
    try:
        await client.start()
    except Exception as exc:
        await client.close()
        raise KafkaAdminError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} (kafka.bootstrap_servers): {exc!r}"
        ) from exc
    return client


def _entries(response: Any, key: str) -> list[dict[str, Any]]:
    obj = response.to_object() if hasattr(response, "to_object") else response
    entries: list[dict[str, Any]] = obj.get(key, [])
    return entries


async def _partition_counts(client: Any, names: list[str]) -> dict[str, int]:
    """Partition count per existing topic (with a leader for every partition)."""
    described = await client.describe_topics(names)
    counts: dict[str, int] = {}
    for entry in described:
        if entry.get("error_code", 0) != 0:
            continue
        parts = entry.get("partitions", [])
        if parts and all(p.get("leader", -1) >= 0 for p in parts):
            counts[entry["topic"]] = len(parts)
    return counts


async def _cleanup_policies(client: Any, names: list[str]) -> dict[str, str]:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    if not names:
        return {}
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, {"cleanup.policy": None}) for name in names
    ]
    policies: dict[str, str] = {}
    for response in await client.describe_configs(resources):
        for resource in _entries(response, "resources"):
            for entry in resource.get("config_entries", []):
                config_name = entry.get("config_names", entry.get("config_name"))
                if config_name == "cleanup.policy":
                    policies[resource["resource_name"]] = entry.get("config_value") or "delete"
    return policies


async def acreate_topics(
    kafka: KafkaSettings,
    *,
    default_partitions: int,
    prefix: str | None = None,
    topics: Iterable[Topic] = ALL_TOPICS,
    strict: bool = True,
    timeout_s: float = 30.0,
) -> list[TopicResult]:
    """Create every declared topic that is missing and check the ones that exist.

    ``prefix`` defaults to ``kafka.topic_prefix``; partitions are
    ``Topic.partitions`` or ``default_partitions``; replication factor 1 is
    asked only when the cluster has a single broker, else the broker default.
    Returns once every partition has a leader, so producers can send at once.
    """
    from aiokafka.admin import NewTopic

    prefix = kafka.topic_prefix if prefix is None else prefix
    declared = {t.qualified(prefix): t for t in topics}
    wanted = {name: t.partitions or default_partitions for name, t in declared.items()}
    client = await _admin(kafka)
    try:
        cluster = await client.describe_cluster()
        replication = 1 if len(cluster.get("brokers", [])) <= 1 else -1
        new = [
            NewTopic(name, wanted[name], replication, topic_configs=t.config())
            for name, t in declared.items()
        ]
        response = await client.create_topics(new, timeout_ms=int(timeout_s * 1000))
        created: set[str] = set()
        for entry in _entries(response, "topic_errors"):
            code = entry.get("error_code", 0)
            if code == 0:
                created.add(entry["topic"])
            elif code != _TOPIC_ALREADY_EXISTS:
                raise KafkaAdminError(
                    f"creating topic {entry['topic']!r} failed: error {code} "
                    f"{entry.get('error_message') or ''}".rstrip()
                )

        deadline = time.monotonic() + timeout_s
        while True:
            counts = await _partition_counts(client, list(declared))
            if set(counts) == set(declared):
                break
            if time.monotonic() > deadline:
                missing = sorted(set(declared) - set(counts))
                raise KafkaAdminError(
                    f"topics without partition leaders after {timeout_s}s: {missing}"
                )
            await asyncio.sleep(0.05)
        policies = await _cleanup_policies(client, list(declared))
    finally:
        await client.close()

    results = []
    for name, topic in declared.items():
        problems = []
        if counts[name] != wanted[name]:
            problems.append(f"has {counts[name]} partitions, declared {wanted[name]}")
        is_compacted = "compact" in policies.get(name, "delete").split(",")
        if is_compacted != topic.compacted:
            want = "compact" if topic.compacted else "delete"
            problems.append(
                f"cleanup.policy is {policies.get(name, 'delete')!r}, declared {want!r}"
            )
        results.append(
            TopicResult(
                name=name,
                partitions=counts[name],
                compacted=is_compacted,
                action="created" if name in created else "exists",
                problems=tuple(problems),
            )
        )
    if strict and any(r.problems for r in results):
        raise TopicMismatchError(results)
    return results


async def adelete_topics(
    kafka: KafkaSettings,
    *,
    prefix: str | None = None,
    topics: Iterable[Topic] = ALL_TOPICS,
    timeout_s: float = 30.0,
) -> list[str]:
    """Delete the declared topics under ``prefix`` that exist; returns the names deleted.

    Meant for tests and ``--fresh`` workflows; deleting is asynchronous on the
    broker, so a topic of the same name may be briefly un-creatable afterwards.
    """
    prefix = kafka.topic_prefix if prefix is None else prefix
    names = [t.qualified(prefix) for t in topics]
    client = await _admin(kafka)
    try:
        existing = set(await client.list_topics())
        doomed = [n for n in names if n in existing]
        if not doomed:
            return []
        response = await client.delete_topics(doomed, timeout_ms=int(timeout_s * 1000))
        for entry in _entries(response, "topic_error_codes"):
            code = entry.get("error_code", 0)
            if code not in (0, _UNKNOWN_TOPIC):
                raise KafkaAdminError(f"deleting topic {entry.get('topic')!r} failed: error {code}")
        return doomed
    finally:
        await client.close()


async def alist_topics(kafka: KafkaSettings, *, internal: bool = False) -> dict[str, int]:
    """Topic name -> partition count, sorted by name; internal ``__`` topics hidden by default."""
    client = await _admin(kafka)
    try:
        described = await client.describe_topics()
    finally:
        await client.close()
    out = {
        e["topic"]: len(e.get("partitions", []))
        for e in described
        if internal or not e["topic"].startswith("__")
    }
    return dict(sorted(out.items()))


def create_topics(
    settings: Settings,
    prefix: str | None = None,
    *,
    topics: Iterable[Topic] = ALL_TOPICS,
    strict: bool = True,
) -> list[TopicResult]:
    """Synchronous :func:`acreate_topics` with partitions from ``local_kafka.partitions``."""
    return run_sync(
        acreate_topics(
            settings.kafka,
            default_partitions=settings.local_kafka.partitions,
            prefix=prefix,
            topics=topics,
            strict=strict,
        )
    )


def delete_topics(
    settings: Settings, prefix: str | None = None, *, topics: Iterable[Topic] = ALL_TOPICS
) -> list[str]:
    """Synchronous :func:`adelete_topics`."""
    return run_sync(adelete_topics(settings.kafka, prefix=prefix, topics=topics))


def list_topics(kafka: KafkaSettings, *, internal: bool = False) -> dict[str, int]:
    """Synchronous :func:`alist_topics`."""
    return run_sync(alist_topics(kafka, internal=internal))
