"""The chain follower: the programs' events, as they land, to ``chain.events``.

For each program id it pages ``getSignaturesForAddress`` back from the newest
signature to the checkpoint (the newest signature already published),
fetches every new successful transaction oldest first, decodes its events
from the ``Program data:`` logs (:func:`~machpay.settle.idl.events_from_logs`)
and produces one record per fact, key = account, acks=all. Only then does the
checkpoint move (an atomic file write in ``settle.state_dir``). A crash
between the two republishes some facts; consumers dedupe on (kind, account,
signature), as the streams' Ledger does, so that is harmless.

A transaction that touches several programs (a settlement calls GlobalBond)
shows up under each of them; it is decoded once per run and its events are
attributed by the invoke stack, so every fact is published once per pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from solders.pubkey import Pubkey

from machpay import topics
from machpay.config import Settings
from machpay.kafka.clients import producer_kwargs, topic_name
from machpay.settle.chain import Chain, ChainUnavailableError, SignatureInfo
from machpay.settle.idl import events_from_logs
from machpay.settle.programs import Deployment
from machpay.settle.records import ChainEventKind, ChainFact, chain_event
from machpay.wire import WireCodec

__all__ = ["Checkpoint", "Follower", "FollowerCounters"]

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    """Newest published signature per program, in one JSON file (atomic replace)."""

    path: Path
    newest: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"follower checkpoint {path} is unreadable: {exc}") from exc
        return cls(path, {str(k): str(v) for k, v in raw.get("newest", {}).items()})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump({"newest": self.newest}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


@dataclass(slots=True)
class FollowerCounters:
    transactions: int = 0
    facts: int = 0
    passes: int = 0

    def line(self) -> str:
        return f"transactions={self.transactions} facts={self.facts} passes={self.passes}"


class Follower:
    def __init__(
        self,
        settings: Settings,
        deployment: Deployment,
        chain: Chain,
        *,
        on_fact: Callable[[ChainFact], None] | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.settle
        self.deployment = deployment
        self.chain = chain
        self.on_fact = on_fact
        kafka = settings.kafka
        self.codec = WireCodec.from_settings(
            settings.schema_registry, topic_prefix=kafka.topic_prefix
        )
        self.topic = topic_name(topics.CHAIN_EVENTS, kafka)
        self.checkpoint = Checkpoint.load(self.cfg.state_dir / "follower.json")
        self.counters = FollowerCounters()
        self._producer: AIOKafkaProducer | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **producer_kwargs(self.settings.kafka, role="settle-follower", linger_ms=5)
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.start()
            while not stop.is_set():
                try:
                    await self.poll()
                except ChainUnavailableError as exc:
                    log.warning("follower: %s", exc)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.cfg.follow_interval_seconds)
        finally:
            await self.stop()

    async def _new_signatures(self, program: Pubkey) -> list[SignatureInfo]:
        """Every signature newer than the checkpoint, newest first."""
        until = self.checkpoint.newest.get(str(program))
        out: list[SignatureInfo] = []
        before: str | None = None
        while True:
            page = await self.chain.signatures_for(
                program, before=before, until=until, limit=self.cfg.follow_page_size
            )
            out.extend(page)
            if len(page) < self.cfg.follow_page_size:
                return out
            before = page[-1].signature

    async def poll(self) -> int:
        """One pass over every program; returns how many facts were published."""
        self.counters.passes += 1
        per_program: dict[Pubkey, list[SignatureInfo]] = {}
        for program in self.deployment.programs:
            per_program[program.program_id] = await self._new_signatures(program.program_id)
        merged: dict[str, tuple[int, SignatureInfo]] = {}
        for sigs in per_program.values():
            # Newest first from the RPC: the position orders transactions within a slot.
            for position, s in enumerate(sigs):
                merged.setdefault(s.signature, (position, s))
        ordered = [
            s for _, s in sorted(merged.values(), key=lambda ps: (ps[1].slot, -ps[0]))
        ]  # oldest first
        published = 0
        sends = []
        for sig in ordered:
            if sig.err is not None or sig.signature in self._seen:
                continue
            info = await self.chain.transaction(sig.signature)
            if info is None or info.err is not None:
                continue
            self.counters.transactions += 1
            events = events_from_logs(info.logs, self.deployment.programs)
            at_ms = (info.block_time or 0) * 1000
            for fact in self.deployment.facts(events):
                value = chain_event(fact, slot=info.slot, signature=sig.signature, at_ms=at_ms)
                sends.append(self._send(fact.account, value))
                published += 1
                if self.on_fact is not None:
                    self.on_fact(fact)
            self._remember(sig.signature)
        if sends:
            await asyncio.gather(*sends)
        self.counters.facts += published
        moved = False
        for program_id, sigs in per_program.items():
            if sigs:  # newest first: the head is the new checkpoint
                self.checkpoint.newest[str(program_id)] = sigs[0].signature
                moved = True
        if moved:
            self.checkpoint.save()
        return published

    async def _send(self, key: bytes, value: dict[str, object]) -> None:
        assert self._producer is not None
        data = self.codec.encode(self.topic, value)
        fut = await self._producer.send(self.topic, data, key=key)
        await fut

    def _remember(self, signature: str) -> None:
        self._seen[signature] = None
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)


def is_withdrawal(fact: ChainFact) -> bool:
    return fact.kind is ChainEventKind.WITHDRAW_REQUESTED
