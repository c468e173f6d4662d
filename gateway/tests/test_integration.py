"""The real gateway (uvicorn) in front of a real upstream (uvicorn) with the real
local Kafka broker: paid calls land on intents.accepted, refusals on
intents.rejected, agents.status bans an agent, a kill -9 loses nothing served,
and a gateway cut off from Kafka serves, spools and drains."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from machpay import topics
from machpay.config import Settings, to_toml
from machpay.gateway.app import Gateway
from machpay.gateway.testing import (
    PayingAgent,
    accepted_ids,
    echo_upstream,
    gateway_settings,
    wait_until,
)
from machpay.kafka.clients import producer_kwargs, topic_name
from machpay.protocol import Keypair, SignedIntent
from machpay.protocol.signing import L
from machpay.testing import free_port, read_topic, serve_in_thread
from machpay.wire import WireCodec
from machpay.x402 import PaymentPayload, PaymentRequired, PaymentSignature

pytestmark = pytest.mark.integration


@contextmanager
def upstream() -> Iterator[str]:
    with serve_in_thread(echo_upstream, free_port()) as url:
        yield url


@contextmanager
def gateway_thread(settings: Settings) -> Iterator[tuple[str, Gateway]]:
    app = Gateway(settings)
    with serve_in_thread(app, free_port()) as url:
        yield url, app


async def pay(
    client: httpx.AsyncClient, agent: PayingAgent, method: str, path: str, body: bytes = b""
) -> tuple[httpx.Response, SignedIntent]:
    first = await client.request(method, path, content=body)
    assert first.status_code == 402, first.text
    required = PaymentRequired.from_body(first.content)
    header, signed = agent.pay(required, method=method, url=str(client.base_url) + path, body=body)
    response = await client.request(
        method, path, content=body, headers={"PAYMENT-SIGNATURE": header}
    )
    return response, signed


async def test_paid_call_lands_on_intents_accepted_and_refusals_on_intents_rejected(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    vendor = Keypair.generate()
    with upstream() as up:
        settings = gateway_settings(
            spool_dir=tmp_path / "spool", upstream=up, vendor=vendor, base=kafka_settings
        )
        with gateway_thread(settings) as (url, _):
            async with httpx.AsyncClient(base_url=url) as client:
                agent = PayingAgent()
                response, signed = await pay(client, agent, "POST", "/v1/search", b'{"q":1}')
                assert response.status_code == 200, response.text
                assert response.json()["agent"] == agent.keypair.address
                expected, also_served = await _every_refusal(client, vendor)
                metrics = (await client.get("/metrics")).text

    batches = await read_topic(
        kafka_settings,
        topics.INTENTS_ACCEPTED,
        done=lambda values: len(accepted_ids(values)) >= 1 + len(also_served),
    )
    assert sorted(accepted_ids(batches)) == sorted([signed.id, *also_served])
    (record,) = [r for b in batches for r in b["intents"] if bytes(r["id"]) == signed.id]
    assert bytes(record["vendor"]) == vendor.public
    assert record["route"] == "POST /v1/search"
    assert record["service"] == "search"
    assert record["source"] == "GATEWAY"

    rejected = await read_topic(
        kafka_settings,
        topics.INTENTS_REJECTED,
        done=lambda values: Counter(v["reason"] for v in values) == expected,
    )
    assert Counter(v["reason"] for v in rejected) == expected
    assert all(v["source"] == "gateway" for v in rejected)
    assert 'machpay_gateway_paid_total{route="POST /v1/search"} 1.0' in metrics


async def _every_refusal(
    client: httpx.AsyncClient, vendor: Keypair
) -> tuple[Counter[str], list[bytes]]:
    """Try every gateway case of QUALITY.md's table; return the reasons expected on
    intents.rejected and the ids served on the way (the original of the replay)."""
    base = str(client.base_url)
    agent = PayingAgent()
    expected: Counter[str] = Counter()

    async def required(method: str, path: str, body: bytes = b"") -> PaymentRequired:
        response = await client.request(method, path, content=body)
        return PaymentRequired.from_body(response.content)

    async def send(method: str, path: str, header: str, body: bytes = b"") -> httpx.Response:
        return await client.request(
            method, path, content=body, headers={"PAYMENT-SIGNATURE": header}
        )

    async def expect(response: httpx.Response, reason: str, status: int = 402) -> None:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error == reason, response.text
        expected[reason] += 1

    # replayed
    req = await required("GET", "/v1/items/1")
    header, original = agent.pay(req, method="GET", url=base + "/v1/items/1")
    assert (await send("GET", "/v1/items/1", header)).status_code == 200
    await expect(await send("GET", "/v1/items/1", header), "replayed")
    # expired
    req = await required("GET", "/v1/items/1")
    header, _ = agent.pay(
        req, method="GET", url=base + "/v1/items/1", expires_at=int(time.time()) - 5
    )
    await expect(await send("GET", "/v1/items/1", header), "expired")
    # wrong vendor: an intent whose accepted entry and channel name another vendor
    other = Keypair.generate()
    req = await required("GET", "/v1/items/1")
    foreign = req.accepts[0].__class__(
        network=req.accepts[0].network,
        amount=req.accepts[0].amount,
        pay_to=other.public,
        extra=req.accepts[0].extra,
    )
    signed = agent.sign(foreign, method="GET", url=base + "/v1/items/1")
    payment = PaymentSignature(req.resource, foreign, PaymentPayload.from_signed(signed))
    await expect(await send("GET", "/v1/items/1", payment.encode()), "price_mismatch")
    # ... and the same channel under this vendor's accepted entry
    payment = PaymentSignature(req.resource, req.accepts[0], PaymentPayload.from_signed(signed))
    await expect(await send("GET", "/v1/items/1", payment.encode()), "wrong_channel")
    # wrong route (same price, other route)
    req = await required("GET", "/v1/slow")
    header, _ = agent.pay(req, method="GET", url=base + "/v1/stream")
    await expect(await send("GET", "/v1/stream", header), "stale_challenge")
    # tampered body
    req = await required("POST", "/v1/search", b"original")
    header, _ = agent.pay(req, method="POST", url=base + "/v1/search", body=b"original")
    await expect(await send("POST", "/v1/search", header, b"tampered"), "request_mismatch")
    # wrong domain
    req = await required("GET", "/v1/items/1")
    header, _ = agent.pay(req, method="GET", url=base + "/v1/items/1", domain=b"mainnet!")
    await expect(await send("GET", "/v1/items/1", header), "wrong_domain")
    # forged, malleated, small-order signatures
    req = await required("GET", "/v1/items/1")
    signed = agent.sign(req.accepts[0], method="GET", url=base + "/v1/items/1")
    s = int.from_bytes(signed.signature[32:], "little") + L
    identity = b"\x01" + bytes(31)
    for signature, key, reason in (
        (bytes([signed.signature[0] ^ 4]) + signed.signature[1:], signed.agent, "bad_signature"),
        (signed.signature[:32] + s.to_bytes(32, "little"), signed.agent, "non_canonical_signature"),
        (identity + bytes(32), identity, "small_order_key"),
    ):
        payload = PaymentPayload(signed.message, signature, key)
        header = PaymentSignature(req.resource, req.accepts[0], payload).encode()
        await expect(await send("GET", "/v1/items/1", header), reason)
    # malformed header, oversized header and body
    await expect(await send("GET", "/v1/items/1", "not-base64!"), "malformed_header", 400)
    await expect(
        await client.get("/v1/items/1", headers={"x-pad": "p" * 9_000}), "oversized_header", 431
    )
    big = b"x" * (64 * 1024 + 10)
    req = await required("POST", "/v1/search")
    header, _ = agent.pay(req, method="POST", url=base + "/v1/search", body=big)
    await expect(await send("POST", "/v1/search", header, big), "oversized_body", 413)
    return expected, [original.id]


async def _publish_status(settings: Settings, agent: bytes, **fields: Any) -> None:
    codec = WireCodec.from_settings(
        settings.schema_registry, topic_prefix=settings.kafka.topic_prefix
    )
    value = {
        "agent": agent,
        "bond": 1_000_000,
        "pending_withdrawal": None,
        "settled": 0,
        "exposure": 0,
        "banned": False,
        "ban_reason": None,
        "insolvent": False,
        "version": 1,
        "updated_at_ms": int(time.time() * 1000),
    }
    value.update(fields)
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka, role="test"))
    await producer.start()
    try:
        await producer.send_and_wait(
            topic_name(topics.AGENTS_STATUS, settings.kafka),
            codec.encode(topics.AGENTS_STATUS, value),
            key=agent,
        )
    finally:
        await producer.stop()


async def test_agents_status_bans_and_caps_agents(kafka_settings: Settings, tmp_path: Path) -> None:
    banned, capped = PayingAgent(), PayingAgent()
    await _publish_status(kafka_settings, banned.public, banned=True, ban_reason="equivocation")
    # 0.1 of (30,000 - 10,000 exposure) = 2,000: two searches, not three.
    await _publish_status(kafka_settings, capped.public, bond=30_000, exposure=10_000)
    with upstream() as up:
        settings = gateway_settings(
            spool_dir=tmp_path / "spool",
            upstream=up,
            vendor=Keypair.generate(),
            base=kafka_settings,
            unknown_agent_allowance=0,
        )
        with gateway_thread(settings) as (url, app):
            assert await wait_until(lambda: app.ready, 30)
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get("/readyz")).json()["agents_status_loaded"] is True
                response, _ = await pay(client, banned, "GET", "/v1/search")
                assert response.json()["error"] == "agent_banned"
                for _ in range(2):
                    response, _ = await pay(client, capped, "GET", "/v1/search")
                    assert response.status_code == 200
                response, _ = await pay(client, capped, "GET", "/v1/search")
                assert response.json()["error"] == "exposure_cap"
                response, _ = await pay(client, PayingAgent(), "GET", "/v1/search")
                assert response.json()["error"] == "agent_unknown"


# --- crash and outage ------------------------------------------------------------------


class GatewayProcess:
    """`machpay gateway --config FILE` as a child process."""

    def __init__(self, config: Path, port: int, secret: str) -> None:
        self.config = config
        self.port = port
        self.secret = secret
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        env = {**os.environ, "MACHPAY_GATEWAY__CHALLENGE_SECRET": self.secret}
        env.pop("MACHPAY_CONFIG", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "machpay.cli",
                "gateway",
                "--config",
                str(self.config),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.config.with_suffix(".log").open("ab"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.config.with_suffix(".log").read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("gateway did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def write_config(
    path: Path, settings: Settings, up: str, vendor: Keypair, spool: Path, **gateway: Any
) -> Path:
    base = gateway_settings(spool_dir=spool, upstream=up, vendor=vendor, base=settings)
    data = base.model_dump(mode="json")
    section = {k: v for k, v in data["gateway"].items() if k != "challenge_secret"}
    section.update(gateway)
    kafka = {
        k: data["kafka"][k]
        for k in ("bootstrap_servers", "topic_prefix", "client_id", "request_timeout_ms")
    }
    path.write_text(to_toml({"kafka": kafka, "gateway": section}))
    return path


async def _load(url: str, served: list[bytes], stop: asyncio.Event, workers: int) -> None:
    """Paid calls from ``workers`` agents until ``stop`` or the gateway goes away."""

    async def worker() -> None:
        agent = PayingAgent()
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            while not stop.is_set():
                try:
                    response, signed = await pay(client, agent, "POST", "/v1/search", b"{}")
                except (httpx.HTTPError, AssertionError):
                    return
                if response.status_code == 200:
                    served.append(signed.id)

    await asyncio.gather(*(worker() for _ in range(workers)))


@pytest.mark.slow
@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "no-fsync"])
async def test_kill_9_mid_load_loses_no_served_intent(
    kafka_settings: Settings, tmp_path: Path, fsync: bool
) -> None:
    """Without fsync too: a killed process's writes are in the OS already."""
    secret = os.urandom(32).hex()
    with upstream() as up:
        config = write_config(
            tmp_path / "gateway.toml",
            kafka_settings,
            up,
            Keypair.generate(),
            tmp_path / "spool",
            spool_fsync=fsync,
            # Long rounds: at the kill, the last ~0.3 s of intents exist only in the
            # spool, so the restart must replay them.
            producer_linger_ms=300,
        )
        gateway = GatewayProcess(config, free_port(), secret)
        gateway.start()
        served: list[bytes] = []
        stop = asyncio.Event()
        try:
            load = asyncio.ensure_future(_load(gateway.url, served, stop, workers=4))
            await wait_until(lambda: len(served) >= 200 or load.done(), 60, step=0.005)
            gateway.kill()  # SIGKILL while the workers are mid-request
            killed_at = len(served)
            await asyncio.wait_for(load, 30)
            assert killed_at >= 200, f"only {killed_at} paid calls before the kill"
            gateway.start()  # same spool: replays what Kafka had not acknowledged
            wanted = set(served)
            batches = await read_topic(
                kafka_settings,
                topics.INTENTS_ACCEPTED,
                done=lambda values: wanted <= set(accepted_ids(values)),
                wait_seconds=60,
            )
        finally:
            stop.set()
            gateway.stop()
    on_topic = accepted_ids(batches)
    missing = wanted - set(on_topic)
    assert not missing, f"{len(missing)} of {len(wanted)} served intents lost"
    print(
        f"kill -9: {len(wanted)} served (200 OK), {len(set(on_topic))} unique on the topic, "
        f"{len(on_topic) - len(set(on_topic))} duplicates re-produced after restart"
    )


