"""The settler end to end: real Kafka broker, real stream worker, real Solana runtime.

Signed traffic (honest agents paying two vendors) goes into intents.accepted;
``machpay streams worker`` (a subprocess) cuts it into batches.ready; the
settler submits the batches to the three programs running in the local
runtime (``machpay-localnet``). The checks are on the chain itself: every
bond and every vendor moved by EXACTLY the signed amounts, nothing twice,
also after a replay, a duplicate proof, and a kill -9 of the settler.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from solders.keypair import Keypair as SoldersKeypair
from solders.pubkey import Pubkey

from machpay import topics
from machpay.config import Settings, load_settings
from machpay.kafka.clients import producer_kwargs, topic_name
from machpay.kafka.packing import pack_by_partition
from machpay.protocol import Keypair, channel_address, save_keypair
from machpay.settle.bootstrap import Bootstrap, send_and_confirm
from machpay.settle.chain import Chain
from machpay.settle.follower import Follower
from machpay.settle.idl import events_from_logs
from machpay.settle.service import SettleService, load_deployment
from machpay.settle.settler import BatchWork
from machpay.settle.transactions import sign
from machpay.streams.traffic import Agent
from machpay.testing import read_topic
from machpay.wire import WireCodec
from machpay.wire.intents import AcceptedIntent, intent_batch

pytestmark = pytest.mark.integration

BOND = 50_000_000
VENDOR_FLOAT = 1_000_000  # rent-exempt floor so a vendor account can receive lamports


class DeployedAgent(Agent):
    """An honest agent whose channels are PDAs of the real MachPay program id."""

    program_id: bytes = bytes(32)

    def channel(self, vendor: bytes) -> bytes:
        return channel_address(program_id=self.program_id, agent=self.key.public, vendor=vendor)


@dataclass
class World:
    settings: Settings
    chain: Chain
    boot: Bootstrap
    payer_file: Path
    payer: SoldersKeypair
    treasury: Pubkey
    agents: list[DeployedAgent]
    vendors: list[bytes]
    intents: list[AcceptedIntent] = field(default_factory=list)

    @property
    def deployment(self) -> Any:
        return self.boot.deployment

    def expected_vendor_income(self) -> dict[bytes, int]:
        out: dict[bytes, int] = defaultdict(int)
        for a in self.agents:
            for vendor, cumulative in a.cumulative.items():
                out[vendor] += cumulative
        return out

    def expected_agent_spend(self) -> dict[bytes, int]:
        return {a.public: sum(a.cumulative.values()) for a in self.agents}


def settings_for(base: Settings, rpc_url: str, state_dir: Path, payer_file: Path) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "kafka": base.kafka.model_dump(),
            "streams": {"batch_max_intents": 40, "batch_max_age_ms": 300},
            "settle": {
                "rpc_url": rpc_url,
                "payer_keypair": str(payer_file),
                "state_dir": str(state_dir),
                "poll_interval_seconds": 0.05,
                "status_interval_seconds": 1.0,
                "follow_interval_seconds": 0.2,
                "group_id": f"settle-{os.getpid()}-{time.monotonic_ns()}",
            },
        },
    )


def env_for(settings: Settings, folder: Path) -> dict[str, str]:
    """An environment whose MACHPAY_CONFIG is a TOML file of these settings (for `machpay ...`)."""
    from machpay.config import to_toml

    config = folder / "machpay.toml"
    config.write_text(
        to_toml(
            {
                section: getattr(settings, section).model_dump(mode="json")
                for section in ("kafka", "streams", "settle")
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MACHPAY_")}
    env["MACHPAY_CONFIG"] = str(config)
    return env


async def make_world(
    kafka_settings: Settings,
    localnet_url: str,
    tmp: Path,
    *,
    agents: int = 6,
    tag: str = "",
    bond: int = BOND,
) -> World:
    payer_key = Keypair.generate()
    payer_file = tmp / "payer.json"
    save_keypair(payer_key, payer_file)
    settings = settings_for(kafka_settings, localnet_url, tmp / "settle-state", payer_file)
    deployment = load_deployment(settings)
    chain = Chain(localnet_url, settings.settle.commitment)
    payer = SoldersKeypair.from_bytes(payer_key.to_solana_bytes())
    boot = Bootstrap(chain, deployment, payer)
    # The configs are per runtime (one session): the first test initializes them.
    treasury = await boot.set_up(
        domain=settings.deployment.domain,
        admin_lamports=500 * 10**9,
        treasury_lamports=VENDOR_FLOAT,
    )
    DeployedAgent.program_id = bytes(deployment.machpay.program_id)
    world_agents = []
    for i in range(agents):
        key = Keypair.from_seed(hashlib.sha256(f"settle-it:{tag}:{tmp}:{i}".encode()).digest())
        signer = SoldersKeypair.from_bytes(key.to_solana_bytes())
        await boot.fund(signer.pubkey(), 10**9)
        await boot.deposit(signer, bond)
        world_agents.append(DeployedAgent(key))
    vendors = [bytes(SoldersKeypair().pubkey()) for _ in range(2)]
    for v in vendors:
        await boot.fund(Pubkey(v), VENDOR_FLOAT)
    return World(settings, chain, boot, payer_file, payer, treasury, world_agents, vendors)


def honest_traffic(world: World, per_agent: int = 30) -> list[AcceptedIntent]:
    out = []
    for n in range(per_agent):
        for i, agent in enumerate(world.agents):
            out.append(agent.pay(world.vendors[(i + n) % 2], 1 + (i * 7 + n) % 11))
    world.intents += out
    return out


async def produce_intents(settings: Settings, intents: list[AcceptedIntent]) -> None:
    kafka = settings.kafka
    topic = topic_name(topics.INTENTS_ACCEPTED, kafka)
    codec = WireCodec(topic_prefix=kafka.topic_prefix)
    producer = AIOKafkaProducer(**producer_kwargs(kafka, role="test"))
    await producer.start()
    try:
        packed = pack_by_partition(intents, settings.local_kafka.partitions, max_per_record=25)
        for partition, chunks in packed.items():
            for chunk in chunks:
                value = codec.encode(topic, intent_batch(chunk, producer="test", now_ms=1))
                await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


@contextlib.contextmanager
def subprocess_command(
    args: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "machpay.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.asynccontextmanager
async def streams_worker(world: World, tmp: Path) -> AsyncIterator[subprocess.Popen[bytes]]:
    with subprocess_command(
        ["streams", "worker", "--log-level", "WARNING"],
        env_for(world.settings, tmp),
        tmp / "streams.log",
    ) as proc:
        yield proc


@contextlib.asynccontextmanager
async def settler_in_process(world: World) -> AsyncIterator[SettleService]:
    service = SettleService.from_settings(world.settings)
    stop = asyncio.Event()
    task = asyncio.ensure_future(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_until(check: Callable[[], Any], what: str, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")


async def channel_settled(world: World) -> dict[tuple[bytes, bytes], int]:
    dep = world.deployment
    pairs = [(a, v) for a in world.agents for v in world.vendors]
    datas = await world.chain.accounts([Pubkey(a.channel(v)) for a, v in pairs])
    out = {}
    for (a, v), data in zip(pairs, datas, strict=True):
        state = dep.channel_state(data)
        out[(a.public, v)] = 0 if state is None else state.settled
    return out


async def all_settled(world: World) -> bool:
    settled = await channel_settled(world)
    return all(
        settled[(a.public, v)] == a.cumulative.get(v, 0)
        for a in world.agents
        for v in world.vendors
    )


async def settlement_records(world: World, batch_ids: set[bytes]) -> list[dict[str, Any]]:
    def done(values: list[dict[str, Any]]) -> bool:
        last: dict[bytes, str] = {}
        for v in values:
            last[v["batch_id"]] = v["status"]
        return batch_ids <= {b for b, s in last.items() if s == "CONFIRMED"}

    return await read_topic(world.settings, topics.SETTLEMENTS, done=done, wait_seconds=60)


async def assert_exact(world: World, batches: list[dict[str, Any]]) -> None:
    """Balances moved by exactly the signed amounts; the records say so, each once."""
    for agent, spent in world.expected_agent_spend().items():
        assert await world.boot.bond_balance(Pubkey(agent)) == BOND - spent
    for vendor, income in world.expected_vendor_income().items():
        assert await world.chain.balance(Pubkey(vendor)) == VENDOR_FLOAT + income
    batch_ids = {b["batch_id"] for b in batches}
    records = await settlement_records(world, batch_ids)
    last: dict[bytes, str] = {}
    paid: dict[tuple[bytes, bytes], int] = {}
    for r in records:
        last[r["batch_id"]] = r["status"]
        for c in r["channels"]:
            assert r["status"] == "CONFIRMED"
            paid.setdefault((r["batch_id"], c["channel"]), c["paid"])  # the streams' dedupe key
    assert {b: s for b, s in last.items() if b in batch_ids} == dict.fromkeys(
        batch_ids, "CONFIRMED"
    )
    assert sum(paid.values()) == sum(world.expected_agent_spend().values())
    for r in records:
        if r["status"] == "CONFIRMED" and r["signature"]:
            assert r["slot"] is not None


async def read_batches(world: World, within: float = 60) -> list[dict[str, Any]]:
    ids = {i.id for i in world.intents}

    def done(values: list[dict[str, Any]]) -> bool:
        return ids <= {i for b in values for i in b["intent_ids"]}

    batches = await read_topic(world.settings, topics.BATCHES_READY, done=done, wait_seconds=within)
    unique = {b["batch_id"]: b for b in batches}
    return list(unique.values())


async def test_stream_batches_settle_exactly_and_a_replay_pays_nothing(
    kafka_settings: Settings, localnet_url: str, tmp_path: Path
) -> None:
    world = await make_world(kafka_settings, localnet_url, tmp_path, tag="exact")
    await produce_intents(world.settings, honest_traffic(world))
    async with streams_worker(world, tmp_path), settler_in_process(world) as service:
        await wait_until(lambda: all_settled(world), "every channel settled to its cumulative")
        batches = await read_batches(world)
        assert len(batches) > 2  # several batches per vendor, several channels each
        await assert_exact(world, batches)
        counters = service.settler.counters
        print(f"settler: {counters.line()}; batches {len(batches)}")
        assert counters.failed == 0
        assert counters.channels_settled >= len(world.agents) * 2

        # The follower saw every deposit and every settled channel (the runtime is shared
        # by the session's tests: only this test's vendors count).
        def ours(v: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [e for e in v if e["kind"] == "BATCH_SETTLED" and e["vendor"] in world.vendors]

        events = await read_topic(
            world.settings,
            topics.CHAIN_EVENTS,
            done=lambda v: len(ours(v)) >= counters.channels_settled,
            wait_seconds=30,
        )
        deposits = {e["agent"] for e in events if e["kind"] == "BOND_DEPOSITED"}
        assert {a.public for a in world.agents} <= deposits
        settled_rows = {(e["signature"], e["account"]): e["amount"] for e in ours(events)}
        assert sum(settled_rows.values()) == sum(world.expected_agent_spend().values())

    # Replay every batch through a fresh settler: it reads the channels and sends nothing.
    replay = SettleService.from_settings(world.settings)
    await replay.settler.start()
    try:
        before = {a.public: await world.boot.bond_balance(Pubkey(a.public)) for a in world.agents}
        for b in batches:
            assert await replay.settler.settle_batch(_batch_work(b))
        assert replay.settler.counters.transactions == 0
        assert replay.settler.counters.vouchers_skipped > 0
        # On-chain replay of an old voucher (as after a lost confirmation): the program pays 0.
        agent = world.agents[0]
        old = next(i.signed for i in world.intents if i.signed.agent == agent.public)
        ixs = world.deployment.settle_instructions(
            payer=world.payer.pubkey(),
            vendor=next(i.vendor for i in world.intents if i.signed is old),
            root=bytes(32),
            leaf_count=1,
            total=old.amount,
            vouchers=[old],
        )
        info = await send_and_confirm(world.chain, world.payer, ixs)
        rows = world.deployment.settled_channels(
            events_from_logs(info.logs, world.deployment.programs)
        )
        assert [r.paid for r in rows] == [0]
        after = {a.public: await world.boot.bond_balance(Pubkey(a.public)) for a in world.agents}
        assert after == before
    finally:
        await replay.settler.stop()
        await replay.chain.close()
    await world.chain.close()


def _batch_work(b: dict[str, Any]) -> BatchWork:
    from aiokafka import TopicPartition

    from machpay.protocol import SignedIntent

    return BatchWork(
        tp=TopicPartition("replay", 0),
        offset=0,
        batch_id=b["batch_id"],
        vendor=b["vendor"],
        root=b["root"],
        leaf_count=b["leaf_count"],
        total=b["total"],
        vouchers=tuple(
            SignedIntent(v["message"], v["signature"], v["agent"]) for v in b["vouchers"]
        ),
        urgent=False,
    )


async def test_fraud_proofs_slash_once_each(
    kafka_settings: Settings, localnet_url: str, tmp_path: Path
) -> None:
    world = await make_world(kafka_settings, localnet_url, tmp_path, agents=4, tag="fraud")
    honest = honest_traffic(world, per_agent=10)
    cheat_a, cheat_b = world.agents[0], world.agents[1]
    victim = next(i for i in honest if i.signed.agent == cheat_a.public)
    twin = cheat_a.sign(  # equivocation: same nonce, another message
        victim.vendor,
        nonce=victim.signed.nonce,
        cumulative=victim.signed.cumulative,
        amount=victim.signed.amount,
        context=b"\x07" * 16,
    )
    last = [i for i in honest if i.signed.agent == cheat_b.public][-1]
    under = cheat_b.sign(  # channel inconsistency: a later nonce that under-counts
        last.vendor, nonce=cheat_b.next_nonce + 3, cumulative=last.signed.cumulative, amount=2
    )
    world.intents += [twin, under]
    await produce_intents(world.settings, [*honest, twin, under])
    async with streams_worker(world, tmp_path):
        proofs = await read_topic(
            world.settings, topics.FRAUD_PROOFS, done=lambda v: len(v) >= 2, wait_seconds=60
        )
    assert {p["agent"] for p in proofs} == {cheat_a.public, cheat_b.public}
    # Publish every proof a second time (a redelivery, or a second detector).
    codec = WireCodec(topic_prefix=world.settings.kafka.topic_prefix)
    name = topic_name(topics.FRAUD_PROOFS, world.settings.kafka)
    producer = AIOKafkaProducer(**producer_kwargs(world.settings.kafka, role="test"))
    await producer.start()
    try:
        for p in proofs:
            await producer.send_and_wait(name, codec.encode(name, p), key=p["agent"])
    finally:
        await producer.stop()
    # Grace 0, the old order: the proofs go before the batches and take the whole bonds
    # (test_a_cheats_served_calls_are_paid_before_its_bond_is_slashed covers the default).
    settle = world.settings.settle.model_copy(update={"slash_grace_seconds": 0.0})
    world.settings = world.settings.model_copy(update={"settle": settle})
    cheaters = {cheat_a.public, cheat_b.public}
    treasury_before = await world.chain.balance(world.treasury)
    bonds_before = {a.public: await world.boot.bond_balance(Pubkey(a.public)) for a in world.agents}
    async with settler_in_process(world) as service:
        records = [world.deployment.proof_record(p["proof_id"]) for p in proofs]

        async def recorded() -> bool:
            return all(d is not None for d in await world.chain.accounts(records))

        await wait_until(recorded, "both fraud records on-chain")
        await wait_until(lambda: _drained(service), "the duplicate proofs handled", within=30)
        counters = service.settler.counters
        assert counters.proofs_submitted == 2
        assert counters.proofs_already >= 2
        assert counters.proofs_invalid == 0
        events = await read_topic(
            world.settings,
            topics.CHAIN_EVENTS,
            done=lambda v: (
                sum(1 for e in v if e["kind"] == "SLASHED" and e["agent"] in cheaters) >= 2
            ),
            wait_seconds=30,
        )
    slashed = [e for e in events if e["kind"] == "SLASHED" and e["agent"] in cheaters]
    assert sorted(e["agent"] for e in slashed) == sorted([cheat_a.public, cheat_b.public])
    for a in (cheat_a, cheat_b):
        assert await world.boot.bond_balance(Pubkey(a.public)) == 0
    taken = sum(e["amount"] for e in slashed)
    assert taken == bonds_before[cheat_a.public] + bonds_before[cheat_b.public]
    # 10 % to the prover (the settler's payer), the rest to the treasury.
    reward = sum(
        a * 1_000 // 10_000 for a in (bonds_before[cheat_a.public], bonds_before[cheat_b.public])
    )
    assert await world.chain.balance(world.treasury) == treasury_before + taken - reward
    await world.chain.close()


async def _publish(settings: Settings, topic: topics.Topic, values: list[dict[str, Any]]) -> None:
    """Values read from another prefix's topic, produced again here (key as streams key it)."""
    codec = WireCodec(topic_prefix=settings.kafka.topic_prefix)
    name = topic_name(topic, settings.kafka)
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka, role="test"))
    await producer.start()
    try:
        for v in values:
            key = v["agent"] if topic is topics.FRAUD_PROOFS else v["vendor"]
            await producer.send_and_wait(name, codec.encode(name, v), key=key)
    finally:
        await producer.stop()


