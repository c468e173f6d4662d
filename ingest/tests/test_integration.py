"""The receiver served by uvicorn on 127.0.0.1 in front of the real local Kafka
broker: valid intents land on intents.accepted and refusals on
intents.rejected, SDK logs land on client.logs, a receiver without Kafka
answers 503 + Retry-After and a full in-flight bound 429, with nothing of the
refused request produced; `machpay ingest` serves from a config file."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from machpay import topics
from machpay.cli import cli
from machpay.config import Settings
from machpay.ingest.app import Ingest, create_app
from machpay.ingest.testing import (
    AGENT_KEY,
    GATEWAY_KEY,
    World,
    intent_json,
    log_json,
)
from machpay.protocol import bytes_to_address
from machpay.sdk.telemetry import CallRecord, Outcome, TelemetryPusher
from machpay.testing import free_port, read_topic, serve_in_thread


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def served(settings: Settings) -> Iterator[tuple[str, Ingest]]:
    app = create_app(settings)
    with serve_in_thread(app, free_port()) as url:
        ingest: Ingest = app.state.ingest
        deadline = time.monotonic() + 20
        while not ingest.producer.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        yield url, ingest


def intent_count(values: list[dict[str, Any]]) -> int:
    return sum(len(v["intents"]) for v in values)


@pytest.mark.integration
async def test_partial_invalid_batch_lands_valid_intents_and_dead_letters_the_rest(
    kafka_settings: Settings, world: World
) -> None:
    settings = world.kafka_settings(kafka_settings)
    signer = world.signer(settings)
    good = [signer.sign() for _ in range(20)]
    vendor = world.vendor.public
    records = [intent_json(s, vendor) for s in good]
    records.insert(3, intent_json(signer.sign(), vendor, signature=records[0]["signature"]))
    records.insert(7, intent_json(good[0], vendor, message="%%%"))
    with served(settings) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post(
                "/v1/intents", json={"intents": records}, headers=auth(GATEWAY_KEY)
            )
            assert (await client.get("/readyz")).status_code == 200
    assert response.status_code == 207
    assert response.json()["accepted"] == 20
    assert [(r["index"], r["reason"]) for r in response.json()["rejected"]] == [
        (3, "bad_signature"),
        (7, "bad_field"),
    ]
    # The 2xx came after acks=all: everything is already on the broker.
    accepted = await read_topic(
        settings, topics.INTENTS_ACCEPTED, done=lambda v: intent_count(v) >= 20, wait_seconds=10
    )
    landed = [i for batch in accepted for i in batch["intents"]]
    assert sorted(i["id"] for i in landed) == sorted(s.id for s in good)
    assert len(accepted) == 1, "one agent, one partition: one record"
    assert {i["source"] for i in landed} == {"INGEST"}
    rejected = await read_topic(
        settings, topics.INTENTS_REJECTED, done=lambda v: len(v) >= 2, wait_seconds=10
    )
    assert sorted(r["reason"] for r in rejected) == ["bad_field", "bad_signature"]
    assert {r["source"] for r in rejected} == {"ingest"}
    assert (
        next(r for r in rejected if r["reason"] == "bad_signature")["agent"] == world.agent.public
    )


@pytest.mark.integration
async def test_sdk_telemetry_lands_on_client_logs(kafka_settings: Settings, world: World) -> None:
    settings = world.kafka_settings(kafka_settings)
    agent = bytes_to_address(world.agent.public)
    with served(settings) as (url, _):
        pusher = TelemetryPusher(url, AGENT_KEY, flush_interval=0.05)
        try:
            for i in range(7):
                pusher.record(
                    CallRecord(
                        agent=agent,
                        url=f"http://127.0.0.1:1/v1/search?q={i}",
                        method="GET",
                        vendor=bytes_to_address(world.vendor.public),
                        status=200,
                        latency_ms=1.25,
                        amount=1_000,
                        intent_id=os.urandom(32).hex(),
                        outcome=Outcome.PAID,
                        error=None,
                        at_ms=int(time.time() * 1000),
                        sdk_version="0.1.0",
                    )
                )
            assert await asyncio.to_thread(pusher.flush, 15.0)
        finally:
            pusher.close()
        assert pusher.sent == 7
        assert pusher.failed_batches == 0
    logs = await read_topic(
        settings,
        topics.CLIENT_LOGS,
        done=lambda v: sum(len(b["records"]) for b in v) >= 7,
        wait_seconds=10,
    )
    records = [r for batch in logs for r in batch["records"]]
    assert len(records) == 7
    assert {r["agent"] for r in records} == {world.agent.public}
    assert {r["outcome"] for r in records} == {"PAID"}
    assert {b["producer"] for b in logs} == {"ingest-test"}


def test_kafka_unreachable_answers_503_with_retry_after(world: World) -> None:
    """No broker at all: refused before anything is read or verified; not ready."""
    settings = world.settings(retry_after_seconds=3)
    dead = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"bootstrap_servers": f"127.0.0.1:{free_port()}"}
            )
        }
    )
    signer = world.signer(dead)
    with served(dead) as (url, ingest):
        assert not ingest.producer.connected
        response = httpx.post(
            url + "/v1/intents",
            json={"intents": [intent_json(signer.sign(), world.vendor.public)]},
            headers=auth(GATEWAY_KEY),
        )
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert response.json()["error"] == "kafka_unavailable"
        ready = httpx.get(url + "/readyz")
        assert ready.status_code == 503
        assert ready.headers["retry-after"] == "3"
        assert httpx.get(url + "/healthz").status_code == 200


@pytest.mark.integration
async def test_full_in_flight_bound_answers_429_and_produces_nothing_of_the_request(
    kafka_settings: Settings, world: World
) -> None:
    settings = world.kafka_settings(kafka_settings, max_in_flight_records=100)
    signer = world.signer(settings)
    refused = [signer.sign() for _ in range(5)]
    later = [signer.sign() for _ in range(5)]
    vendor = world.vendor.public
    with served(settings) as (url, ingest):
        # Records of other requests awaiting acknowledgement fill the bound.
        ingest.producer.in_flight_records = 100
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post(
                "/v1/intents",
                json={"intents": [intent_json(s, vendor) for s in refused]},
                headers=auth(GATEWAY_KEY),
            )
            assert response.status_code == 429
            assert response.headers["retry-after"] == "1"
            assert "ingest.max_in_flight_records = 100" in response.json()["detail"]
            ingest.producer.in_flight_records = 0
            response = await client.post(
                "/v1/intents",
                json={"intents": [intent_json(s, vendor) for s in later]},
                headers=auth(GATEWAY_KEY),
            )
            assert response.status_code == 200
        assert ingest.producer.in_flight_records == 0, "acknowledged records leave the bound"
    accepted = await read_topic(
        settings, topics.INTENTS_ACCEPTED, done=lambda v: intent_count(v) >= 5, wait_seconds=10
    )
    await asyncio.sleep(0.5)  # anything else would already be there: it was acknowledged first
    accepted = await read_topic(
        settings, topics.INTENTS_ACCEPTED, done=lambda v: False, wait_seconds=1
    )
    ids = [i["id"] for batch in accepted for i in batch["intents"]]
    assert sorted(ids) == sorted(s.id for s in later)


@pytest.mark.integration
def test_topic_missing_on_the_cluster_answers_503(kafka_settings: Settings, world: World) -> None:
    """Connected, but no metadata for the topic within the produce timeout: 503."""
    settings = world.kafka_settings(kafka_settings, produce_timeout_seconds=1.0)
    missing = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"topic_prefix": "absent."})}
    )
    signer = world.signer(missing)
    with served(missing) as (url, ingest):
        assert ingest.producer.connected
        response = httpx.post(
            url + "/v1/intents",
            json={"intents": [intent_json(signer.sign(), world.vendor.public)]},
            headers=auth(GATEWAY_KEY),
            timeout=15,
        )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


def test_cli_help_names_every_option() -> None:
    result = CliRunner().invoke(cli, ["ingest", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--config", "--host", "--port", "--workers", "--log-level", "/v1/intents"):
        assert option in result.output


def test_cli_refuses_to_start_without_a_key_file(tmp_path: Path) -> None:
    config = tmp_path / "ingest.toml"
    config.write_text("[ingest]\nport = 0\n")
    result = CliRunner().invoke(cli, ["ingest", "--config", str(config)])
    assert result.exit_code != 0
    assert "ingest.keys_file" in result.output


@contextmanager
def ingest_process(
    kafka_settings: Settings, world: World, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`machpay ingest --config FILE --port P` as its own process, ready."""
    port = free_port()
    config = tmp_path / "ingest.toml"
    config.write_text(
        "[kafka]\n"
        f'bootstrap_servers = "{kafka_settings.kafka.bootstrap_servers}"\n'
        f'topic_prefix = "{kafka_settings.kafka.topic_prefix}"\n'
        "[ingest]\n"
        f'keys_file = "{world.keys_file}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MACHPAY_")}
    command = [sys.executable, "-m", "machpay.cli", "ingest", "--config", str(config)]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(20)


@pytest.mark.integration
def test_cli_serves_from_a_config_file(
    kafka_settings: Settings, world: World, tmp_path: Path
) -> None:
    with ingest_process(kafka_settings, world, tmp_path) as (url, _):
        signer = world.signer(kafka_settings)
        response = httpx.post(
            url + "/v1/intents",
            json={"intents": [intent_json(signer.sign(), world.vendor.public)]},
            headers=auth(GATEWAY_KEY),
        )
        assert response.status_code == 200
        logs = httpx.post(
            url + "/v1/logs",
            json={"records": [log_json(world.agent.public)]},
            headers=auth(AGENT_KEY),
        )
        assert logs.status_code == 200


@pytest.mark.integration
async def test_kill_9_mid_load_loses_nothing_that_was_answered_200(
    kafka_settings: Settings, world: World, tmp_path: Path
) -> None:
    """A 2xx means durable: every intent of every 200 answered before a kill -9
    is on intents.accepted; requests cut off get no 2xx (the client retries)."""
    signer = world.signer(kafka_settings)
    batches = [[signer.sign() for _ in range(50)] for _ in range(60)]
    acknowledged: list[bytes] = []
    failures = 0
    with ingest_process(kafka_settings, world, tmp_path) as (url, proc):
        queue = list(reversed(batches))

        async def client_loop(client: httpx.AsyncClient) -> None:
            nonlocal failures
            while queue:
                batch = queue.pop()
                body = {"intents": [intent_json(s, world.vendor.public) for s in batch]}
                try:
                    response = await client.post(
                        "/v1/intents", json=body, headers=auth(GATEWAY_KEY)
                    )
                except httpx.HTTPError:
                    failures += 1
                    continue
                assert response.status_code == 200, response.text
                acknowledged.extend(s.id for s in batch)
                if len(acknowledged) >= 500 and proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)

        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await asyncio.gather(*(client_loop(client) for _ in range(3)))
        assert proc.wait(10) == -signal.SIGKILL
    assert failures > 0, "the kill happened mid-load"
    assert len(acknowledged) < 50 * 60
    landed = await read_topic(
        kafka_settings,
        topics.INTENTS_ACCEPTED,
        done=lambda v: len(set(acknowledged) - {i["id"] for b in v for i in b["intents"]}) == 0,
        wait_seconds=15,
    )
    ids = {i["id"] for batch in landed for i in batch["intents"]}
    assert set(acknowledged) <= ids


