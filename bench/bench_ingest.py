"""Intents/s accepted into Kafka (acks=all) through `machpay ingest` against a bare
aiokafka producer sending the same packed records, in the same run.

Processes, all on 127.0.0.1: a Kafka broker (a fresh local one on free ports,
or MACHPAY_BENCH_BOOTSTRAP), `machpay ingest` with 1 and with 2 worker
processes, and the load generator in its own process. The load generator
signs ``COUNT`` intents from ``AGENTS`` agents to one vendor before the clock
starts, groups them in requests of ``BATCH`` intents and keeps
``CONCURRENCY`` requests in flight; every answer must be 200 (acknowledged
by Kafka). The baseline is the same process with the same intents packed
exactly as ingest packs them (pack_by_partition per request, one
IntentBatch per partition), sent by a bare AIOKafkaProducer (acks=all,
idempotent, the shared producer_kwargs) with the same number of batches in
flight: what Kafka and the Python client cost without HTTP, JSON, base58
or signature checks.

A strict signature check costs ~57 us and holds the GIL, so one ingest
process cannot exceed ~17k intents/s whatever else it does; the receiver
scales with processes (``--workers``/``ingest.workers``: uvicorn workers
sharing the port, each with its own producer). On this 2-core machine the
broker and the load generator share those cores with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.harness import Figure, cpu_seconds, local_kafka, median, record, run_loadgen

COUNT = 30_000  # intents per run
BATCH = 500  # intents per request
CONCURRENCY = 8  # requests (or bare batches) in flight
AGENTS = 64
RUNS = 3
SETUP_TIMEOUT = 60
KEY = "bench-gateway-key"


def _free_port() -> int:
    from machpay.testing import free_port

    return free_port()


@contextlib.contextmanager
def _ingest(work: Path, kafka: Any, vendor: str, workers: int) -> Iterator[tuple[str, list[int]]]:
    from machpay.ingest.testing import write_keys

    keys = write_keys(
        work / "keys.json", [{"key": KEY, "name": "bench", "role": "gateway", "vendor": vendor}]
    )
    config = work / f"ingest-{workers}.toml"
    config.write_text(
        "[kafka]\n"
        f'bootstrap_servers = "{kafka.kafka.bootstrap_servers}"\n'
        f'topic_prefix = "{kafka.kafka.topic_prefix}"\n'
        "[ingest]\n"
        f'keys_file = "{keys}"\n'
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MACHPAY_")}
    log = work / f"ingest-{workers}.log"
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "machpay.cli",
                "ingest",
                "--config",
                str(config),
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    try:
        deadline = time.monotonic() + SETUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ingest exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("ingest did not become ready")
            time.sleep(0.1)
        pids = [proc.pid, *_children(proc.pid)]
        yield url, pids
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


# --- the load generator (its own process) --------------------------------------------------


def _sign(vendor: str, count: int) -> list[Any]:
    """``count`` signed intents from AGENTS agents, interleaved (each agent's in nonce order)."""
    from machpay.config import load_settings
    from machpay.ingest.testing import Signer
    from machpay.protocol import address_to_bytes

    settings = load_settings(environ={})
    signers = [Signer(settings, address_to_bytes(vendor)) for _ in range(AGENTS)]
    return [(signers[i % AGENTS], signers[i % AGENTS].sign()) for i in range(count)]


async def _post_all(
    url: str, bodies: list[bytes], concurrency: int, content_type: str
) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    accepted = 0
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": content_type}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while queue:
            body = queue.pop()
            response = await client.post("/v1/intents", content=body, headers=headers)
            statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
            if response.status_code == 200:
                accepted += response.json()["accepted"]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(client) for _ in range(concurrency))), 300)
        elapsed = time.perf_counter() - started
    return {"rate": accepted / elapsed, "accepted": accepted, "statuses": statuses}