async def test_a_cheats_served_calls_are_paid_before_its_bond_is_slashed(
    kafka_settings: Settings, localnet_url: str, tmp_path: Path
) -> None:
    """The proof reaches the settler first, the cheat's batches after it (some together
    with it, the rest while it is held): the vendors collect every call the cheat was
    served, then one slash takes what is left of its bond."""
    from machpay.kafka.admin import create_topics, delete_topics

    world = await make_world(kafka_settings, localnet_url, tmp_path, agents=3, tag="slashorder")
    honest = honest_traffic(world, per_agent=12)
    cheat = world.agents[0]
    victim = next(i for i in honest if i.signed.agent == cheat.public)
    twin = cheat.sign(
        victim.vendor,
        nonce=victim.signed.nonce,
        cumulative=victim.signed.cumulative,
        amount=victim.signed.amount,
        context=b"\x09" * 16,
    )
    await produce_intents(world.settings, [*honest, twin])
    async with streams_worker(world, tmp_path):
        batches = await read_batches(world)
        (proof,) = await read_topic(
            world.settings, topics.FRAUD_PROOFS, done=lambda v: len(v) >= 1, wait_seconds=60
        )
    assert proof["agent"] == cheat.public
    cheats = [b for b in batches if any(v["agent"] == cheat.public for v in b["vouchers"])]
    assert len(cheats) >= 2
    served = sum(cheat.cumulative.values())
    assert served > 0

    # The settler reads a fresh pair of topics, so what arrives when is up to this test.
    grace = 8.0
    kafka = world.settings.kafka.model_copy(update={"topic_prefix": f"so{uuid.uuid4().hex[:10]}."})
    settle = world.settings.settle.model_copy(update={"slash_grace_seconds": grace})
    world.settings = world.settings.model_copy(update={"kafka": kafka, "settle": settle})
    create_topics(world.settings)
    treasury_before = await world.chain.balance(world.treasury)
    record = world.deployment.proof_record(proof["proof_id"])
    try:
        await _publish(world.settings, topics.FRAUD_PROOFS, [proof])
        await _publish(world.settings, topics.BATCHES_READY, cheats[:1])  # queued with it
        async with settler_in_process(world) as service:
            counters = service.settler.counters
            started = time.monotonic()

            async def held() -> bool:
                return counters.proofs_held >= 1

            await wait_until(held, "the proof held", within=30)
            # The rest arrive while it is held (and the proof once more: a redelivery).
            rest = [b for b in batches if b is not cheats[0]]
            await _publish(world.settings, topics.BATCHES_READY, rest)
            await _publish(world.settings, topics.FRAUD_PROOFS, [proof])

            async def slashed() -> bool:
                return await world.chain.account(record) is not None

            await wait_until(slashed, "the fraud record on-chain", within=90)
            assert time.monotonic() - started >= grace * 0.9  # not before its grace
            await wait_until(lambda: _drained(service), "every record handled", within=60)
            assert counters.proofs_submitted == 1
            assert counters.proofs_already >= 1
            assert counters.failed == 0
            # Every channel settled to exactly what was signed, the cheat's included.
            assert await all_settled(world)
            events = await read_topic(
                world.settings,
                topics.CHAIN_EVENTS,
                done=lambda v: any(
                    e["kind"] == "SLASHED" and e["agent"] == cheat.public for e in v
                ),
                wait_seconds=30,
            )
    finally:
        with contextlib.suppress(Exception):
            delete_topics(world.settings)
    for vendor, income in world.expected_vendor_income().items():
        assert await world.chain.balance(Pubkey(vendor)) == VENDOR_FLOAT + income
    (slash,) = [e for e in events if e["kind"] == "SLASHED" and e["agent"] == cheat.public]
    assert slash["amount"] == BOND - served  # what was left after the vendors were paid
    assert await world.boot.bond_balance(Pubkey(cheat.public)) == 0
    reward = slash["amount"] * 1_000 // 10_000
    assert await world.chain.balance(world.treasury) == treasury_before + slash["amount"] - reward
    for honest_agent in world.agents[1:]:
        assert await world.boot.bond_balance(Pubkey(honest_agent.public)) == BOND - sum(
            honest_agent.cumulative.values()
        )
    await world.chain.close()


