"""What the settler does next, and which offsets it may commit.

Two small pure structures:

* :class:`WorkQueue`: batches and proofs waiting to be submitted. A batch that
  holds a channel of an agent with a pending withdrawal goes first (its bond
  must be charged before the timelock ends), then everything else in arrival
  order. An agent whose withdrawal shows up later promotes the batches
  already waiting. A fraud proof can be *held* (:meth:`WorkQueue.hold`): its
  agent's batches are promoted the same way, and the proof comes out only
  once its grace period is over and none of that agent's batches is left
  waiting, so the vendors it served are paid from the bond before the slash
  takes the rest.
* :class:`OffsetTracker`: work finishes out of order (priorities), but Kafka
  commits one offset per partition, so only the contiguous prefix of finished
  records is committed. A crash redelivers the unfinished rest, which the
  settler re-checks against the chain before submitting anything.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["OffsetTracker", "WorkQueue"]

K = TypeVar("K", bound=Hashable)
W = TypeVar("W")

URGENT = 0
NORMAL = 1


@dataclass(slots=True)
class _Held(Generic[W]):
    item: W
    agent: bytes
    release_at: float


@dataclass(order=True, slots=True)
class _Entry(Generic[W]):
    priority: int
    seq: int
    item: W = field(compare=False)
    agents: frozenset[bytes] = field(compare=False)
    live: bool = field(default=True, compare=False)


class WorkQueue(Generic[W]):
    """A priority queue of work items, each tagged with the agents it touches.

    Agents are *hurried* while they have a pending withdrawal or a held proof:
    every batch touching them, waiting or pushed later, is urgent.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._heap: list[_Entry[W]] = []
        self._seq = itertools.count()
        self._withdrawing: set[bytes] = set()
        self._held: list[_Held[W]] = []
        self._slashing: Counter[bytes] = Counter()
        self._waiting: Counter[bytes] = Counter()  # live entries per tagged agent
        self._clock = clock
        self._live = 0

    def __len__(self) -> int:
        """Every item not popped yet, held proofs included."""
        return self._live + len(self._held)

    @property
    def withdrawing(self) -> frozenset[bytes]:
        return frozenset(self._withdrawing)

    @property
    def held(self) -> int:
        return len(self._held)

    def _hurried(self, tags: frozenset[bytes]) -> bool:
        return any(a in self._withdrawing or self._slashing[a] > 0 for a in tags)

    def push(self, item: W, agents: Iterable[bytes], *, urgent: bool = False) -> None:
        tags = frozenset(agents)
        priority = URGENT if urgent or self._hurried(tags) else NORMAL
        heapq.heappush(self._heap, _Entry(priority, next(self._seq), item, tags))
        self._waiting.update(tags)
        self._live += 1

    def hold(self, item: W, agent: bytes, grace_seconds: float) -> int:
        """Keep ``item`` (a proof against ``agent``) out of :meth:`pop` for ``grace_seconds``,
        then until no batch of ``agent`` waits; returns how many waiting items were promoted.

        Batches of ``agent`` pushed meanwhile are urgent, so they settle first.
        """
        promoted = self._promote(agent)
        self._slashing[agent] += 1
        self._held.append(_Held(item, agent, self._clock() + grace_seconds))
        return promoted

    def withdrawal_requested(self, agent: bytes) -> int:
        """Mark ``agent`` as withdrawing; returns how many waiting items were promoted."""
        self._withdrawing.add(agent)
        return self._promote(agent)

    def _promote(self, agent: bytes) -> int:
        promoted = 0
        for entry in list(self._heap):
            if entry.live and entry.priority != URGENT and agent in entry.agents:
                # Lazy deletion: the old entry stays in the heap, dead.
                entry.live = False
                heapq.heappush(self._heap, _Entry(URGENT, entry.seq, entry.item, entry.agents))
                promoted += 1
        return promoted

    def withdrawal_done(self, agent: bytes) -> None:
        self._withdrawing.discard(agent)

    def _released(self) -> _Held[W] | None:
        """The first held item whose grace is over and whose agent has no batch waiting."""
        now = self._clock()
        for held in self._held:
            if held.release_at <= now and self._waiting[held.agent] == 0:
                return held
        return None

    def ready(self) -> bool:
        """Whether :meth:`pop` would return an item now (held ones may still be waiting)."""
        return self._live > 0 or self._released() is not None

    def next_release_in(self) -> float | None:
        """Seconds until the earliest held item's grace ends (0 if over); None if none held."""
        if not self._held:
            return None
        return max(0.0, min(h.release_at for h in self._held) - self._clock())

    def pop(self) -> W | None:
        """A released proof first (proofs outrank batches, as before), then by priority."""
        held = self._released()
        if held is not None:
            self._held.remove(held)
            self._slashing[held.agent] -= 1
            if self._slashing[held.agent] <= 0:
                del self._slashing[held.agent]
            return held.item
        while self._heap:
            entry = heapq.heappop(self._heap)
            if entry.live:
                self._live -= 1
                for agent in entry.agents:
                    self._waiting[agent] -= 1
                    if self._waiting[agent] <= 0:
                        del self._waiting[agent]  # keep the counter to agents still waiting
                return entry.item
        return None

    def urgent_first(self, agents_in_order: Iterable[bytes]) -> list[bytes]:
        """``agents_in_order`` reordered: withdrawing agents first, order otherwise kept."""
        agents = list(agents_in_order)
        return [a for a in agents if a in self._withdrawing] + [
            a for a in agents if a not in self._withdrawing
        ]


class OffsetTracker(Generic[K]):
    """Per partition: which fetched offsets are finished; the committable next offset."""

    def __init__(self) -> None:
        self._pending: dict[K, set[int]] = {}
        self._done: dict[K, set[int]] = {}

    def fetched(self, partition: K, offset: int) -> None:
        self._pending.setdefault(partition, set()).add(offset)
        self._done.setdefault(partition, set())

    def finished(self, partition: K, offset: int) -> None:
        pending = self._pending.get(partition)
        if pending is None or offset not in pending:
            raise KeyError(f"offset {offset} of {partition!r} was never fetched")
        pending.discard(offset)
        self._done[partition].add(offset)

    def outstanding(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def committable(self) -> dict[K, int]:
        """partition -> next offset to commit, for partitions whose prefix advanced.

        The prefix is the run of finished offsets starting at the lowest one
        fetched; offsets need not be contiguous in the log (compaction,
        transaction markers), only in what was fetched.
        """
        out: dict[K, int] = {}
        for partition, done in self._done.items():
            pending = self._pending[partition]
            if not done:
                continue
            limit = min(pending) if pending else None
            finished = sorted(o for o in done if limit is None or o < limit)
            if not finished:
                continue
            out[partition] = finished[-1] + 1
            done.difference_update(finished)
        return out

    def forget(self, partition: K) -> None:
        """A revoked partition: its unfinished records go to the next owner."""
        self._pending.pop(partition, None)
        self._done.pop(partition, None)
