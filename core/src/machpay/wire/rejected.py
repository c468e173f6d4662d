"""The one constructor of ``machpay.RejectedIntent`` values (intents.rejected).

Gateway refusals, ingest's per-record errors, undecodable Kafka records and
the stream workers' rejections all become the same dead letter; building it in
one place keeps the field rules (raw bytes bounded, origin only for Kafka
input) the same everywhere.
"""

from __future__ import annotations

from typing import Any

#: Raw input kept in a dead letter, at most: enough to inspect or replay a
#: header or a small body, never a whole oversized request.
MAX_RAW = 4_096


def record_origin(topic: str, partition: int, offset: int) -> dict[str, Any]:
    """Coordinates of the Kafka record a rejection was read from."""
    return {"topic": topic, "partition": partition, "offset": offset}


def dead_letter(
    *,
    reason: str,
    detail: str,
    source: str,
    at_ms: int,
    field: str | None = None,
    agent: bytes | None = None,
    message: bytes | None = None,
    signature: bytes | None = None,
    raw: bytes | None = None,
    origin: dict[str, Any] | None = None,
    max_raw: int | None = MAX_RAW,
) -> dict[str, Any]:
    """A ``machpay.RejectedIntent`` value; ``raw`` is cut to ``max_raw`` bytes
    (``None`` keeps it whole: an undecodable Kafka record is kept verbatim)."""
    if agent is not None and len(agent) != 32:
        agent = None  # unknown rather than wrong: the key field is a 32-byte Pubkey
    if raw is not None and max_raw is not None:
        raw = raw[:max_raw]
    return {
        "reason": reason,
        "detail": detail,
        "field": field,
        "source": source,
        "at_ms": at_ms,
        "agent": agent,
        "message": message,
        "signature": signature,
        "raw": raw,
        "origin": origin,
    }