async def _drained(service: SettleService) -> bool:
    return len(service.settler.queue) == 0 and service.settler.tracker.outstanding() == 0


async def test_kill9_mid_run_then_restart_settles_everything_once(
    kafka_settings: Settings, localnet_url: str, tmp_path: Path
) -> None:
    world = await make_world(kafka_settings, localnet_url, tmp_path, agents=8, tag="kill9")
    await produce_intents(world.settings, honest_traffic(world, per_agent=50))
    env = env_for(world.settings, tmp_path)
    async with streams_worker(world, tmp_path):
        batches = await read_batches(world)
        assert len(batches) >= 8
        with subprocess_command(
            ["settle", "run", "--log-level", "WARNING"], env, tmp_path / "s1.log"
        ) as first:
            submitted = await read_topic(
                world.settings,
                topics.SETTLEMENTS,
                done=lambda v: any(r["status"] == "SUBMITTED" for r in v),
                wait_seconds=60,
            )
            assert submitted, (tmp_path / "s1.log").read_text()[-3000:]
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        assert not await all_settled(world), (
            "the settler finished before the kill; grow the traffic"
        )
        with subprocess_command(
            ["settle", "run", "--log-level", "WARNING"], env, tmp_path / "s2.log"
        ):
            await wait_until(lambda: all_settled(world), "every channel settled after the restart")
            await assert_exact(world, batches)
    from machpay.settle.journal import AttemptState, Journal

    journal = Journal(world.settings.settle.state_dir / "journal.sqlite")
    try:
        assert journal.count(AttemptState.PENDING) == 0
    finally:
        journal.close()
    await world.chain.close()


