"""Paid requests/s through the gateway against the same gateway with payments off.

Processes, all on 127.0.0.1: an upstream (the echo app under uvicorn), three
`machpay gateway` processes in front of it (payments off = the baseline;
payments on with the spool's group-commit fsync = the product; payments on
without fsync = what the fsync costs), a Kafka broker for the paid ones (a
fresh local broker on free ports, or MACHPAY_BENCH_BOOTSTRAP), and the load
generator in its own process: a minimal keep-alive HTTP/1.1 client (not
httpx, so the generator is not the bottleneck) sending pre-signed requests
whose intents reuse one fresh challenge per connection (one agent per
connection, so each channel's nonces arrive in order).

Figures (medians of runs alternating between configurations):
* throughput at ``CONCURRENCY`` connections, ``COUNT`` requests per run;
* latency at one connection, ``LATENCY_COUNT`` sequential requests: the added
  p50/p99 is paid minus off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.harness import Figure, cpu_seconds, local_kafka, median, record, run_loadgen

CONCURRENCY = 16
COUNT = 3_000  # requests per throughput run
# 1,000 sequential requests per latency run: a p99 of 400 was the 5th-worst sample,
# which on this shared 2-core machine is mostly other sessions' scheduling noise.
LATENCY_COUNT = 1_000
RUNS = 5
SETUP_TIMEOUT = 60


def _free_port() -> int:
    from machpay.testing import free_port

    return free_port()


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SETUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def _process(
    args: list[str], url: str, log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        _wait_http(url, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _gateway_config(
    path: Path, *, kafka: Any, upstream: str, spool: Path, payments: bool, fsync: bool
) -> Path:
    from machpay.config import to_toml
    from machpay.gateway.testing import FREE_ROUTES, PAID_ROUTES
    from machpay.protocol import Keypair

    gateway: dict[str, Any] = {
        "vendor_address": Keypair.generate().address,
        "spool_dir": str(spool),
        "payments_enabled": payments,
        "spool_fsync": fsync,
        "unknown_agent_allowance": 10**18,
        "routes": [{**r, "upstream": upstream} for r in PAID_ROUTES],
        "free_routes": [{**r, "upstream": upstream} for r in FREE_ROUTES],
    }
    sections: dict[str, dict[str, Any]] = {}
    if kafka is not None:
        sections["kafka"] = {
            "bootstrap_servers": kafka.kafka.bootstrap_servers,
            "topic_prefix": kafka.kafka.topic_prefix,
        }
    else:
        sections["kafka"] = {"bootstrap_servers": f"127.0.0.1:{_free_port()}"}
    sections["gateway"] = gateway
    path.write_text(to_toml(sections))
    return path


# --- the load generator (its own process) --------------------------------------------


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[int, float]:
    started = time.perf_counter()
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status, time.perf_counter() - started


def _sign_requests(url: str, paid: bool, count: int) -> list[bytes]:
    """``count`` requests for one connection (one agent), signed if ``paid``."""
    from machpay.gateway.testing import PayingAgent
    from machpay.x402 import PaymentRequired

    host = url.removeprefix("http://")
    if not paid:
        return [
            f"GET /v1/search?q={i} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for i in range(count)
        ]
    first = httpx.get(url + "/v1/search?q=0")
    required = PaymentRequired.from_body(first.content)
    agent = PayingAgent()
    out = []
    for i in range(count):
        path = f"/v1/search?q={i}"
        header, _ = agent.pay(required, method="GET", url=url + path)
        out.append(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nPAYMENT-SIGNATURE: {header}\r\n\r\n".encode()
        )
    return out


async def _load(url: str, paid: bool, count: int, concurrency: int) -> dict[str, Any]:
    per = count // concurrency
    batches = [_sign_requests(url, paid, per) for _ in range(concurrency)]
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def connection(requests: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for data in requests:
                status, seconds = await _request(reader, writer, data)
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(seconds)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(connection(b) for b in batches)), 120)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "statuses": statuses,
    }


def _loadgen(url: str, paid: bool, count: int, concurrency: int) -> dict[str, Any]:
    mode = "--paid" if paid else "--free"
    args = ["--loadgen", url, mode, "--count", str(count), "--concurrency", str(concurrency)]
    result = run_loadgen("bench.bench_gateway", args, timeout=180)
    if set(result["statuses"]) != {"200"}:
        raise RuntimeError(f"{url}: not every request succeeded: {result['statuses']}")
    return result


# --- the benchmark ----------------------------------------------------------------------


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="machpay-bench-gw-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "MACHPAY_GATEWAY__CHALLENGE_SECRET": os.urandom(32).hex()}
        env.pop("MACHPAY_CONFIG", None)
        with local_kafka(work, "gateway") as kafka, contextlib.ExitStack() as stack:
            up_port = _free_port()
            upstream = f"http://127.0.0.1:{up_port}"
            stack.enter_context(
                _process(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "machpay.gateway.testing:echo_upstream",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(up_port),
                        "--log-level",
                        "warning",
                        "--no-access-log",
                    ],
                    upstream + "/",
                    work / "upstream.log",
                    env,
                )
            )
            urls: dict[str, str] = {}
            pids: dict[str, int] = {}
            for name, payments, fsync in (
                ("off", False, True),
                ("paid", True, True),
                ("paid-nofsync", True, False),
            ):
                port = _free_port()
                config = _gateway_config(
                    work / f"{name}.toml",
                    kafka=kafka,
                    upstream=upstream,
                    spool=work / f"spool-{name}",
                    payments=payments,
                    fsync=fsync,
                )
                urls[name] = f"http://127.0.0.1:{port}"
                pids[name] = stack.enter_context(
                    _process(
                        [
                            sys.executable,
                            "-m",
                            "machpay.cli",
                            "gateway",
                            "--config",
                            str(config),
                            "--port",
                            str(port),
                            "--log-level",
                            "warning",
                        ],
                        urls[name] + "/healthz",
                        work / f"{name}.log",
                        env,
                    )
                ).pid
            # Warm up connection pools and the channel PDA cache.
            for name, url in urls.items():
                _loadgen(url, name != "off", 200, 4)
            throughput: dict[str, list[float]] = {name: [] for name in urls}
            cpu_us: dict[str, list[float]] = {name: [] for name in urls}
            latency: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
            for run in range(RUNS):
                for name, url in urls.items():
                    before = cpu_seconds([pids[name]])
                    result = _loadgen(url, name != "off", COUNT, CONCURRENCY)
                    cpu_us[name].append(1e6 * (cpu_seconds([pids[name]]) - before) / COUNT)
                    throughput[name].append(result["rps"])
                    latency[name].append(_loadgen(url, name != "off", LATENCY_COUNT, 1))
                    print(
                        f"  run {run + 1} {name:>13}: {result['rps']:,.0f} req/s at "
                        f"{CONCURRENCY} connections ({cpu_us[name][-1]:,.0f} us gateway CPU "
                        f"each); p50 {latency[name][-1]['p50_ms']:.3f} ms, "
                        f"p99 {latency[name][-1]['p99_ms']:.3f} ms at 1"
                    )

    def lat(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in latency[name]))

    off, paid, nofsync = (median(throughput[n]) for n in ("off", "paid", "paid-nofsync"))
    figures = [
        Figure(
            "paid requests/s (spool fsync, Kafka acks=all)",
            paid,
            "req/s",
            baseline="same gateway, payments off",
            baseline_value=off,
            target="ratio >= 0.8",
            runs=throughput["paid"],
        ),
        Figure(
            "paid requests/s without spool fsync",
            nofsync,
            "req/s",
            baseline="same gateway, payments off",
            baseline_value=off,
            runs=throughput["paid-nofsync"],
        ),
        Figure(
            "p50 added latency (1 connection)",
            lat("paid", "p50_ms") - lat("off", "p50_ms"),
            "ms",
            target="-",
        ),
        Figure(
            "p99 added latency (1 connection)",
            lat("paid", "p99_ms") - lat("off", "p99_ms"),
            "ms",
            target="<= 1 ms",
        ),
        Figure(
            "p99 added latency without fsync (1 connection)",
            lat("paid-nofsync", "p99_ms") - lat("off", "p99_ms"),
            "ms",
        ),
        Figure("p50 latency, payments off (1 connection)", lat("off", "p50_ms"), "ms"),
        Figure(
            "gateway CPU per request, payments off (baseline)",
            median(cpu_us["off"]),
            "us",
            runs=cpu_us["off"],
        ),
        Figure(
            "gateway CPU per paid request (spool fsync, Kafka producer)",
            median(cpu_us["paid"]),
            "us",
            baseline="payments off",
            baseline_value=median(cpu_us["off"]),
            runs=cpu_us["paid"],
        ),
    ]
    record("gateway", figures, "python -m bench gateway")


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loadgen", metavar="URL", help="run the load generator against URL")
    parser.add_argument("--paid", dest="paid", action="store_true")
    parser.add_argument("--free", dest="paid", action="store_false")
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args()
    if args.loadgen:
        result = asyncio.run(_load(args.loadgen, args.paid, args.count, args.concurrency))
        result["statuses"] = {str(k): v for k, v in result["statuses"].items()}
        print(json.dumps(result))
    else:
        main()


if __name__ == "__main__":
    _cli()
