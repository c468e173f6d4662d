"""Pytest fixtures shared by every component's tests.

Kafka integration tests ask for ``kafka_settings`` (or just ``kafka_broker``)
and must be marked ``@pytest.mark.integration``::

    @pytest.mark.integration
    async def test_roundtrip(kafka_settings: Settings) -> None:
        topic = topic_name(INTENTS_ACCEPTED, kafka_settings.kafka)
        producer = AIOKafkaProducer(**producer_kwargs(kafka_settings.kafka))

``kafka_broker`` starts one real single-node broker per test session (a
:class:`machpay.kafka.broker.LocalBroker` on free ports, data in a temp dir,
jars from the shared cache) and stops it at the end. Set
``MACHPAY_TEST_BOOTSTRAP=host:port`` to run against a broker you started
yourself (``machpay kafka up`` or docker-compose.kafka.yml) instead. Without
Java the Kafka tests are skipped with the reason; run ``pytest -m "not
integration"`` to leave them out.

Imports of Kafka code stay inside the fixtures so that components installed
without the Kafka extra (the SDK) can still use this file.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from machpay.config import Settings

TEST_BOOTSTRAP_ENV = "MACHPAY_TEST_BOOTSTRAP"
"""host:port of an external broker to use instead of starting one."""

TEST_SESSION_TIMEOUT_MS = 6000
"""Short enough that a dead consumer's partitions move within seconds; the broker
allows down to 500 ms (group.min.session.timeout.ms)."""
TEST_HEARTBEAT_INTERVAL_MS = 500

_broker_report: list[str] = []


def pytest_runtest_setup(item: pytest.Item) -> None:
    fixtures = getattr(item, "fixturenames", ())
    if "kafka_broker" in fixtures and item.get_closest_marker("integration") is None:
        pytest.fail(
            f"{item.nodeid} uses the Kafka broker; mark it @pytest.mark.integration",
            pytrace=False,
        )
    if "localnet_url" in fixtures and item.get_closest_marker("integration") is None:
        pytest.fail(
            f"{item.nodeid} uses the local Solana node; mark it @pytest.mark.integration",
            pytrace=False,
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _broker_report:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap string of a running Kafka broker for the whole session."""
    external = os.environ.get(TEST_BOOTSTRAP_ENV)
    if external:
        _broker_report.append(f"kafka_broker: external broker {external} ({TEST_BOOTSTRAP_ENV})")
        yield external
        return

    from machpay.config import LocalKafkaSettings, load_settings
    from machpay.kafka.broker import LocalBroker, ToolMissingError, free_port

    # Only the local_kafka section of the environment applies (version, heap,
    # home); ports are always fresh so a developer's broker is never touched.
    env = {k: v for k, v in os.environ.items() if k.startswith("MACHPAY_LOCAL_KAFKA__")}
    base = load_settings(environ=env).local_kafka
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    local = LocalKafkaSettings.model_validate(
        {**base.model_dump(), "host": "127.0.0.1", "port": port, "controller_port": controller_port}
    )
    broker = LocalBroker(local, data_dir=tmp_path_factory.mktemp("kafka-broker"))
    started = time.monotonic()
    try:
        broker.fetch()
        broker.format()
        broker.start(die_with_parent=True)
    except ToolMissingError as exc:
        # Integration tests must not pass silently by skipping: a machine
        # without Java or Maven fails here, naming what is missing. A unit-only
        # run is `pytest -m "not integration"`.
        pytest.fail(
            f"no local Kafka broker: {exc}; run `pytest -m 'not integration'` without one", False
        )
    _broker_report.append(
        f"kafka_broker: Kafka {local.version} on {broker.bootstrap} ready in "
        f"{time.monotonic() - started:.1f}s (format + start); data {broker.data_dir}"
    )
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_settings(kafka_broker: str) -> Iterator[Settings]:
    """Settings pointing at ``kafka_broker`` with a unique topic prefix and all topics created.

    Consumers get short group timeouts (6 s session, 0.5 s heartbeat). The
    prefixed topics are deleted after the test.
    """
    from machpay.config import load_settings
    from machpay.kafka.admin import create_topics, delete_topics

    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = load_settings(
        environ={},
        overrides={
            "kafka": {
                "bootstrap_servers": kafka_broker,
                "topic_prefix": prefix,
                "client_id": "machpay-test",
                "session_timeout_ms": TEST_SESSION_TIMEOUT_MS,
                "heartbeat_interval_ms": TEST_HEARTBEAT_INTERVAL_MS,
            }
        },
    )
    create_topics(settings)
    yield settings
    with contextlib.suppress(Exception):
        delete_topics(settings)


LOCALNET_RPC_ENV = "MACHPAY_TEST_RPC_URL"
"""URL of a running Solana JSON-RPC endpoint (with the MachPay programs at their
ids and airdrops) to use instead of starting ``machpay-localnet``."""
LOCALNET_TARGET_ENV = "MACHPAY_TEST_CARGO_TARGET"
"""Cargo target directory for building ``machpay-localnet`` (default
``$MACHPAY_CACHE/cargo-target``)."""


@pytest.fixture(scope="session")
def localnet_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a ``machpay-localnet`` node for the whole session.

    A real Solana runtime (LiteSVM) with GlobalBond, MachPay and
    ServiceRegistry loaded natively (programs/localnet), on a free port,
    built with cargo when missing or out of date. A cold build takes minutes,
    longer than pytest's per-test timeout: `make test` builds it first
    (`make localnet-build`). State is shared by every test of the session:
    tests create their own keys and must not assume a fresh chain.
    """
    external = os.environ.get(LOCALNET_RPC_ENV)
    if external:
        _broker_report.append(f"localnet_url: external endpoint {external} ({LOCALNET_RPC_ENV})")
        yield external
        return
    from pathlib import Path

    from machpay.localnet.node import LocalnetError, LocalnetNode
    from machpay.testing import free_port

    target = os.environ.get(LOCALNET_TARGET_ENV)
    node = LocalnetNode(
        port=free_port(),
        home=tmp_path_factory.mktemp("localnet"),
        target_dir=Path(target) if target else None,
    )
    started = time.monotonic()
    try:
        node.start(die_with_parent=True, timeout=60)
    except LocalnetError as exc:
        pytest.fail(f"no local Solana node: {exc}", pytrace=False)
    _broker_report.append(
        f"localnet_url: machpay-localnet on {node.url} ready in "
        f"{time.monotonic() - started:.1f}s (build check + start)"
    )
    try:
        yield node.url
    finally:
        node.stop()