async def test_a_forged_voucher_is_left_out_and_the_rest_settles(
    kafka_settings: Settings, localnet_url: str, tmp_path: Path
) -> None:
    """One bad signature would fail a whole transaction on-chain: the settler drops it first."""
    from machpay.protocol import MerkleTree, SignedIntent
    from machpay.streams.state import batch_id

    world = await make_world(kafka_settings, localnet_url, tmp_path, agents=3, tag="forged")
    vendor = world.vendors[0]
    earlier = world.agents[1].pay(vendor, 5)
    vouchers = [a.pay(vendor, 1_000 + i) for i, a in enumerate(world.agents)]
    # A well-formed signature by the right key, over another message.
    forged = SignedIntent(
        vouchers[1].signed.message, earlier.signed.signature, earlier.signed.agent
    )
    ids = [v.id for v in vouchers]
    root = MerkleTree(ids).root
    value = {
        "batch_id": batch_id(vendor, root, len(ids)),
        "vendor": vendor,
        "root": root,
        "leaf_count": len(ids),
        "total": sum(v.signed.amount for v in vouchers),
        "intent_ids": ids,
        "vouchers": [
            {
                "channel": s.channel,
                "agent": s.agent,
                "message": s.message,
                "signature": s.signature,
                "cumulative": s.cumulative,
            }
            for s in (vouchers[0].signed, forged, vouchers[2].signed)
        ],
        "close_reason": "SIZE",
        "opened_at_ms": 1,
        "closed_at_ms": 2,
    }
    await _produce_batch(world, value)
    async with settler_in_process(world):
        records = await read_topic(
            world.settings,
            topics.SETTLEMENTS,
            done=lambda v: any(r["status"] == "CONFIRMED" for r in v),
            wait_seconds=60,
        )
    failed = [r for r in records if r["status"] == "FAILED"]
    assert len(failed) == 1
    assert "bad_signature" in failed[0]["reason"]
    assert forged.channel.hex()[:16] in failed[0]["reason"]
    (confirmed,) = [r for r in records if r["status"] == "CONFIRMED"]
    assert {c["agent"] for c in confirmed["channels"]} == {
        world.agents[0].public,
        world.agents[2].public,
    }
    # Agent 0 signed cumulative 1,000 and agent 2 cumulative 1,002 to this vendor.
    assert await world.chain.balance(Pubkey(vendor)) == VENDOR_FLOAT + 1_000 + 1_002
    assert await world.boot.bond_balance(Pubkey(world.agents[1].public)) == BOND
    await world.chain.close()


