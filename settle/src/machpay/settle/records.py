"""The settler's outputs as Avro values of machpay.Settlement and machpay.ChainEvent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "ChainEventKind",
    "ChannelOutcome",
    "SettlementStatus",
    "chain_event",
    "settlement",
]


class SettlementStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"


class ChainEventKind(StrEnum):
    BOND_DEPOSITED = "BOND_DEPOSITED"
    WITHDRAW_REQUESTED = "WITHDRAW_REQUESTED"
    WITHDRAWN = "WITHDRAWN"
    BATCH_SETTLED = "BATCH_SETTLED"
    SLASHED = "SLASHED"
    VENDOR_REGISTERED = "VENDOR_REGISTERED"
    SERVICE_UPDATED = "SERVICE_UPDATED"
    AGENT_INSOLVENT = "AGENT_INSOLVENT"
    """machpay.ChainEvent v2: a settlement found the bond short (MachPay ``AgentInsolvent``)."""


@dataclass(frozen=True, slots=True)
class ChannelOutcome:
    """What one settlement did to one channel, read from the program's event."""

    channel: bytes
    agent: bytes
    settled_cumulative: int
    paid: int


def settlement(
    *,
    batch_id: bytes,
    vendor: bytes,
    status: SettlementStatus,
    at_ms: int,
    signature: str | None = None,
    slot: int | None = None,
    reason: str | None = None,
    channels: Sequence[ChannelOutcome] = (),
) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "vendor": vendor,
        "status": status.value,
        "signature": signature,
        "slot": slot,
        "reason": reason,
        "channels": [
            {
                "channel": c.channel,
                "agent": c.agent,
                "settled_cumulative": c.settled_cumulative,
                "paid": c.paid,
            }
            for c in channels
        ],
        "at_ms": at_ms,
    }


@dataclass(frozen=True, slots=True)
class ChainFact:
    """One program event as a chain.events record (key = account)."""

    kind: ChainEventKind
    account: bytes
    amount: int
    agent: bytes | None = None
    vendor: bytes | None = None
    batch_id: bytes | None = None
    unlock_at: int | None = None


def chain_event(fact: ChainFact, *, slot: int, signature: str, at_ms: int) -> dict[str, Any]:
    return {
        "kind": fact.kind.value,
        "account": fact.account,
        "agent": fact.agent,
        "vendor": fact.vendor,
        "amount": fact.amount,
        "slot": slot,
        "signature": signature,
        "at_ms": at_ms,
        "batch_id": fact.batch_id,
        "unlock_at": fact.unlock_at,
    }
