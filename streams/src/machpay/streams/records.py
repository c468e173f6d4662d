"""The core's outputs as Avro values of the MachPay schemas."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from machpay.protocol import FraudProof
from machpay.streams.state import AgentSnapshot, ClosedBatch, CloseReason, Rejection

SOURCE = "streams"
FLUSH_PREFIX = "machpay-streams:flush:"
"""``producer`` of an empty IntentBatch that closes open batches of its partition."""


def flush_marker(reason: CloseReason, agents: Iterable[bytes] = ()) -> str:
    """The ``producer`` of a flush marker; with agents, only batches holding one close."""
    scope = ",".join(sorted(a.hex() for a in agents))
    return f"{FLUSH_PREFIX}{reason.value}:{scope}" if scope else FLUSH_PREFIX + reason.value


def parse_flush(producer: str) -> tuple[CloseReason, set[bytes] | None]:
    """(reason, agents or None for all) of a flush marker; unknown reasons count as AGE."""
    name, _, scope = producer[len(FLUSH_PREFIX) :].partition(":")
    reason = CloseReason(name) if name in CloseReason.__members__ else CloseReason.AGE
    agents: set[bytes] = set()
    for part in scope.split(","):
        try:
            agents.add(bytes.fromhex(part))
        except ValueError:
            continue
    agents.discard(b"")
    return reason, (agents or None)


def fraud_proof(proof: FraudProof, *, detected_by: str, now_ms: int) -> dict[str, Any]:
    return {
        "proof_id": proof.proof_id,
        "kind": proof.kind.name,
        "agent": proof.agent,
        "first": {"message": proof.first.message, "signature": proof.first.signature},
        "second": {"message": proof.second.message, "signature": proof.second.signature},
        "detected_at_ms": now_ms,
        "detected_by": detected_by,
    }


def agent_status(agent: bytes, snap: AgentSnapshot, *, version: int, now_ms: int) -> dict[str, Any]:
    pending = snap.pending_withdrawal
    return {
        "agent": agent,
        "bond": snap.bond,
        "pending_withdrawal": None
        if pending is None
        else {"amount": pending[0], "unlock_at": pending[1]},
        "settled": snap.settled,
        "exposure": snap.exposure,
        "banned": snap.banned,
        "ban_reason": snap.ban_reason,
        "insolvent": snap.insolvent,
        "version": version,
        "updated_at_ms": now_ms,
    }


def batch(closed: ClosedBatch) -> dict[str, Any]:
    return {
        "batch_id": closed.batch_id,
        "vendor": closed.vendor,
        "root": closed.root,
        "leaf_count": closed.leaf_count,
        "total": closed.total,
        "intent_ids": list(closed.intent_ids),
        "vouchers": [
            {
                "channel": v.intent.channel,
                "agent": v.agent,
                "message": v.message,
                "signature": v.signature,
                "cumulative": v.intent.cumulative,
            }
            for v in closed.vouchers
        ],
        "close_reason": closed.close_reason.value,
        "opened_at_ms": closed.opened_at_ms,
        "closed_at_ms": closed.closed_at_ms,
    }


def origin(topic: str, partition: int, offset: int) -> dict[str, Any]:
    return {"topic": topic, "partition": partition, "offset": offset}


def rejected(
    rejection: Rejection, *, topic: str, partition: int, offset: int, now_ms: int
) -> dict[str, Any]:
    signed = rejection.intent.signed
    return {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "field": rejection.field,
        "source": SOURCE,
        "at_ms": now_ms,
        "agent": signed.agent,
        "message": signed.message,
        "signature": signed.signature,
        "raw": None,
        "origin": origin(topic, partition, offset),
    }


def rejected_raw(
    record: dict[str, Any],
    *,
    reason: str,
    detail: str,
    field: str | None,
    topic: str,
    partition: int,
    offset: int,
    now_ms: int,
) -> dict[str, Any]:
    """A dead letter for an intent inside a record that could not even be built."""
    agent = record.get("agent")
    return {
        "reason": reason,
        "detail": detail,
        "field": field,
        "source": SOURCE,
        "at_ms": now_ms,
        "agent": agent if isinstance(agent, bytes) and len(agent) == 32 else None,
        "message": record.get("message"),
        "signature": record.get("signature"),
        "raw": None,
        "origin": origin(topic, partition, offset),
    }
