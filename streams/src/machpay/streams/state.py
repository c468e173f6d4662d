"""The framework-free processing core: dedupe, fraud checks, batching, exposure.

Everything here is a pure function of the records applied, in order; no I/O,
no clocks except the ``now_ms`` passed in (which only fills timestamps, never
decides anything). That is what makes redelivery safe: replaying a partition
from its start rebuilds exactly the state a crashed worker had, and replaying
past the last commit re-emits byte-identical proofs and batches (same
``proof_id``, same ``batch_id``) that downstream deduplicates.

Per partition of ``intents.accepted`` (all of one agent's intents land in one
partition) :class:`PartitionState` keeps, per agent:

* nonce -> signed intent: same nonce and same id is a duplicate (dropped),
  same nonce and another id is equivocation;
* per channel the accepted intents sorted by nonce. In a consistent set the
  cumulative strictly increases with the nonce, so a new intent is checked
  against its immediate predecessor and successor only (bisect); a violating
  intent yields one channel-inconsistency proof and is kept out of the set,
  so the set stays consistent and the neighbour argument stays valid.

Every intent that is not a duplicate and has a valid signature goes into
exactly one batch of its vendor (fraudulent ones too: the vendor served
them; the proof handles the slash). A batch closes when it reaches
``batch_size`` leaves, or when the log says so (:meth:`PartitionState.flush`,
driven by flush markers written into the partition itself, so a replay
cuts batches at the very same places).
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from machpay.protocol import (
    FraudProof,
    MerkleTree,
    ProtocolError,
    SignedIntent,
    detect_equivocation,
    detect_inconsistency,
)
from machpay.wire.intents import AcceptedIntent

_BATCH_TAG = b"machpay:batch:v1"


class CloseReason(StrEnum):
    SIZE = "SIZE"
    AGE = "AGE"
    WITHDRAWAL = "WITHDRAWAL"
    SHUTDOWN = "SHUTDOWN"


def batch_id(vendor: bytes, root: bytes, leaf_count: int) -> bytes:
    """H(tag || vendor || root || leaf_count): the same content always has the same id."""
    return hashlib.sha256(_BATCH_TAG + vendor + root + struct.pack("<Q", leaf_count)).digest()


@dataclass(frozen=True, slots=True)
class ClosedBatch:
    """A closed batch of one vendor's intents, ready for ``batches.ready``."""

    vendor: bytes
    intent_ids: tuple[bytes, ...]
    root: bytes
    total: int
    vouchers: tuple[SignedIntent, ...]
    close_reason: CloseReason
    opened_at_ms: int
    closed_at_ms: int

    @property
    def leaf_count(self) -> int:
        return len(self.intent_ids)

    @property
    def batch_id(self) -> bytes:
        return batch_id(self.vendor, self.root, len(self.intent_ids))


@dataclass(frozen=True, slots=True)
class Rejection:
    """An intent the core refused (bad signature); it enters no state and no batch."""

    intent: AcceptedIntent
    reason: str
    field: str | None
    detail: str


@dataclass(slots=True)
class ChunkResult:
    """What applying one chunk of intents produced."""

    proofs: list[FraudProof] = field(default_factory=list)
    batches: list[ClosedBatch] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: int = 0
    accepted: int = 0
    touched: set[bytes] = field(default_factory=set)
    """Agents whose exposure or ban state may have changed."""


class ChannelLog:
    """One channel's consistent intents, sorted by nonce."""

    __slots__ = ("cums", "intents", "latest", "nonces")

    def __init__(self) -> None:
        self.nonces: list[int] = []
        self.cums: list[int] = []
        self.intents: list[SignedIntent] = []
        self.latest: SignedIntent | None = None

    def check_and_insert(self, signed: SignedIntent) -> FraudProof | None:
        """Insert ``signed`` if consistent with its neighbours, else return the proof."""
        intent = signed.intent
        nonce, cum, amount = intent.nonce, intent.cumulative, intent.amount
        nonces = self.nonces
        if not nonces or nonce > nonces[-1]:  # the common, honest case: append
            if nonces and cum < self.cums[-1] + amount:
                return detect_inconsistency(self.intents[-1], signed)
            nonces.append(nonce)
            self.cums.append(cum)
            self.intents.append(signed)
            self.latest = signed
            return None
        i = bisect.bisect_left(nonces, nonce)
        if i > 0 and cum < self.cums[i - 1] + amount:
            return detect_inconsistency(self.intents[i - 1], signed)
        if i < len(nonces) and self.cums[i] < cum + self.intents[i].intent.amount:
            return detect_inconsistency(signed, self.intents[i])
        nonces.insert(i, nonce)
        self.cums.insert(i, cum)
        self.intents.insert(i, signed)
        if self.latest is None or cum > self.latest.intent.cumulative:
            self.latest = signed
        return None


