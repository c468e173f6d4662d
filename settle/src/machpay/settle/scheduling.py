"""What the settler does next, and which offsets it may commit.

Two small pure structures:

* :class:`WorkQueue`: batches and proofs waiting to be submitted. A batch that
  holds a channel of an agent with a pending withdrawal goes first (its bond
  must be charged before the timelock ends), then everything else in arrival
  order. An agent whose withdrawal shows up later promotes the batches
  already waiting.
* :class:`OffsetTracker`: work finishes out of order (priorities), but Kafka
  commits one offset per partition, so only the contiguous prefix of finished
  records is committed. A crash redelivers the unfinished rest, which the
  settler re-checks against the chain before submitting anything.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["OffsetTracker", "WorkQueue"]

K = TypeVar("K", bound=Hashable)
W = TypeVar("W")

URGENT = 0
NORMAL = 1


@dataclass(order=True, slots=True)
class _Entry(Generic[W]):
    priority: int
    seq: int
    item: W = field(compare=False)
    agents: frozenset[bytes] = field(compare=False)
    live: bool = field(default=True, compare=False)


class WorkQueue(Generic[W]):
    """A priority queue of work items, each tagged with the agents it touches."""

    def __init__(self) -> None:
        self._heap: list[_Entry[W]] = []
        self._seq = itertools.count()
        self._withdrawing: set[bytes] = set()
        self._live = 0

    def __len__(self) -> int:
        return self._live

    @property
    def withdrawing(self) -> frozenset[bytes]:
        return frozenset(self._withdrawing)

    def push(self, item: W, agents: Iterable[bytes], *, urgent: bool = False) -> None:
        tags = frozenset(agents)
        priority = URGENT if urgent or tags & self._withdrawing else NORMAL
        heapq.heappush(self._heap, _Entry(priority, next(self._seq), item, tags))
        self._live += 1

    def withdrawal_requested(self, agent: bytes) -> int:
        """Mark ``agent`` as withdrawing; returns how many waiting items were promoted."""
        self._withdrawing.add(agent)
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

    def pop(self) -> W | None:
        while self._heap:
            entry = heapq.heappop(self._heap)
            if entry.live:
                self._live -= 1
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
