"""The worker on the real broker: dedupe, proofs, bans, batches, crash and restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from machpay import topics
from machpay.config import Settings, StreamsSettings
from machpay.kafka.clients import consumer_kwargs, partition_for_key, producer_kwargs, topic_name
from machpay.kafka.packing import pack_by_partition
from machpay.protocol import SignedIntent, merkle_root
from machpay.streams import snapshot
from machpay.streams.app import STATE_TABLE, StreamsApp
from machpay.streams.state import AgentState
from machpay.streams.traffic import Agent, accepted, keypair, vendor_key
from machpay.wire import WireCodec
from machpay.wire.intents import AcceptedIntent, intent_batch

pytestmark = pytest.mark.integration

VENDORS = [vendor_key(f"iv{i}") for i in range(3)]


@dataclass
class Traffic:
    intents: list[AcceptedIntent]
    """Everything to send, duplicates included, in order."""
    expected_ids: set[bytes]
    """Every intent that must land in exactly one batch."""
    honest_agents: set[bytes]
    cheaters: set[bytes]
    forged: AcceptedIntent
    extra: list[AcceptedIntent] = field(default_factory=list)


def make_traffic(n_agents: int = 8, per_agent: int = 25) -> Traffic:
    agents = [Agent(keypair(f"int-{i}")) for i in range(n_agents)]
    intents = [
        agents[i % n_agents].pay(VENDORS[(i // n_agents) % 3], 1 + i % 7)
        for i in range(n_agents * per_agent)
    ]
    expected = {i.id for i in intents}
    # Equivocation by agent 0: a second message for one of its nonces.
    victim = intents[0]
    twin = agents[0].sign(
        victim.vendor,
        nonce=victim.signed.nonce,
        cumulative=victim.signed.cumulative,
        amount=victim.signed.amount,
        context=b"\x02" * 16,
    )
    # Channel inconsistency by agent 1: a later nonce that under-counts.
    last = [i for i in intents if i.agent == agents[1].public][-1]
    cheat = agents[1].sign(
        last.vendor, nonce=agents[1].next_nonce + 5, cumulative=last.signed.cumulative, amount=2
    )
    good = agents[2].pay(VENDORS[0], 3)
    forged = accepted(SignedIntent(good.signed.message, bytes(64), good.signed.agent), good.vendor)
    expected |= {twin.id, cheat.id}
    stream = [*intents, twin, cheat, forged, *intents[::5], twin, cheat]  # with redeliveries
    return Traffic(
        intents=stream,
        expected_ids=expected,
        honest_agents={a.public for a in agents[2:]},
        cheaters={agents[0].public, agents[1].public},
        forged=forged,
    )


async def produce(
    settings: Settings, intents: list[AcceptedIntent], *, garbage: bool = False
) -> int:
    """Send ``intents`` packed by partition (10 per record); the number of records."""
    kafka = settings.kafka
    sent = 0
    topic = topic_name(topics.INTENTS_ACCEPTED, kafka)
    codec = WireCodec(topic_prefix=kafka.topic_prefix)
    producer = AIOKafkaProducer(**producer_kwargs(kafka, role="test"))
    await producer.start()
    try:
        packed = pack_by_partition(intents, settings.local_kafka.partitions, max_per_record=10)
        for partition, chunks in packed.items():
            for chunk in chunks:
                value = codec.encode(topic, intent_batch(chunk, producer="test", now_ms=1))
                await producer.send_and_wait(topic, value, partition=partition)
                sent += 1
        if garbage:
            await producer.send_and_wait(topic, b"\x00not avro at all", partition=0)
            sent += 1
    finally:
        await producer.stop()
    return sent


async def read_topic(
    settings: Settings,
    topic: topics.Topic,
    done: Callable[[list[tuple[bytes | None, dict[str, Any]]]], bool],
    within: float = 60,
) -> list[tuple[bytes | None, dict[str, Any]]]:
    """Every record of ``topic`` from the start until ``done`` holds (or the timeout)."""
    kafka = settings.kafka
    name = topic_name(topic, kafka)
    codec = WireCodec(topic_prefix=kafka.topic_prefix)
    reader = AIOKafkaConsumer(**consumer_kwargs(kafka, group_id=None, role="reader"))
    await reader.start()
    out: list[tuple[bytes | None, dict[str, Any]]] = []
    try:
        tps = [TopicPartition(name, p) for p in range(settings.local_kafka.partitions)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            got = await reader.getmany(timeout_ms=300)
            for tp, recs in got.items():
                for rec in recs:
                    value = codec.decode(
                        rec.value, topic=name, partition=tp.partition, offset=rec.offset
                    )
                    out.append((rec.key, value))
            if done(out):
                break
    finally:
        await reader.stop()
    return out


def covered(batches: list[tuple[bytes | None, dict[str, Any]]]) -> set[bytes]:
    return {i for _, b in batches for i in b["intent_ids"]}


def check_outcome(
    settings: Settings, traffic: Traffic, batches: list[Any], proofs: list[Any], statuses: list[Any]
) -> None:
    # Batches: downstream dedupes by batch_id; distinct batches are disjoint and
    # together hold every intent exactly once, under a correct root.
    by_id: dict[bytes, dict[str, Any]] = {}
    for key, b in batches:
        assert key == b["vendor"]
        if b["batch_id"] in by_id:
            assert by_id[b["batch_id"]]["intent_ids"] == b["intent_ids"]  # a re-emission
        by_id[b["batch_id"]] = b
    all_ids: list[bytes] = []
    for b in by_id.values():
        assert b["root"] == merkle_root(b["intent_ids"])
        assert b["leaf_count"] == len(b["intent_ids"])
        all_ids += b["intent_ids"]
    assert len(all_ids) == len(set(all_ids)), "an intent is in two different batches"
    assert set(all_ids) == traffic.expected_ids
    assert traffic.forged.id not in set(all_ids) or traffic.forged.id in traffic.expected_ids
    # One proof per offence (records may repeat after a crash; ids do not).
    kinds = {(p["proof_id"], p["kind"], p["agent"]) for _, p in proofs}
    assert sorted(k for _, k, _ in kinds) == ["CHANNEL_INCONSISTENCY", "EQUIVOCATION"]
    assert {a for _, _, a in kinds} == traffic.cheaters
    # The latest status per agent: cheaters banned, honest agents not.
    latest: dict[bytes, dict[str, Any]] = {}
    for _, s in statuses:
        if s["agent"] not in latest or s["version"] > latest[s["agent"]]["version"]:
            latest[s["agent"]] = s
    for agent in traffic.cheaters:
        assert latest[agent]["banned"] is True
        assert latest[agent]["ban_reason"]
    for agent in traffic.honest_agents:
        assert latest[agent]["banned"] is False
        assert latest[agent]["exposure"] > 0


def streams_settings(settings: Settings, **kw: Any) -> Settings:
    cfg = StreamsSettings(batch_max_intents=16, batch_max_age_ms=300, **kw)
    return settings.model_copy(update={"streams": cfg})


async def test_worker_dedupes_proves_bans_and_batches_every_intent_once(
    kafka_settings: Settings,
) -> None:
    settings = streams_settings(kafka_settings, worker_id="w1")
    traffic = make_traffic()
    await produce(settings, traffic.intents, garbage=True)
    stop = asyncio.Event()
    worker = StreamsApp(settings)
    task = asyncio.create_task(worker.run(stop))
    try:
        batches = await read_topic(
            settings, topics.BATCHES_READY, lambda b: covered(b) >= traffic.expected_ids, 25
        )
        proofs = await read_topic(settings, topics.FRAUD_PROOFS, lambda p: len(p) >= 2, 20)
        statuses = await read_topic(
            settings,
            topics.AGENTS_STATUS,
            lambda s: {x["agent"] for _, x in s} >= traffic.cheaters | traffic.honest_agents,
            20,
        )
        rejected = await read_topic(settings, topics.INTENTS_REJECTED, lambda r: len(r) >= 2, 20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    check_outcome(settings, traffic, batches, proofs, statuses)
    assert len(proofs) == 2  # no crash: each proof published exactly once
    assert worker.counters.duplicates == len(traffic.intents) - len(traffic.expected_ids) - 1
    reasons = sorted(r["reason"] for _, r in rejected)
    assert len(reasons) == 2
    forged = next(r for _, r in rejected if r["message"] == traffic.forged.signed.message)
    assert forged["origin"]["topic"] == topic_name(topics.INTENTS_ACCEPTED, settings.kafka)
    assert forged["agent"] == traffic.forged.agent
    garbage = next(r for _, r in rejected if r["raw"] is not None)
    assert garbage["origin"]["partition"] == 0
    assert garbage["reason"] in {"bad_avro", "unknown_schema_id", "short_frame", "bad_magic"}


def worker_process(settings: Settings, name: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MACHPAY_")}
    kafka = settings.kafka
    env.update(
        {
            "MACHPAY_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "MACHPAY_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
            "MACHPAY_KAFKA__SESSION_TIMEOUT_MS": str(kafka.session_timeout_ms),
            "MACHPAY_KAFKA__HEARTBEAT_INTERVAL_MS": str(kafka.heartbeat_interval_ms),
            "MACHPAY_STREAMS__BATCH_MAX_INTENTS": str(settings.streams.batch_max_intents),
            "MACHPAY_STREAMS__BATCH_MAX_AGE_MS": str(settings.streams.batch_max_age_ms),
            "MACHPAY_STREAMS__WORKER_ID": name,
            "PYTHONUNBUFFERED": "1",
        }
    )
    code = "from machpay.cli import main; main()"
    return asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "streams",
        "worker",
        "--log-level",
        "WARNING",
        env=env,
    )


def named(settings: Settings, worker_id: str) -> Settings:
    return settings.model_copy(
        update={"streams": settings.streams.model_copy(update={"worker_id": worker_id})}
    )


@pytest.mark.slow
async def test_kill_9_mid_stream_and_two_restarted_workers_change_no_outcome(
    kafka_settings: Settings,
) -> None:
    settings = streams_settings(kafka_settings)
    traffic = make_traffic(n_agents=10, per_agent=30)
    half = len(traffic.intents) // 2
    await produce(settings, traffic.intents[:half])
    first = await worker_process(settings, "first")
    try:
        early = await read_topic(settings, topics.BATCHES_READY, lambda b: len(b) >= 3, 40)
        assert len(early) >= 3, "the first worker produced no batches"
        await produce(settings, traffic.intents[half:])
        first.send_signal(signal.SIGKILL)  # mid-stream: no flush, no commit of the tail
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    # Two fresh workers share the dead one's partitions: each restores its
    # partitions from the state table and reads only the tail after the mark.
    workers = [StreamsApp(named(settings, "second")), StreamsApp(named(settings, "third"))]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(w.run(s)) for w, s in zip(workers, stops, strict=True)]
    try:
        batches = await read_topic(
            settings, topics.BATCHES_READY, lambda b: covered(b) >= traffic.expected_ids, 90
        )
        proofs = await read_topic(settings, topics.FRAUD_PROOFS, lambda p: len(p) >= 2, 20)
        agents = traffic.cheaters | traffic.honest_agents
        statuses = await read_topic(
            settings, topics.AGENTS_STATUS, lambda s: {x["agent"] for _, x in s} >= agents, 20
        )
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    check_outcome(settings, traffic, batches, proofs, statuses)
    restored = sum(w.counters.restored_records for w in workers)
    assert restored > 0, "the restarted workers did not restore from the state table"


async def produce_facts(settings: Settings, agent: Agent) -> None:
    kafka = settings.kafka
    codec = WireCodec(topic_prefix=kafka.topic_prefix)
    chain = topic_name(topics.CHAIN_EVENTS, kafka)
    settled = topic_name(topics.SETTLEMENTS, kafka)
    me = agent.public

    def event(kind: str, amount: int, sig: str, unlock_at: int | None = None) -> bytes:
        return codec.encode(
            chain,
            {
                "kind": kind,
                "account": me,
                "agent": me,
                "vendor": None,
                "amount": amount,
                "slot": 1,
                "signature": sig,
                "at_ms": 1,
                "batch_id": None,
                "unlock_at": unlock_at,
            },
        )

    settlement = codec.encode(
        settled,
        {
            "batch_id": b"\x07" * 32,
            "vendor": VENDORS[0],
            "status": "CONFIRMED",
            "signature": "sig-settle",
            "slot": 2,
            "reason": None,
            "channels": [
                {
                    "channel": agent.channel(VENDORS[0]),
                    "agent": me,
                    "settled_cumulative": 30,
                    "paid": 30,
                }
            ],
            "at_ms": 2,
        },
    )
    producer = AIOKafkaProducer(**producer_kwargs(kafka, role="test"))
    await producer.start()
    try:
        await producer.send_and_wait(chain, event("BOND_DEPOSITED", 1000, "sig-bond"), key=me)
        await producer.send_and_wait(chain, event("BOND_DEPOSITED", 1000, "sig-bond"), key=me)
        await producer.send_and_wait(settled, settlement, key=VENDORS[0])
        await producer.send_and_wait(
            chain, event("WITHDRAW_REQUESTED", 200, "sig-withdraw", unlock_at=123), key=me
        )
    finally:
        await producer.stop()


async def test_exposure_follows_intents_settlements_and_bond_events_and_withdrawal_closes(
    kafka_settings: Settings,
) -> None:
    # Batches never close on age here: only the pending withdrawal closes them.
    cfg = StreamsSettings(batch_max_intents=1000, batch_max_age_ms=600_000)  # type: ignore[call-arg]
    settings = kafka_settings.model_copy(update={"streams": cfg})
    agent = Agent(keypair("exposure-int"))
    intents = [agent.pay(VENDORS[0], 5) for _ in range(10)]
    intents += [agent.pay(VENDORS[1], 3) for _ in range(4)]
    await produce_facts(settings, agent)
    await produce(settings, intents)
    expected = {i.id for i in intents}

    def final(statuses: list[tuple[bytes | None, dict[str, Any]]]) -> bool:
        return any(s["exposure"] == 32 and s["pending_withdrawal"] for _, s in statuses)

    stop = asyncio.Event()
    task = asyncio.create_task(StreamsApp(settings).run(stop))
    try:
        statuses = await read_topic(settings, topics.AGENTS_STATUS, final, 30)
        batches = await read_topic(
            settings, topics.BATCHES_READY, lambda b: covered(b) >= expected, 30
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    latest = max((s for _, s in statuses), key=lambda s: s["version"])
    assert latest["agent"] == agent.public
    assert latest["bond"] == 1000 - 30  # the repeated deposit counted once; net of the 30 paid
    assert latest["settled"] == 30
    assert latest["exposure"] == (50 - 30) + 12
    assert latest["pending_withdrawal"] == {"amount": 200, "unlock_at": 123}
    assert latest["banned"] is False
    assert covered(batches) == expected
    assert {b["close_reason"] for _, b in batches} == {"WITHDRAWAL"}
    vouchers = {v["channel"]: v["cumulative"] for _, b in batches for v in b["vouchers"]}
    assert vouchers == {agent.channel(VENDORS[0]): 50, agent.channel(VENDORS[1]): 12}


async def test_bonds_deposited_before_any_payment_reach_agents_status(
    kafka_settings: Settings,
) -> None:
    """Gateways serve an agent's first call only once its bond is in agents.status:
    a worker that learns of bonds before owning (or seeing intents on) the agents'
    partitions must still publish them."""
    settings = streams_settings(kafka_settings)
    agents = [Agent(keypair(f"bond-only-{i}")) for i in range(8)]
    for agent in agents:
        await produce_facts(settings, agent)
    wanted = {a.public for a in agents}

    def bonded(statuses: list[tuple[bytes | None, dict[str, Any]]]) -> bool:
        return {s["agent"] for _, s in statuses if s["bond"] == 970} >= wanted

    stop = asyncio.Event()
    task = asyncio.create_task(StreamsApp(settings).run(stop))
    try:
        statuses = await read_topic(settings, topics.AGENTS_STATUS, bonded, 30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    # produce_facts deposits 1000 and settles 30 of it.
    assert {s["agent"] for _, s in statuses if s["bond"] == 970} >= wanted, (
        "a bond known before any payment was not published to agents.status"
    )


@pytest.mark.slow
async def test_a_second_worker_joining_mid_stream_changes_no_outcome(
    kafka_settings: Settings,
) -> None:
    settings = streams_settings(kafka_settings)
    traffic = make_traffic(n_agents=10, per_agent=30)
    half = len(traffic.intents) // 2
    await produce(settings, traffic.intents[:half])
    stops = [asyncio.Event(), asyncio.Event()]
    first = StreamsApp(named(settings, "a"))
    second = StreamsApp(named(settings, "b"))
    tasks = [asyncio.create_task(first.run(stops[0]))]
    try:
        early = await read_topic(settings, topics.BATCHES_READY, lambda b: len(b) >= 3, 40)
        assert len(early) >= 3
        tasks.append(asyncio.create_task(second.run(stops[1])))  # a rebalance with open batches
        for _ in range(300):
            if second.owned:
                break
            await asyncio.sleep(0.1)
        assert second.owned, "the second worker never got a partition"
        await produce(settings, traffic.intents[half:])
        batches = await read_topic(
            settings, topics.BATCHES_READY, lambda b: covered(b) >= traffic.expected_ids, 60
        )
        proofs = await read_topic(settings, topics.FRAUD_PROOFS, lambda p: len(p) >= 2, 20)
        agents = traffic.cheaters | traffic.honest_agents
        statuses = await read_topic(
            settings, topics.AGENTS_STATUS, lambda s: {x["agent"] for _, x in s} >= agents, 20
        )
        owned = set(first.owned) | set(second.owned)
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    check_outcome(settings, traffic, batches, proofs, statuses)
    assert owned == set(range(settings.local_kafka.partitions))


async def test_graceful_stop_leaves_a_marker_so_the_next_owner_closes_open_batches(
    kafka_settings: Settings,
) -> None:
    cfg = StreamsSettings(batch_max_intents=1000, batch_max_age_ms=600_000)  # type: ignore[call-arg]
    settings = kafka_settings.model_copy(update={"streams": cfg})
    agent = Agent(keypair("shutdown-int"))
    intents = [agent.pay(VENDORS[2], 4) for _ in range(12)]
    await produce(settings, intents)
    stop = asyncio.Event()
    first = StreamsApp(settings)
    task = asyncio.create_task(first.run(stop))
    try:
        await read_topic(settings, topics.AGENTS_STATUS, lambda s: len(s) >= 1, 30)
        assert first.counters.batches == 0  # open: neither size nor age reached
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    stop = asyncio.Event()
    second = StreamsApp(settings)
    task = asyncio.create_task(second.run(stop))
    try:
        batches = await read_topic(
            settings, topics.BATCHES_READY, lambda b: covered(b) >= {i.id for i in intents}, 30
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert [b["close_reason"] for _, b in batches] == ["SHUTDOWN"]
    # The next owner restored the open batch from the table and applied only the marker.
    assert second.counters.restored_records == first.counters.records
    assert second.counters.records == 1
    assert covered(batches) == {i.id for i in intents}


async def commit_to_end(settings: Settings, group: str) -> None:
    """Commit the end of every partition for ``group``, as if all were processed."""
    kafka = settings.kafka
    name = topic_name(topics.INTENTS_ACCEPTED, kafka)
    consumer = AIOKafkaConsumer(**consumer_kwargs(kafka, group_id=group, role="committer"))
    await consumer.start()
    try:
        tps = [TopicPartition(name, p) for p in range(settings.local_kafka.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: end for tp, end in ends.items() if end})
    finally:
        await consumer.stop()


async def test_records_committed_past_the_snapshot_are_read_again_by_the_next_owner(
    kafka_settings: Settings,
) -> None:
    # Faust commits acked offsets on its own timer and can ack a chunk it never
    # finished (a stop cancels it): its offsets are committed, its snapshot and
    # outputs may be missing. The next owner must apply those records itself.
    settings = streams_settings(kafka_settings, worker_id="before")
    traffic = make_traffic()
    half = len(traffic.intents) // 2
    first_records = await produce(settings, traffic.intents[:half])
    stop = asyncio.Event()
    first = StreamsApp(settings)
    task = asyncio.create_task(first.run(stop))
    try:
        for _ in range(300):
            if first.counters.records >= first_records:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    # >=: the worker's own age markers are records of the partition too.
    assert first.counters.records >= first_records
    skipped = await produce(settings, traffic.intents[half:])
    await commit_to_end(settings, first.app_id)  # nothing of these was applied
    stop = asyncio.Event()
    second = StreamsApp(named(settings, "after"))
    task = asyncio.create_task(second.run(stop))
    try:
        batches = await read_topic(
            settings, topics.BATCHES_READY, lambda b: covered(b) >= traffic.expected_ids, 30
        )
        proofs = await read_topic(settings, topics.FRAUD_PROOFS, lambda p: len(p) >= 2, 20)
        agents = traffic.cheaters | traffic.honest_agents
        statuses = await read_topic(
            settings, topics.AGENTS_STATUS, lambda s: {x["agent"] for _, x in s} >= agents, 20
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    check_outcome(settings, traffic, batches, proofs, statuses)
    # Read when the partitions were taken (the first worker's SHUTDOWN markers
    # sit between the halves and are read too), not only when Faust went on.
    assert second.counters.tail_records >= skipped
    assert second.counters.restored_records >= first_records


async def test_a_table_that_disagrees_with_itself_is_replayed_from_the_start_and_cleaned_up(
    kafka_settings: Settings,
) -> None:
    settings = streams_settings(kafka_settings, worker_id="one")
    traffic = make_traffic()
    sent = await produce(settings, traffic.intents)
    stop = asyncio.Event()
    first = StreamsApp(settings)
    task = asyncio.create_task(first.run(stop))
    try:
        for _ in range(300):
            if first.counters.records >= sent:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    # A table that disagrees with itself (lost changelog records): the victim's
    # head, in both slots, claims intents whose blocks do not exist.
    victim = next(iter(traffic.cheaters))
    partition = partition_for_key(victim, settings.local_kafka.partitions)
    ghost = AgentState()
    ghost.nonces = dict.fromkeys(range(5_000), traffic.intents[0].signed)
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka, role="test"))
    await producer.start()
    try:
        for slot in (0, 1):
            await producer.send_and_wait(
                f"{first.app_id}-{STATE_TABLE}-changelog",
                snapshot.encode_head(ghost, covered=1),
                key=snapshot.slotted(snapshot.head_key(victim), slot),
                partition=partition,
            )
    finally:
        await producer.stop()

    async def again(name: str) -> tuple[StreamsApp, list[Any], list[Any], list[Any]]:
        worker = StreamsApp(named(settings, name))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            batches = await read_topic(
                settings, topics.BATCHES_READY, lambda b: covered(b) >= traffic.expected_ids, 30
            )
            proofs = await read_topic(settings, topics.FRAUD_PROOFS, lambda p: len(p) >= 2, 20)
            agents = traffic.cheaters | traffic.honest_agents
            statuses = await read_topic(
                settings, topics.AGENTS_STATUS, lambda s: {x["agent"] for _, x in s} >= agents, 20
            )
            for _ in range(100):
                if len(worker.owned) == settings.local_kafka.partitions:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        return worker, batches, proofs, statuses

    second, batches, proofs, statuses = await again("two")
    check_outcome(settings, traffic, batches, proofs, statuses)
    assert second.counters.torn_snapshots == 1
    assert second.counters.tail_records > 0  # the torn partition, read from its start
    # The replay rewrote that partition's keys: the next take restores cleanly.
    third, batches, proofs, statuses = await again("three")
    check_outcome(settings, traffic, batches, proofs, statuses)
    assert third.counters.torn_snapshots == 0
    assert third.counters.tail_records == 0