class AgentState:
    """Everything known about one agent's intents in this partition."""

    __slots__ = ("ban_reason", "channels", "nonces", "proof_ids", "twins")

    def __init__(self) -> None:
        self.nonces: dict[int, SignedIntent] = {}
        self.twins: set[bytes] = set()
        """Ids of the further messages seen for an already used nonce (equivocations)."""
        self.channels: dict[bytes, ChannelLog] = {}
        self.proof_ids: set[bytes] = set()
        self.ban_reason: str | None = None

    def latest_cumulatives(self) -> dict[bytes, int]:
        return {
            ch: log.latest.intent.cumulative
            for ch, log in self.channels.items()
            if log.latest is not None
        }


class OpenBatch:
    __slots__ = ("agents", "channels", "ids", "opened_at_ms", "total")

    def __init__(self, opened_at_ms: int) -> None:
        self.ids: list[bytes] = []
        self.total = 0
        self.channels: dict[bytes, bytes] = {}
        """channel -> agent, in first-seen order."""
        self.agents: set[bytes] = set()
        self.opened_at_ms = opened_at_ms


class PartitionState:
    """In-memory state of one partition of ``intents.accepted``."""

    def __init__(self, *, batch_size: int = 10_000, verify_signatures: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.verify_signatures = verify_signatures
        self.agents: dict[bytes, AgentState] = {}
        self.open: dict[bytes, OpenBatch] = {}
        """vendor -> open batch, in opening order."""

    # -- intents --------------------------------------------------------------

    def apply(self, intents: Iterable[AcceptedIntent], now_ms: int) -> ChunkResult:
        """Apply a chunk of intents in order."""
        out = ChunkResult()
        agents = self.agents
        for accepted in intents:
            signed = accepted.signed
            agent = signed.agent
            state = agents.get(agent)
            if state is None:
                state = agents[agent] = AgentState()
            nonce = signed.intent.nonce
            seen = state.nonces.get(nonce)
            if seen is not None and (seen.id == signed.id or signed.id in state.twins):
                out.duplicates += 1
                continue
            if self.verify_signatures:
                try:
                    signed.verify()
                except ProtocolError as exc:
                    out.rejected.append(Rejection(accepted, exc.reason.value, exc.field, str(exc)))
                    continue
            out.accepted += 1
            out.touched.add(agent)
            if seen is not None:
                state.twins.add(signed.id)
                proof = detect_equivocation(seen, signed)
            else:
                state.nonces[nonce] = signed
                log = state.channels.get(signed.intent.channel)
                if log is None:
                    log = state.channels[signed.intent.channel] = ChannelLog()
                proof = log.check_and_insert(signed)
            if proof is not None and proof.proof_id not in state.proof_ids:
                state.proof_ids.add(proof.proof_id)
                if state.ban_reason is None:
                    state.ban_reason = f"{proof.kind.name.lower()} {proof.proof_id.hex()}"
                out.proofs.append(proof)
            self._add_to_batch(accepted, now_ms, out)
        return out

    def _add_to_batch(self, accepted: AcceptedIntent, now_ms: int, out: ChunkResult) -> None:
        vendor = accepted.vendor
        batch = self.open.get(vendor)
        if batch is None:
            batch = self.open[vendor] = OpenBatch(now_ms)
        signed = accepted.signed
        batch.ids.append(signed.id)
        batch.total += signed.intent.amount
        batch.channels.setdefault(signed.intent.channel, signed.agent)
        batch.agents.add(signed.agent)
        if len(batch.ids) >= self.batch_size:
            out.batches.append(self._close(vendor, CloseReason.SIZE, now_ms))

    # -- batches --------------------------------------------------------------

    def _close(self, vendor: bytes, reason: CloseReason, now_ms: int) -> ClosedBatch:
        batch = self.open.pop(vendor)
        vouchers: list[SignedIntent] = []
        for channel, agent in batch.channels.items():
            log = self.agents[agent].channels.get(channel)
            if log is not None and log.latest is not None:
                vouchers.append(log.latest)
        return ClosedBatch(
            vendor=vendor,
            intent_ids=tuple(batch.ids),
            root=MerkleTree(batch.ids).root,
            total=batch.total,
            vouchers=tuple(vouchers),
            close_reason=reason,
            opened_at_ms=batch.opened_at_ms,
            closed_at_ms=now_ms,
        )

    def flush(
        self, reason: CloseReason, now_ms: int, *, agents: set[bytes] | None = None
    ) -> list[ClosedBatch]:
        """Close the open batches (all, or those holding one of ``agents``): a flush marker."""
        return [
            self._close(vendor, reason, now_ms)
            for vendor, batch in list(self.open.items())
            if agents is None or batch.agents & agents
        ]

    def oldest_open_ms(self) -> int | None:
        return min((b.opened_at_ms for b in self.open.values()), default=None)

    def open_agents(self) -> set[bytes]:
        agents: set[bytes] = set()
        for batch in self.open.values():
            agents |= batch.agents
        return agents


# -- exposure ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """The fields of ``machpay.AgentStatus`` that decide whether it changed."""

    bond: int
    pending_withdrawal: tuple[int, int] | None
    settled: int
    exposure: int
    banned: bool
    ban_reason: str | None
    insolvent: bool


class Ledger:
    """Chain facts (bond, withdrawals, insolvency) and settlements, for every agent.

    Fed from ``chain.events`` and ``settlements``, each read whole by every
    worker; repeated records (redelivery) are recognised by their identity
    and change nothing.

    Insolvency comes only from ``AGENT_INSOLVENT`` facts (the program's
    ``AgentInsolvent``: a settlement found the bond short). It mirrors the
    Bond's ``insolvent`` flag, which the program never clears: a later
    deposit refills the bond (and lets the same voucher collect the rest)
    but the agent stays insolvent. Settlement rows cannot tell: the program
    advances ``settled`` by exactly what it paid, so ``paid`` always equals
    the increase of ``settled_cumulative``, and a row that seems to say
    otherwise only means an earlier row never reached this Ledger.
    """

    def __init__(self) -> None:
        self.bond: dict[bytes, int] = {}
        self.pending: dict[bytes, tuple[int, int]] = {}
        self.paid: dict[bytes, int] = {}
        self.insolvent: set[bytes] = set()
        self.settled: dict[bytes, int] = {}
        """channel -> settled cumulative."""
        self._seen: set[tuple[object, ...]] = set()

    def agents(self) -> set[bytes]:
        """Every agent some fact was recorded for (bond, withdrawal, payment, insolvency)."""
        return set(self.bond) | set(self.pending) | set(self.paid) | self.insolvent

    def chain_event(
        self,
        kind: str,
        agent: bytes | None,
        amount: int,
        *,
        signature: str,
        account: bytes,
        unlock_at: int | None = None,
    ) -> bytes | None:
        """Apply one event; returns the agent whose status may have changed."""
        key = ("chain", kind, account, signature)
        if agent is None or key in self._seen:
            return None
        self._seen.add(key)
        if kind == "BOND_DEPOSITED":
            self.bond[agent] = self.bond.get(agent, 0) + amount
        elif kind == "WITHDRAW_REQUESTED":
            self.pending[agent] = (amount, unlock_at or 0)
        elif kind in ("WITHDRAWN", "SLASHED"):
            self.bond[agent] = max(0, self.bond.get(agent, 0) - amount)
            if kind == "WITHDRAWN":
                self.pending.pop(agent, None)
        elif kind == "AGENT_INSOLVENT":
            if agent in self.insolvent:
                return None  # already refused: a further short settlement changes no status
            self.insolvent.add(agent)
        else:
            return None  # other kinds (and UNKNOWN: a kind added after this code) move no status
        return agent

    def settlement(
        self, batch: bytes, status: str, channels: Iterable[tuple[bytes, bytes, int, int]]
    ) -> set[bytes]:
        """Apply a settlement's (channel, agent, settled_cumulative, paid) rows if CONFIRMED."""
        if status != "CONFIRMED":
            return set()
        touched: set[bytes] = set()
        for channel, agent, settled_cumulative, paid in channels:
            key = ("settlement", batch, channel)
            if key in self._seen:
                continue
            self._seen.add(key)
            if settled_cumulative > self.settled.get(channel, 0):
                self.settled[channel] = settled_cumulative
            self.paid[agent] = self.paid.get(agent, 0) + paid
            touched.add(agent)
        return touched

    def snapshot(self, agent: bytes, state: AgentState | None) -> AgentSnapshot:
        exposure = 0
        if state is not None:
            for channel, cumulative in state.latest_cumulatives().items():
                exposure += max(0, cumulative - self.settled.get(channel, 0))
        # What GlobalBond holds now: every lamport that left the bond did so
        # through one of these facts (a slash takes what was left after the
        # payments before it, so nothing is counted twice). Gateways cap their
        # exposure on this figure: without the payments it overstated the free
        # bond by everything already settled.
        paid = self.paid.get(agent, 0)
        return AgentSnapshot(
            bond=max(0, self.bond.get(agent, 0) - paid),
            pending_withdrawal=self.pending.get(agent),
            settled=paid,
            exposure=exposure,
            banned=state is not None and state.ban_reason is not None,
            ban_reason=state.ban_reason if state is not None else None,
            insolvent=agent in self.insolvent,
        )


class StatusBook:
    """Publishes an agent's status only when it changed, with a monotonic version.

    The version is ``max(previous + 1, now_ms)``: a worker that rebuilt its
    state after a restart starts above anything published before it (clocks
    permitting), without having to read ``agents.status`` back.
    """

    def __init__(self) -> None:
        self.last: dict[bytes, tuple[AgentSnapshot, int]] = {}

    def update(self, agent: bytes, snap: AgentSnapshot, now_ms: int) -> int | None:
        """The new version if ``snap`` differs from the last published one, else None."""
        prev = self.last.get(agent)
        if prev is not None and prev[0] == snap:
            return None
        version = max((prev[1] + 1) if prev else 1, now_ms)
        self.last[agent] = (snap, version)
        return version
