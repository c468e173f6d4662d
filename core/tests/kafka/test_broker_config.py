"""Generated broker files and tool checks (no broker needed)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from machpay.config import LocalKafkaSettings
from machpay.kafka.admin import run_sync
from machpay.kafka.broker import (
    LocalBroker,
    ToolMissingError,
    _log4j_config,
    _pom,
    find_java,
    java_major_version,
    kafka_version_tuple,
    render_server_properties,
    required_java,
)


def _props(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key not in out, f"duplicate key {key}"
            out[key] = value
    return out


def _local(**kw: object) -> LocalKafkaSettings:
    base: dict[str, object] = {"port": 19092, "controller_port": 19093, "home": "/cache/kafka"}
    return LocalKafkaSettings.model_validate({**base, **kw})


def test_server_properties_kafka4_combined_kraft(tmp_path: Path) -> None:
    props = _props(render_server_properties(_local(partitions=4), tmp_path))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in props
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"].startswith("PLAINTEXT://127.0.0.1:19092")
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert props["log.dirs"] == str(tmp_path / "kraft")
    assert props["num.partitions"] == "4"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
    ):
        assert props[key] == "1", key
    assert int(props["offsets.topic.num.partitions"]) <= 4
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert int(props["group.min.session.timeout.ms"]) <= 500
    assert props["auto.create.topics.enable"] == "false"


def test_server_properties_kafka3_uses_static_voters(tmp_path: Path) -> None:
    props = _props(render_server_properties(_local(version="3.9.1", host="127.0.0.2"), tmp_path))
    assert props["controller.quorum.voters"] == "1@127.0.0.2:19093"
    assert "controller.quorum.bootstrap.servers" not in props
    # Kafka 3.x refuses controller listeners in advertised.listeners of a broker.
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.2:19092"
    assert not any(k.startswith("share.coordinator") for k in props)


def test_pom_pins_broker_and_logging_binding() -> None:
    pom4 = _pom("4.1.1")
    assert "<artifactId>kafka_2.13</artifactId><version>4.1.1</version>" in pom4
    assert "log4j-slf4j-impl" in pom4
    assert "log4j-core" in pom4
    pom3 = _pom("3.9.1")
    assert "slf4j-reload4j" in pom3
    assert "log4j-slf4j-impl" not in pom3


def test_logging_configs_write_into_the_log_dir(tmp_path: Path) -> None:
    name, text = _log4j_config("4.1.1", tmp_path)
    assert name == "log4j2.properties"
    assert f"fileName = {tmp_path / 'server.log'}" in text
    name3, text3 = _log4j_config("3.9.1", tmp_path)
    assert name3 == "log4j.properties"
    assert f"File={tmp_path / 'server.log'}" in text3


def test_paths_follow_settings(tmp_path: Path) -> None:
    broker = LocalBroker(_local(home=str(tmp_path)), echo=lambda _: None)
    assert broker.libs_dir == tmp_path / "4.1.1" / "libs"
    assert broker.data_dir == (tmp_path / "data").resolve()
    assert broker.bootstrap == "127.0.0.1:19092"
    assert broker.kafka_settings().bootstrap_servers == "127.0.0.1:19092"


def test_version_helpers() -> None:
    assert kafka_version_tuple("4.1.1") == (4, 1, 1)
    assert required_java("4.1.1") == 17
    assert required_java("3.9.1") == 11


def _fake_java(home: Path, banner: str) -> Path:
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return java


@pytest.mark.parametrize(
    ("banner", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "11.0.2" 2019-01-15', 11),
        ('java version "1.8.0_401"', 8),
        ('openjdk version "21" 2023-09-19', 21),
    ],
)
def test_java_major_version_parses_real_banners(tmp_path: Path, banner: str, major: int) -> None:
    assert java_major_version(_fake_java(tmp_path, banner)) == major


def test_old_java_is_refused_with_the_needed_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_java(tmp_path, 'openjdk version "11.0.2" 2019-01-15')
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    broker = LocalBroker(_local(home=str(tmp_path / "cache")), echo=lambda _: None)
    with pytest.raises(ToolMissingError, match=r"needs Java 17 or newer.*Java 11"):
        broker.check_java()


def test_java_home_without_java_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(ToolMissingError, match="JAVA_HOME"):
        find_java()


def test_no_java_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="java not found"):
        find_java()
    assert os.environ["PATH"] == str(tmp_path)


async def test_sync_admin_helpers_work_inside_a_running_loop() -> None:
    # LocalBroker.start()/status() and the fixtures call admin code synchronously;
    # from async code that must not trip over the running loop.
    assert run_sync(asyncio.sleep(0, result=5)) == 5