async def test_kafka_unreachable_serves_spools_and_drains(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    cut_off = kafka_settings.model_copy(
        update={"kafka": kafka_settings.kafka.model_copy(update={"bootstrap_servers": closed})}
    )
    vendor = Keypair.generate()
    secret = os.urandom(32)
    spool = tmp_path / "spool"
    served: list[bytes] = []
    with upstream() as up:
        settings = gateway_settings(
            spool_dir=spool, upstream=up, vendor=vendor, base=cut_off, secret=secret
        )
        with gateway_thread(settings) as (url, app):
            async with httpx.AsyncClient(base_url=url) as client:
                agent = PayingAgent()
                for _ in range(25):
                    response, signed = await pay(client, agent, "GET", "/v1/search")
                    assert response.status_code == 200, response.text
                    served.append(signed.id)
                ready = (await client.get("/readyz")).json()
                assert ready["kafka_connected"] is False
                assert ready["queued_intents"] == 25
                assert ready["spool_pending_bytes"] > 0
            assert not app.ready

        # Pointed at the broker again (a restart with the right bootstrap): it drains.
        settings = gateway_settings(
            spool_dir=spool, upstream=up, vendor=vendor, base=kafka_settings, secret=secret
        )
        with gateway_thread(settings) as (url, app):
            assert app.recovered == 25
            await wait_until(lambda: not app.emitter.queue and not app.spool.pending_bytes, 30)
            assert app.spool.pending_bytes == 0
    batches = await read_topic(
        kafka_settings,
        topics.INTENTS_ACCEPTED,
        done=lambda values: set(served) <= set(accepted_ids(values)),
    )
    assert accepted_ids(batches) == served  # all of them, once, in order


async def test_full_spool_is_a_clear_refusal(kafka_settings: Settings, tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"
    cut_off = kafka_settings.model_copy(
        update={"kafka": kafka_settings.kafka.model_copy(update={"bootstrap_servers": closed})}
    )
    with upstream() as up:
        settings = gateway_settings(
            spool_dir=tmp_path / "spool",
            upstream=up,
            vendor=Keypair.generate(),
            base=cut_off,
            spool_max_bytes=4096,
        )
        with gateway_thread(settings) as (url, _):
            async with httpx.AsyncClient(base_url=url) as client:
                agent = PayingAgent()
                statuses = []
                for _ in range(40):
                    response, _ = await pay(client, agent, "GET", "/v1/items/1")
                    statuses.append(response.status_code)
                    if response.status_code == 402:
                        assert response.json()["error"] == "spool_full"
                        break
                assert statuses[-1] == 402
                assert statuses[:-1] == [200] * (len(statuses) - 1)
                assert (await client.get("/docs")).status_code == 200
