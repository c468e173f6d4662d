"""`machpay kafka` through real subprocesses: lifecycle, topics, and its errors."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from machpay.config import KafkaSettings, load_settings
from machpay.kafka.admin import alist_topics
from machpay.kafka.broker import free_port
from machpay.kafka.clients import consumer_kwargs, partition_for_key, producer_kwargs


def machpay(
    *args: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # Not `python -m machpay.cli`: that runs cli.py as __main__, a second copy of
        # the module whose AppContext the subcommands' pass_app does not find.
        [sys.executable, "-c", "from machpay.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MACHPAY_")}
    # Reuse the jar cache of the developer / CI, never its broker data or ports.
    env["MACHPAY_LOCAL_KAFKA__HOME"] = str(load_settings(environ={}).local_kafka.home)
    env.update(extra)
    return env


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    port, cport = free_port(), free_port()
    while cport == port:
        cport = free_port()
    env = _clean_env(
        MACHPAY_LOCAL_KAFKA__PORT=str(port),
        MACHPAY_LOCAL_KAFKA__CONTROLLER_PORT=str(cport),
        MACHPAY_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        MACHPAY_KAFKA__TOPIC_PREFIX="cli.",
    )
    env["DATA_DIR"] = str(tmp_path / "broker")
    yield env
    # Never leave a broker behind, whatever the test did.
    machpay("kafka", "down", "--data-dir", env["DATA_DIR"], "--timeout", "10", env=env)


async def _roundtrip(kafka: KafkaSettings, topic: str) -> tuple[dict[bytes, int], float]:
    producer = AIOKafkaProducer(**producer_kwargs(kafka, role="test"))
    await producer.start()
    placed: dict[bytes, int] = {}
    try:
        for i in range(40):
            key = f"agent-{i}".encode()
            meta = await producer.send_and_wait(topic, b"intent-%d" % i, key=key)
            placed[key] = meta.partition
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, **consumer_kwargs(kafka, group_id="cli-test", role="test"))
    started = time.monotonic()
    await consumer.start()
    seen: dict[bytes, int] = {}
    join = 0.0
    try:
        while len(seen) < 40:
            batch = await consumer.getmany(timeout_ms=1000)
            if batch and not join:
                join = time.monotonic() - started
            for records in batch.values():
                for record in records:
                    assert record.key is not None
                    seen[record.key] = record.partition
            await consumer.commit()
            assert time.monotonic() - started < 30, "consumer group did not deliver in 30s"
    finally:
        await consumer.stop()
    assert seen == placed
    return placed, join


@pytest.mark.integration
@pytest.mark.slow
def test_up_status_topics_roundtrip_down(cli_env: dict[str, str]) -> None:
    data = cli_env["DATA_DIR"]
    started = time.monotonic()
    up = machpay("kafka", "up", "--data-dir", data, env=cli_env)
    up_seconds = time.monotonic() - started
    assert up.returncode == 0, up.stdout + up.stderr
    port = cli_env["MACHPAY_LOCAL_KAFKA__PORT"]
    assert f"bootstrap   127.0.0.1:{port}" in up.stdout
    assert "8 created" in up.stdout
    assert "cli.agents.status" in up.stdout
    print(f"`machpay kafka up` (format + start + topics) took {up_seconds:.1f}s")

    again = machpay("kafka", "up", "--data-dir", data, env=cli_env)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert "0 created, 8 already there" in again.stdout

    status = machpay("kafka", "status", "--json", "--data-dir", data, env=cli_env)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["running"] is True
    assert info["bootstrap"] == f"127.0.0.1:{port}"
    assert info["topics"]["cli.intents.accepted"] == 6
    assert Path(info["log_file"]).read_text().count("Kafka Server started") >= 1

    settings = load_settings(environ={k: v for k, v in cli_env.items() if k.startswith("MACHPAY_")})
    compaction = _cleanup_policy(settings.kafka, "cli.agents.status")
    assert compaction == "compact"
    assert _cleanup_policy(settings.kafka, "cli.intents.accepted") == "delete"

    placed, join = asyncio.run(_roundtrip(settings.kafka, "cli.intents.accepted"))
    # The broker placed every keyed record where partition_for_key says.
    assert all(partition_for_key(k, 6) == p for k, p in placed.items())
    print(f"first group join + fetch took {join:.2f}s")

    down = machpay("kafka", "down", "--data-dir", data, env=cli_env)
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    stopped = machpay("kafka", "status", "--data-dir", data, env=cli_env)
    assert stopped.returncode == 3
    assert "stopped" in stopped.stdout
    assert "shut down completed" in Path(info["log_file"]).read_text()

    # Data survives a restart: topics are still there, nothing is created.
    restart = machpay("kafka", "up", "--data-dir", data, env=cli_env)
    assert restart.returncode == 0, restart.stderr
    assert "0 created, 8 already there" in restart.stdout
    fresh = machpay("kafka", "up", "--fresh", "--no-topics", "--data-dir", data, env=cli_env)
    assert fresh.returncode == 0, fresh.stderr
    assert "wiped" in fresh.stdout
    topics = asyncio.run(alist_topics(settings.kafka))
    assert topics == {}


def _cleanup_policy(kafka: KafkaSettings, topic: str) -> str:
    from machpay.kafka.admin import _admin, _cleanup_policies

    async def run() -> str:
        client = await _admin(kafka)
        try:
            return (await _cleanup_policies(client, [topic]))[topic]
        finally:
            await client.close()

    return asyncio.run(run())


def test_missing_java_is_a_clear_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {**cli_env, "PATH": str(empty)}
    env.pop("JAVA_HOME", None)
    result = machpay("kafka", "up", "--data-dir", cli_env["DATA_DIR"], env=env)
    assert result.returncode == 1
    assert "java not found" in result.stderr
    assert "Java 17" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_maven_is_a_clear_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    java = shutil.which("java")
    assert java is not None, "java must be on PATH (the local broker needs Java 17+)"
    only_java = tmp_path / "only-java"
    only_java.mkdir()
    (only_java / "java").symlink_to(Path(java).resolve())
    env = {**cli_env, "PATH": str(only_java), "MACHPAY_LOCAL_KAFKA__HOME": str(tmp_path / "c")}
    env.pop("JAVA_HOME", None)
    result = machpay("kafka", "up", "--data-dir", cli_env["DATA_DIR"], env=env)
    assert result.returncode == 1
    assert "mvn (Apache Maven) not found" in result.stderr


def test_old_java_from_java_home_is_a_clear_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    fake = tmp_path / "jdk11" / "bin" / "java"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    fake.chmod(0o755)
    env = {**cli_env, "JAVA_HOME": str(tmp_path / "jdk11")}
    result = machpay("kafka", "up", "--data-dir", cli_env["DATA_DIR"], env=env)
    assert result.returncode == 1
    assert "needs Java 17 or newer" in result.stderr
    assert str(fake) in result.stderr


@pytest.mark.parametrize(
    ("which", "setting"),
    [
        ("MACHPAY_LOCAL_KAFKA__PORT", "local_kafka.port"),
        ("MACHPAY_LOCAL_KAFKA__CONTROLLER_PORT", "local_kafka.controller_port"),
    ],
)
def test_port_in_use_names_port_and_setting(
    cli_env: dict[str, str], which: str, setting: str
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {**cli_env, which: str(port)}
        result = machpay("kafka", "up", "--data-dir", cli_env["DATA_DIR"], env=env)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert setting in result.stderr


def test_help_explains_every_option(cli_env: dict[str, str]) -> None:
    result = machpay("kafka", "up", "--help", env=cli_env)
    assert result.returncode == 0
    for option in ("--port", "--controller-port", "--data-dir", "--fresh", "--no-topics", "--heap"):
        assert option in result.stdout