@pytest.mark.integration
async def test_long_routes_and_urls_are_split_under_the_record_size_limit(
    kafka_settings: Settings, world: World
) -> None:
    """1,000 intents with 1,024-character routes of 4-byte characters (~4 MiB) and
    logs with 4 KiB URLs still land: records are sized under max.request.size."""
    settings = world.kafka_settings(kafka_settings, max_body_bytes=16 << 20)
    signer = world.signer(settings)
    route = "\U0001d11e" * 1_024
    signed = [signer.sign() for _ in range(1_000)]
    url_long = "http://127.0.0.1/" + "x" * 4_000
    with served(settings) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            response = await client.post(
                "/v1/intents",
                json={
                    "intents": [intent_json(s, world.vendor.public, route=route) for s in signed]
                },
                headers=auth(GATEWAY_KEY),
            )
            assert response.status_code == 200, response.text
            logs = await client.post(
                "/v1/logs",
                json={
                    "records": [
                        log_json(world.agent.public, url=url_long, error="e" * 2_000)
                        for _ in range(1_000)
                    ]
                },
                headers=auth(AGENT_KEY),
            )
            assert logs.status_code == 200, logs.text
    accepted = await read_topic(
        settings, topics.INTENTS_ACCEPTED, done=lambda v: intent_count(v) >= 1_000
    )
    assert intent_count(accepted) == 1_000
    assert len(accepted) > 1, "split into several records"
    assert {i["route"] for batch in accepted for i in batch["intents"]} == {route}
