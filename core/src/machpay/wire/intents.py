"""Accepted intents on the wire: the typed view of ``machpay.IntentBatch``.

A record carries many intents (see machpay.kafka.packing for how producers
group them by partition).

The signed 97-byte message is the single source of truth: nonce, amount,
cumulative and the rest are decoded from it, never duplicated in the record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from machpay.protocol import ProtocolError, Reason, SignedIntent

Source = Literal["GATEWAY", "INGEST"]


@dataclass(frozen=True, slots=True)
class AcceptedIntent:
    """A signed intent a gateway served (or ingest validated), with its context."""

    signed: SignedIntent
    vendor: bytes
    service: str
    route: str
    accepted_at_ms: int
    source: Source = "GATEWAY"

    @property
    def id(self) -> bytes:
        return self.signed.id

    @property
    def agent(self) -> bytes:
        return self.signed.agent

    def to_record(self) -> dict[str, Any]:
        """The ``machpay.AcceptedIntent`` Avro value."""
        return {
            "id": self.signed.id,
            "message": self.signed.message,
            "signature": self.signed.signature,
            "agent": self.signed.agent,
            "vendor": self.vendor,
            "service": self.service,
            "route": self.route,
            "accepted_at_ms": self.accepted_at_ms,
            "source": self.source,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AcceptedIntent:
        """Rebuild from an Avro value; the id must be the hash of the message.

        Raises ProtocolError (bad_field ``id``) when a producer carried an id
        that is not SHA-256 of the message: dedupe keys must never be trusted
        from the wire.
        """
        signed = SignedIntent(record["message"], record["signature"], record["agent"])
        if signed.id != record["id"]:
            raise ProtocolError(
                Reason.BAD_FIELD, "id", "record id is not the SHA-256 of its message"
            )
        return cls(
            signed=signed,
            vendor=record["vendor"],
            service=record["service"],
            route=record["route"],
            accepted_at_ms=record["accepted_at_ms"],
            source=record["source"],
        )


def intent_batch(intents: list[AcceptedIntent], *, producer: str, now_ms: int) -> dict[str, Any]:
    """The ``machpay.IntentBatch`` Avro value carrying ``intents``."""
    return {
        "producer": producer,
        "produced_at_ms": now_ms,
        "intents": [i.to_record() for i in intents],
    }


def unpack(batch: dict[str, Any]) -> Iterator[AcceptedIntent]:
    """Every intent of a decoded ``machpay.IntentBatch`` value, in order."""
    for record in batch["intents"]:
        yield AcceptedIntent.from_record(record)