async def _bare(bootstrap: str, prefix: str, items: list[Any], concurrency: int) -> dict[str, Any]:
    """The same packed IntentBatch records through a bare AIOKafkaProducer (acks=all)."""
    from aiokafka import AIOKafkaProducer

    from machpay import topics
    from machpay.config import load_settings
    from machpay.kafka.clients import producer_kwargs, topic_name
    from machpay.kafka.packing import pack_by_partition
    from machpay.wire import WireCodec
    from machpay.wire.intents import intent_batch

    settings = load_settings(
        environ={}, overrides={"kafka": {"bootstrap_servers": bootstrap, "topic_prefix": prefix}}
    )
    topic = topic_name(topics.INTENTS_ACCEPTED, settings.kafka)
    codec = WireCodec()
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka, role="bench", linger_ms=2))
    await producer.start()
    try:
        partitions = len(await producer.partitions_for(topic))
        requests: list[list[tuple[int, bytes]]] = []
        for start in range(0, len(items), BATCH):
            accepted = [s.accepted(signed) for s, signed in items[start : start + BATCH]]
            records = []
            for partition, chunks in pack_by_partition(accepted, partitions).items():
                for chunk in chunks:
                    value = intent_batch(chunk, producer="bench", now_ms=int(time.time() * 1000))
                    records.append((partition, codec.encode(topics.INTENTS_ACCEPTED, value)))
            requests.append(records)
        queue = list(reversed(requests))

        async def worker() -> None:
            while queue:
                records = queue.pop()
                futures = [await producer.send(topic, v, partition=p) for p, v in records]
                await asyncio.gather(*futures)

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 300)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return {"rate": len(items) / elapsed, "accepted": len(items), "statuses": {"acked": 1}}


def _loadgen_main(args: argparse.Namespace) -> None:
    import orjson

    from machpay.ingest.testing import intent_json

    items = _sign(args.vendor, args.count)
    if args.verify:
        # The ceiling of one core: strict verification alone, per CPU-second of this
        # process (CPU time, not wall time: stable on a shared machine).
        started = time.process_time()
        for _, signed in items:
            signed.verify()
        elapsed = time.process_time() - started
        result = {"rate": len(items) / elapsed, "accepted": len(items), "statuses": {}}
    elif args.bare:
        bootstrap, prefix = args.bare.split("|", 1)
        result = asyncio.run(_bare(bootstrap, prefix, items, args.concurrency))
    elif args.avro:
        from machpay import topics
        from machpay.ingest.app import AVRO_INTENTS
        from machpay.wire import WireCodec
        from machpay.wire.intents import intent_batch

        codec = WireCodec()
        bodies = [
            codec.encode(
                topics.INTENTS_ACCEPTED,
                intent_batch(
                    [s.accepted(signed) for s, signed in items[i : i + BATCH]],
                    producer="bench-gateway",
                    now_ms=int(time.time() * 1000),
                ),
            )
            for i in range(0, len(items), BATCH)
        ]
        result = asyncio.run(_post_all(args.loadgen, bodies, args.concurrency, AVRO_INTENTS))
    else:
        bodies = [
            orjson.dumps(
                {"intents": [intent_json(signed, s.vendor) for s, signed in items[i : i + BATCH]]}
            )
            for i in range(0, len(items), BATCH)
        ]
        result = asyncio.run(_post_all(args.loadgen, bodies, args.concurrency, "application/json"))
    print(json.dumps(result))


def _loadgen(target: list[str], vendor: str, count: int) -> dict[str, Any]:
    args = [*target, "--vendor", vendor, "--count", str(count), "--concurrency", str(CONCURRENCY)]
    result = run_loadgen("bench.bench_ingest", args, timeout=400)
    if result["accepted"] != count:
        raise RuntimeError(f"{target}: {result['accepted']} of {count} accepted: {result}")
    return result


# --- the benchmark ---------------------------------------------------------------------------


