"""What this gateway remembers about payments: claimed intent ids, the last
(nonce, cumulative) per channel, and its unsettled exposure per agent.

Everything here runs on the event loop thread without awaiting, so a check
and the update that follows it are atomic with respect to other requests:
two concurrent requests with the same intent can never both pass
:meth:`IntentClaims.claim`.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from dataclasses import dataclass
from typing import Any


class IntentClaims:
    """Intent ids already served, kept until they can no longer be presented.

    An id is forgotten after ``forget_at``: the later of the intent's expiry
    (an expired intent is refused anyway) capped by how long its challenge
    stays fresh (a stale challenge is refused anyway). Memory is bounded by
    the traffic of one challenge lifetime.
    """

    def __init__(self) -> None:
        self._ids: set[bytes] = set()
        self._expiry: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, intent_id: object) -> bool:
        return intent_id in self._ids

    def claim(self, intent_id: bytes, forget_at: float, now: float) -> bool:
        """True if the id was free and is now claimed; False if already served."""
        self.evict(now)
        if intent_id in self._ids:
            return False
        self._ids.add(intent_id)
        heapq.heappush(self._expiry, (forget_at, intent_id))
        return True

    def release(self, intent_id: bytes) -> None:
        """Un-claim (the call was not served). The heap entry expires harmlessly."""
        self._ids.discard(intent_id)

    def evict(self, now: float) -> None:
        heap = self._expiry
        while heap and heap[0][0] < now:
            _, intent_id = heapq.heappop(heap)
            self._ids.discard(intent_id)


@dataclass(slots=True)
class ChannelState:
    nonce: int
    cumulative: int


class ChannelLedger:
    """The last (nonce, cumulative) this gateway accepted on each channel.

    The next intent on a channel must carry a higher nonce and a cumulative of
    at least ``last cumulative + amount``. Lower is what docs/protocol.md calls
    channel inconsistency (refused, and the corrective 402 says what the
    gateway holds). Higher is a gap the protocol allows: intents the agent
    signed that this gateway refused (a stale challenge, an exposure cap) still
    moved the agent's channel, and the agent may never sign lower again. The
    gap is paid by the agent, so it counts towards its exposure
    (:meth:`increment`). A channel this gateway has not seen accepts any
    well-formed first intent.
    """

    def __init__(self) -> None:
        self._channels: dict[bytes, ChannelState] = {}

    def get(self, channel: bytes) -> ChannelState | None:
        return self._channels.get(channel)

    def check(self, channel: bytes, nonce: int, cumulative: int, amount: int) -> str | None:
        state = self._channels.get(channel)
        if state is None:
            return None
        if nonce <= state.nonce:
            return f"nonce {nonce} is not above the last accepted nonce {state.nonce}"
        if cumulative < state.cumulative + amount:
            return (
                f"cumulative {cumulative} is below the last cumulative {state.cumulative} "
                f"plus amount {amount}"
            )
        return None

    def increment(self, channel: bytes, cumulative: int, amount: int) -> int:
        """What accepting this intent adds to what the vendor can claim on the channel."""
        state = self._channels.get(channel)
        return amount if state is None else cumulative - state.cumulative

    def advance(self, channel: bytes, nonce: int, cumulative: int) -> ChannelState | None:
        """Record an accepted intent; returns the previous state (for :meth:`rollback`)."""
        previous = self._channels.get(channel)
        self._channels[channel] = ChannelState(nonce, cumulative)
        return previous

    def rollback(self, channel: bytes, nonce: int, previous: ChannelState | None) -> None:
        """Undo :meth:`advance` if nothing was accepted on the channel since."""
        state = self._channels.get(channel)
        if state is None or state.nonce != nonce:
            return
        if previous is None:
            del self._channels[channel]
        else:
            self._channels[channel] = previous


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """The part of ``machpay.AgentStatus`` a gateway decides on."""

    agent: bytes
    bond: int
    exposure: int
    pending_withdrawal: int
    banned: bool
    insolvent: bool
    ban_reason: str | None
    version: int
    updated_at_ms: int

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AgentStatus:
        pending = record.get("pending_withdrawal")
        return cls(
            agent=bytes(record["agent"]),
            bond=int(record["bond"]),
            exposure=int(record["exposure"]),
            pending_withdrawal=int(pending["amount"]) if pending else 0,
            banned=bool(record["banned"]),
            insolvent=bool(record["insolvent"]),
            ban_reason=record.get("ban_reason"),
            version=int(record["version"]),
            updated_at_ms=int(record["updated_at_ms"]),
        )

    @property
    def free_bond(self) -> int:
        """What the bond can still back: bond - pending withdrawal - unsettled exposure."""
        return max(0, self.bond - self.pending_withdrawal - self.exposure)


class ExposureBook:
    """Per agent: the latest status (from agents.status) and what this gateway
    served since that status was computed.

    The status's ``exposure`` already counts what the streams had seen of this
    gateway's intents when it was computed; what was served after
    ``updated_at_ms`` is not in it yet, so this gateway caps *that* at its
    share of the free bond::

        served since status + amount <= floor(share * free_bond)

    An agent without a status may owe this gateway ``unknown_allowance`` in
    all (everything served to it counts); 0 refuses unknown agents.
    """

    def __init__(self, *, share: float, unknown_allowance: int) -> None:
        self.share = share
        self.unknown_allowance = unknown_allowance
        self._status: dict[bytes, AgentStatus] = {}
        self._served: dict[bytes, deque[tuple[int, int]]] = {}  # agent -> (at_ms, amount)
        self._served_total: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._status)

    def status(self, agent: bytes) -> AgentStatus | None:
        return self._status.get(agent)

    def update(self, status: AgentStatus) -> None:
        """Keep the status with the highest version; drop served amounts it covers."""
        current = self._status.get(status.agent)
        if current is not None and current.version >= status.version:
            return
        self._status[status.agent] = status
        served = self._served.get(status.agent)
        if served:
            total = self._served_total[status.agent]
            while served and served[0][0] <= status.updated_at_ms:
                total -= served.popleft()[1]
            self._served_total[status.agent] = total

    def outstanding(self, agent: bytes) -> int:
        """What this gateway served to the agent that no status accounts for yet."""
        return self._served_total.get(agent, 0)

    def cap(self, agent: bytes) -> int | None:
        """This gateway's cap for the agent; None when the agent has no status."""
        status = self._status.get(agent)
        if status is None:
            return None
        return int(self.share * status.free_bond)

    def check(self, agent: bytes, amount: int) -> tuple[str, str] | None:
        """None if serving ``amount`` more is allowed, else (reason code, detail)."""
        status = self._status.get(agent)
        owed = self.outstanding(agent) + amount
        if status is None:
            if owed > self.unknown_allowance:
                return (
                    "agent_unknown",
                    f"no bond known for this agent; unknown agents may owe this gateway "
                    f"{self.unknown_allowance} lamports and this call would make {owed}",
                )
            return None
        if status.banned or status.insolvent:
            why = status.ban_reason or ("insolvent" if status.insolvent else "banned")
            return ("agent_banned", f"agent is refused: {why}")
        cap = int(self.share * status.free_bond)
        if owed > cap:
            return (
                "exposure_cap",
                f"unsettled exposure at this gateway would be {owed} lamports, cap {cap} "
                f"({self.share:g} of free bond {status.free_bond})",
            )
        return None

    def record(self, agent: bytes, amount: int, at_ms: int | None = None) -> None:
        at = int(time.time() * 1000) if at_ms is None else at_ms
        self._served.setdefault(agent, deque()).append((at, amount))
        self._served_total[agent] = self._served_total.get(agent, 0) + amount

    def unrecord(self, agent: bytes, amount: int) -> None:
        """Take back the latest :meth:`record` of ``amount`` (call not served)."""
        served = self._served.get(agent)
        if not served:
            return
        for index in range(len(served) - 1, -1, -1):
            if served[index][1] == amount:
                del served[index]
                self._served_total[agent] -= amount
                return
