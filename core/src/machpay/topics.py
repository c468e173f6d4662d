"""Every Kafka topic MachPay uses, declared once.

Components never spell a topic name themselves: they take a :class:`Topic`
from here and resolve its name with the deployment's prefix. The broker tooling
creates topics from the same declarations (partitions, compaction, retention).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DAY_MS = 24 * 3600 * 1000


class Key(StrEnum):
    """What a topic's record key is; it decides which records share a partition."""

    AGENT = "agent"
    VENDOR = "vendor"
    ACCOUNT = "account"


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    key: Key
    value_schema: str
    """Full name of the Avro record in schemas/avro that every value carries."""
    description: str
    compacted: bool = False
    retention_ms: int | None = 7 * DAY_MS
    """None keeps records forever (compacted state topics)."""
    partitions: int | None = None
    """None takes the deployment default (local_kafka.partitions)."""

    def qualified(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"

    def config(self) -> dict[str, str]:
        """Topic-level broker configs for creation."""
        cfg: dict[str, str] = {}
        if self.compacted:
            cfg["cleanup.policy"] = "compact"
            cfg["min.compaction.lag.ms"] = "0"
            cfg["segment.ms"] = str(3600 * 1000)
        cfg["retention.ms"] = "-1" if self.retention_ms is None else str(self.retention_ms)
        return cfg


INTENTS_ACCEPTED = Topic(
    "intents.accepted",
    Key.AGENT,
    "machpay.IntentBatch",
    "Every intent a gateway served or ingest accepted; records carry many intents.",
)
CLIENT_LOGS = Topic(
    "client.logs",
    Key.AGENT,
    "machpay.ClientLogBatch",
    "SDK telemetry: per-call latency, status and amount.",
)
INTENTS_REJECTED = Topic(
    "intents.rejected",
    Key.AGENT,
    "machpay.RejectedIntent",
    "Dead letters with a machine-readable reason; nothing is dropped silently.",
    retention_ms=30 * DAY_MS,
)
FRAUD_PROOFS = Topic(
    "fraud.proofs",
    Key.AGENT,
    "machpay.FraudProof",
    "Two conflicting signed intents from one agent.",
    retention_ms=None,
)
AGENTS_STATUS = Topic(
    "agents.status",
    Key.AGENT,
    "machpay.AgentStatus",
    "Bond, exposure and ban state per agent; gateways keep it as a local cache.",
    compacted=True,
    retention_ms=None,
)
BATCHES_READY = Topic(
    "batches.ready",
    Key.VENDOR,
    "machpay.Batch",
    "Closed batches: Merkle root, intent ids, latest voucher per channel.",
    retention_ms=30 * DAY_MS,
)
SETTLEMENTS = Topic(
    "settlements",
    Key.VENDOR,
    "machpay.Settlement",
    "Submitted / confirmed / failed settlement transactions.",
    retention_ms=None,
)
CHAIN_EVENTS = Topic(
    "chain.events",
    Key.ACCOUNT,
    "machpay.ChainEvent",
    "BondDeposited, WithdrawRequested, BatchSettled, Slashed.",
    retention_ms=None,
)

ALL_TOPICS: tuple[Topic, ...] = (
    INTENTS_ACCEPTED,
    CLIENT_LOGS,
    INTENTS_REJECTED,
    FRAUD_PROOFS,
    AGENTS_STATUS,
    BATCHES_READY,
    SETTLEMENTS,
    CHAIN_EVENTS,
)


def by_name(name: str, prefix: str = "") -> Topic:
    """The topic whose (prefixed) name is ``name``; KeyError names what was asked."""
    for topic in ALL_TOPICS:
        if topic.qualified(prefix) == name:
            return topic
    known = ", ".join(t.qualified(prefix) for t in ALL_TOPICS)
    raise KeyError(f"unknown topic {name!r}; known topics: {known}")