def main() -> None:
    from machpay.protocol import Keypair

    vendor = Keypair.generate().address
    rates: dict[str, list[float]] = {
        "bare": [],
        "verify": [],
        "ingest-1": [],
        "ingest-2": [],
        "ingest-1-avro": [],
    }
    cpu_us: dict[str, list[float]] = {"ingest-1": [], "ingest-2": []}
    with tempfile.TemporaryDirectory(prefix="machpay-bench-ingest-") as tmp:
        work = Path(tmp)
        with local_kafka(work, "ingest") as kafka, contextlib.ExitStack() as stack:
            if kafka is None:
                print("  no Kafka broker (Java or Maven missing): skipped")
                return
            bare = ["--bare", f"{kafka.kafka.bootstrap_servers}|{kafka.kafka.topic_prefix}"]
            servers = {
                name: stack.enter_context(_ingest(work, kafka, vendor, workers))
                for name, workers in (("ingest-1", 1), ("ingest-2", 2))
            }
            _loadgen(bare, vendor, 2_000)  # warm up
            for url, _ in servers.values():
                _loadgen(["--loadgen", url], vendor, 2_000)
            for run in range(RUNS):
                rates["bare"].append(_loadgen(bare, vendor, COUNT)["rate"])
                rates["verify"].append(_loadgen(["--verify"], vendor, COUNT // 3)["rate"])
                url_1 = servers["ingest-1"][0]
                avro = _loadgen(["--loadgen", url_1, "--avro"], vendor, COUNT)
                rates["ingest-1-avro"].append(avro["rate"])
                line = [
                    f"bare {rates['bare'][-1]:,.0f}/s",
                    f"verify-only {rates['verify'][-1]:,.0f}/s",
                    f"ingest-1 avro {rates['ingest-1-avro'][-1]:,.0f}/s",
                ]
                for name, (url, pids) in servers.items():
                    before = cpu_seconds(pids)
                    rates[name].append(_loadgen(["--loadgen", url], vendor, COUNT)["rate"])
                    cpu_us[name].append(1e6 * (cpu_seconds(pids) - before) / COUNT)
                    line.append(
                        f"{name} {rates[name][-1]:,.0f}/s ({cpu_us[name][-1]:.0f} us CPU each)"
                    )
                print(f"  run {run + 1}: " + "; ".join(line))
    base = median(rates["bare"])
    figures = [
        Figure(
            "intents/s accepted via ingest, 2 workers (JSON, strict verify, acks=all)",
            median(rates["ingest-2"]),
            "intents/s",
            baseline="bare aiokafka producer, same packed records",
            baseline_value=base,
            target=">= 20k/s",
            runs=rates["ingest-2"],
        ),
        Figure(
            "intents/s accepted via ingest, 1 worker",
            median(rates["ingest-1"]),
            "intents/s",
            baseline="bare aiokafka producer, same packed records",
            baseline_value=base,
            runs=rates["ingest-1"],
        ),
        Figure(
            "intents/s accepted via ingest, 1 worker, Avro IntentBatch bodies",
            median(rates["ingest-1-avro"]),
            "intents/s",
            baseline="strict verify alone, per CPU-second",
            baseline_value=median(rates["verify"]),
            runs=rates["ingest-1-avro"],
        ),
        Figure(
            "intents/s accepted via ingest, 1 worker, JSON (vs verify ceiling)",
            median(rates["ingest-1"]),
            "intents/s",
            baseline="strict verify alone, per CPU-second",
            baseline_value=median(rates["verify"]),
            runs=rates["ingest-1"],
        ),
        Figure(
            "bare aiokafka producer (acks=all), same packed records",
            base,
            "intents/s",
            runs=rates["bare"],
        ),
        Figure(
            "ingest CPU per intent, 1 worker",
            median(cpu_us["ingest-1"]),
            "us",
            runs=cpu_us["ingest-1"],
        ),
        Figure(
            "ingest capacity per otherwise idle core (1e6 / CPU us per intent)",
            1e6 / median(cpu_us["ingest-1"]),
            "intents/s",
            baseline="strict verify alone, per CPU-second",
            baseline_value=median(rates["verify"]),
        ),
    ]
    record("ingest", figures, "python -m bench ingest")


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loadgen", metavar="URL", help="post the intents to URL")
    parser.add_argument("--bare", metavar="BOOTSTRAP|PREFIX", help="produce them directly")
    parser.add_argument("--avro", action="store_true", help="post Avro IntentBatch bodies")
    parser.add_argument("--verify", action="store_true", help="only time strict verification")
    parser.add_argument("--vendor", default="")
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args()
    if args.loadgen or args.bare or args.verify:
        _loadgen_main(args)
    else:
        main()


if __name__ == "__main__":
    _cli()