def test_init_and_status_commands(localnet_url: str, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from machpay.cli import cli
    from machpay.localnet.node import rpc_call

    key = Keypair.generate()
    save_keypair(key, tmp_path / "payer.json")
    rpc_call(localnet_url, "requestAirdrop", [key.address, 10 * 10**9])
    args = ["--rpc-url", localnet_url, "--payer", str(tmp_path / "payer.json")]
    env = {"MACHPAY_CONFIG": "", "MACHPAY_SETTLE__STATE_DIR": str(tmp_path / "state")}
    treasury = str(SoldersKeypair().pubkey())
    result = CliRunner().invoke(cli, ["settle", "init", *args, "--treasury", treasury], env=env)
    assert result.exit_code == 0, result.output
    assert "configs ready" in result.output
    result = CliRunner().invoke(cli, ["settle", "status", *args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["config_initialized"] is True
    assert report["payer"] == key.address
    assert report["payer_balance"] > 0
    assert report["programs"]["machpay"] == "MachPay111111111111111111111111111111111111"
    bad = CliRunner().invoke(cli, ["settle", "init", *args, "--treasury", "nope"], env=env)
    assert bad.exit_code != 0
    assert "--treasury" in bad.output


async def test_a_withdrawal_request_on_chain_moves_that_agents_batches_first(
    kafka_settings: Settings, localnet_url: str, tmp_path: Path
) -> None:
    """Follower -> WITHDRAW_REQUESTED in chain.events -> the settler's queue promotes."""
    world = await make_world(kafka_settings, localnet_url, tmp_path, agents=3, tag="withdraw")
    quitter = world.agents[2]
    signer = SoldersKeypair.from_bytes(quitter.key.to_solana_bytes())
    await world.boot.request_withdrawal(signer, BOND // 2)
    service = SettleService.from_settings(world.settings)
    assert service.follower is not None
    queued = [_batch_work(_fake_batch(world, a)) for a in world.agents]
    for work in queued:
        service.settler.queue.push(work, work.agents)
    await service.follower.start()
    try:
        await service.follower.poll()
    finally:
        await service.follower.stop()
        await service.chain.close()
    order = [service.settler.queue.pop() for _ in queued]
    assert order[0] is queued[2]  # the withdrawing agent's batch, though it arrived last
    assert order[1:] == queued[:2]
    events = await read_topic(
        world.settings,
        topics.CHAIN_EVENTS,
        done=lambda v: any(e["kind"] == "WITHDRAW_REQUESTED" for e in v),
        wait_seconds=20,
    )
    (request,) = [e for e in events if e["kind"] == "WITHDRAW_REQUESTED"]
    assert request["agent"] == quitter.public
    assert request["amount"] == BOND // 2
    assert request["unlock_at"] is not None
    assert request["unlock_at"] > 0
    assert request["account"] == bytes(world.deployment.bond(quitter.public))


def _fake_batch(world: World, agent: DeployedAgent) -> dict[str, Any]:
    intent = agent.pay(world.vendors[0], 10)
    s = intent.signed
    return {
        "batch_id": hashlib.sha256(s.id).digest(),
        "vendor": world.vendors[0],
        "root": s.id,
        "leaf_count": 1,
        "total": s.amount,
        "vouchers": [{"message": s.message, "signature": s.signature, "agent": s.agent}],
    }


async def test_a_batch_the_chain_refuses_ends_failed_with_reason_and_is_not_retried_forever(
    kafka_settings: Settings, localnet_url: str, tmp_path: Path
) -> None:
    """A vendor account that does not exist cannot receive 500 lamports (below rent-exempt):
    every attempt is FAILED with the runtime's reason, then the batch is given up."""
    world = await make_world(kafka_settings, localnet_url, tmp_path, agents=1, tag="refused")
    settle = world.settings.settle.model_copy(update={"max_attempts": 2})
    world.settings = world.settings.model_copy(update={"settle": settle})
    vendor = bytes(SoldersKeypair().pubkey())  # never funded
    paid = world.agents[0].pay(vendor, 500)
    await _produce_batch(world, _one_voucher_batch(vendor, paid))
    async with settler_in_process(world) as service:
        records = await read_topic(
            world.settings,
            topics.SETTLEMENTS,
            done=lambda v: sum(1 for r in v if r["status"] == "FAILED") >= 2,
            wait_seconds=60,
        )
        await wait_until(lambda: _drained(service), "the batch given up and committed", 30)
        assert service.settler.counters.batches_failed == 1
    statuses = [r["status"] for r in records]
    assert statuses == ["SUBMITTED", "FAILED", "SUBMITTED", "FAILED"]
    failed = [r for r in records if r["status"] == "FAILED"]
    assert all(r["signature"] for r in failed)
    # (The same signature twice when the blockhash did not move: a byte-identical retry.)
    assert all("rent" in r["reason"].lower() for r in failed), failed[0]["reason"]
    assert await world.boot.bond_balance(Pubkey(world.agents[0].public)) == BOND
    await world.chain.close()


async def test_follower_publishes_registry_events_and_resumes_from_its_checkpoint(
    kafka_settings: Settings, localnet_url: str, tmp_path: Path
) -> None:
    from machpay.settle.follower import Follower

    world = await make_world(kafka_settings, localnet_url, tmp_path, agents=1, tag="registry")
    registry = world.deployment.service_registry
    assert registry is not None
    vendor = SoldersKeypair()
    await world.boot.fund(vendor.pubkey(), 10**9)
    register = registry.instruction("register_vendor").build(
        {"authority": vendor.pubkey()}, {"name": "acme", "metadata_uri": ""}
    )
    terms = {
        "price": 250,
        "asset": bytes(32),
        "unit": "call",
        "gateway_url": "https://acme.example/v1",
        "metadata_uri": "",
    }
    service_ix = registry.instruction("register_service").build(
        {"authority": vendor.pubkey()}, {"name": "search", "terms": terms}
    )
    await send_and_confirm(world.chain, vendor, [register, service_ix])
    service_pda = Pubkey.find_program_address(
        [b"service", bytes(vendor.pubkey()), b"search"], registry.program_id
    )[0]
    assert await world.chain.account(service_pda) is not None  # the PDA from the arg seed

    follower = Follower(world.settings, world.deployment, world.chain)
    await follower.start()
    try:
        first = await follower.poll()
        again = await follower.poll()  # nothing new: the checkpoint moved
    finally:
        await follower.stop()
    assert first > 0
    assert again == 0
    resumed = Follower(world.settings, world.deployment, world.chain)  # reads the checkpoint file
    await resumed.start()
    try:
        assert await resumed.poll() == 0
    finally:
        await resumed.stop()
    events = await read_topic(
        world.settings,
        topics.CHAIN_EVENTS,
        done=lambda v: any(e["kind"] == "SERVICE_UPDATED" for e in v),
        wait_seconds=20,
    )
    mine = [e for e in events if e["vendor"] == bytes(vendor.pubkey())]
    kinds = sorted(e["kind"] for e in mine)
    assert kinds == ["SERVICE_UPDATED", "VENDOR_REGISTERED"]
    (svc,) = [e for e in mine if e["kind"] == "SERVICE_UPDATED"]
    assert svc["account"] == bytes(service_pda)
    assert svc["amount"] == 250
    await world.chain.close()


async def test_a_journaled_transaction_that_expired_unsent_is_failed_then_settled_once(
    kafka_settings: Settings, localnet_url: str, tmp_path: Path
) -> None:
    """Crash after journaling, before sending; restart after its blockhash expired.

    The settler rebroadcasts the journaled bytes, sees the blockhash is past,
    records FAILED ``expired`` for that signature, re-reads the channel and
    settles with a new transaction: one payment, every signature accounted for.
    """
    from machpay.localnet.node import rpc_call
    from machpay.protocol import MerkleTree
    from machpay.settle.journal import AttemptState, Journal
    from machpay.streams.state import batch_id

    world = await make_world(kafka_settings, localnet_url, tmp_path, agents=1, tag="expired")
    vendor = world.vendors[0]
    paid = world.agents[0].pay(vendor, 777)
    root = MerkleTree([paid.id]).root
    bid = batch_id(vendor, root, 1)
    ixs = world.deployment.settle_instructions(
        payer=world.payer.pubkey(),
        vendor=vendor,
        root=root,
        leaf_count=1,
        total=777,
        vouchers=[paid.signed],
    )
    from machpay.settle.transactions import compile_message

    blockhash, last_valid = await world.chain.latest_blockhash()
    stale = sign(compile_message(world.payer.pubkey(), ixs, blockhash), world.payer)
    journal = Journal(world.settings.settle.state_dir / "journal.sqlite")
    journal.record(
        signature=str(stale.signatures[0]),
        kind="settle",
        key=bid,
        vendor=vendor,
        tx=bytes(stale),
        last_valid=last_valid,
    )
    journal.close()
    rpc_call(localnet_url, "machpayLocalnetWarp", [{"slots": 300}])
    await _produce_batch(world, _one_voucher_batch(vendor, paid))
    async with settler_in_process(world) as service:
        records = await read_topic(
            world.settings,
            topics.SETTLEMENTS,
            done=lambda v: any(r["status"] == "CONFIRMED" for r in v),
            wait_seconds=60,
        )
        assert service.settler.counters.resumed == 1
    old = str(stale.signatures[0])
    assert [(r["status"], r["signature"] == old) for r in records] == [
        ("SUBMITTED", True),
        ("FAILED", True),
        ("SUBMITTED", False),
        ("CONFIRMED", False),
    ]
    assert records[1]["reason"].startswith("expired")
    (row,) = records[3]["channels"]
    assert (row["paid"], row["settled_cumulative"]) == (777, 777)
    assert await world.chain.balance(Pubkey(vendor)) == VENDOR_FLOAT + 777
    assert await world.boot.bond_balance(Pubkey(world.agents[0].public)) == BOND - 777
    journal = Journal(world.settings.settle.state_dir / "journal.sqlite")
    try:
        assert journal.count(AttemptState.PENDING) == 0
        assert [a.state for a in journal.attempts("settle", bid)] == [
            AttemptState.FAILED,
            AttemptState.CONFIRMED,
        ]
    finally:
        journal.close()
    await world.chain.close()


async def test_lookup_tables_are_cached_and_reloaded_from_the_chain(
    localnet_url: str, tmp_path: Path
) -> None:
    from solders.address_lookup_table_account import LOOKUP_TABLE_MAX_ADDRESSES

    from machpay.settle.lookup import LookupTables

    chain = Chain(localnet_url)
    payer = SoldersKeypair()
    try:
        await chain.airdrop(payer.pubkey(), 10 * 10**9)
        wanted = [SoldersKeypair().pubkey() for _ in range(LOOKUP_TABLE_MAX_ADDRESSES + 10)]
        tables = LookupTables(chain, payer, tmp_path / "tables.json")
        await tables.ensure(wanted)
        assert tables.created == 2  # 256 addresses per table
        assert tables.missing(wanted) == []
        again = LookupTables(chain, payer, tmp_path / "tables.json")
        await again.load()  # from the cache file, contents read back from the chain
        assert again.missing(wanted) == []
        assert len(again.accounts_for(wanted[:3])) == 1  # only the tables a message needs
        await again.ensure(wanted)
        assert again.created == again.extended == 0
    finally:
        await chain.close()


async def _produce_batch(world: World, value: dict[str, Any]) -> None:
    """Put one machpay.Batch value on batches.ready (key vendor), as the stream workers would."""
    name = topic_name(topics.BATCHES_READY, world.settings.kafka)
    codec = WireCodec(topic_prefix=world.settings.kafka.topic_prefix)
    producer = AIOKafkaProducer(**producer_kwargs(world.settings.kafka, role="test"))
    await producer.start()
    try:
        await producer.send_and_wait(name, codec.encode(name, value), key=value["vendor"])
    finally:
        await producer.stop()


def _one_voucher_batch(vendor: bytes, paid: AcceptedIntent) -> dict[str, Any]:
    from machpay.protocol import MerkleTree
    from machpay.streams.state import batch_id

    root = MerkleTree([paid.id]).root
    return {
        "batch_id": batch_id(vendor, root, 1),
        "vendor": vendor,
        "root": root,
        "leaf_count": 1,
        "total": paid.signed.amount,
        "intent_ids": [paid.id],
        "vouchers": [
            {
                "channel": paid.signed.channel,
                "agent": paid.signed.agent,
                "message": paid.signed.message,
                "signature": paid.signed.signature,
                "cumulative": paid.signed.cumulative,
            }
        ],
        "close_reason": "AGE",
        "opened_at_ms": 1,
        "closed_at_ms": 2,
    }


async def test_a_short_bond_pays_what_is_there_and_the_same_voucher_collects_after_a_top_up(
    kafka_settings: Settings, localnet_url: str, tmp_path: Path
) -> None:
    world = await make_world(
        kafka_settings, localnet_url, tmp_path, agents=1, tag="short", bond=1_000
    )
    agent, vendor = world.agents[0], world.vendors[0]
    paid = agent.pay(vendor, 5_000)  # owes 5,000; the bond holds 1,000
    batch = _one_voucher_batch(vendor, paid)
    service = SettleService.from_settings(world.settings)
    settler = service.settler
    await settler.start()
    try:
        assert await settler.settle_batch(_batch_work(batch))
        assert await world.boot.bond_balance(Pubkey(agent.public)) == 0
        assert await world.chain.balance(Pubkey(vendor)) == VENDOR_FLOAT + 1_000
        state = world.deployment.channel_state(
            await world.chain.account(Pubkey(paid.signed.channel))
        )
        assert state is not None
        assert state.settled == 1_000
        signer = SoldersKeypair.from_bytes(agent.key.to_solana_bytes())
        await world.boot.deposit(signer, 10_000)
        assert await settler.settle_batch(_batch_work(batch))  # the same batch, redelivered
        assert await world.chain.balance(Pubkey(vendor)) == VENDOR_FLOAT + 5_000
        assert await world.boot.bond_balance(Pubkey(agent.public)) == 10_000 - 4_000
        assert await settler.settle_batch(_batch_work(batch))  # and once more: nothing to do
    finally:
        await settler.stop()
        await service.chain.close()
    records = await read_topic(
        world.settings,
        topics.SETTLEMENTS,
        done=lambda v: sum(1 for r in v if r["status"] == "CONFIRMED") >= 2,
        wait_seconds=30,
    )
    rows = [
        (c["paid"], c["settled_cumulative"])
        for r in records
        if r["status"] == "CONFIRMED"
        for c in r["channels"]
    ]
    assert rows == [(1_000, 1_000), (4_000, 5_000)]
    assert settler.counters.transactions == 2  # the third pass read the channel and sent nothing
    # The follower: the short settlement is an AGENT_INSOLVENT fact, the top-up one is not.
    follower = Follower(world.settings, world.deployment, world.chain)
    await follower.start()
    try:
        await follower.poll()
    finally:
        await follower.stop()
    events = await read_topic(
        world.settings,
        topics.CHAIN_EVENTS,
        done=lambda v: (
            sum(1 for e in v if e["kind"] == "BATCH_SETTLED" and e["agent"] == agent.public) >= 2
        ),
        wait_seconds=30,
    )
    # The follower starts with no checkpoint: it also republishes other tests' facts.
    insolvent = [e for e in events if e["kind"] == "AGENT_INSOLVENT" and e["agent"] == agent.public]
    assert [(e["account"], e["agent"], e["vendor"], e["amount"]) for e in insolvent] == [
        (paid.signed.channel, agent.public, vendor, 5_000 - 1_000)
    ]
    assert world.deployment.global_bond.account("Bond").decode(
        await world.chain.account(world.deployment.bond(agent.public))
    )["insolvent"]  # on-chain too, and still after the top-up
    await world.chain.close()
