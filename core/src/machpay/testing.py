"""Helpers every component's tests and benchmarks share: ports, servers, topics.

Not used by any running service. uvicorn and aiokafka are imported inside
the functions, so importing this module costs nothing and needs neither.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from machpay.config import Settings
    from machpay.topics import Topic


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_in_thread(
    app: Any, port: int, *, lifespan: Literal["auto", "on", "off"] = "on"
) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1:``port`` in a thread; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


async def read_topic(
    settings: Settings,
    topic: Topic,
    *,
    done: Callable[[list[dict[str, Any]]], bool],
    wait_seconds: float = 30.0,
) -> list[dict[str, Any]]:
    """Every decoded value of ``topic`` from the beginning, until ``done(values)``
    or ``wait_seconds`` (a group-less consumer of every partition)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from machpay.kafka.admin import alist_topics
    from machpay.kafka.clients import consumer_kwargs, topic_name
    from machpay.wire import WireCodec

    codec = WireCodec.from_settings(
        settings.schema_registry, topic_prefix=settings.kafka.topic_prefix
    )
    name = topic_name(topic, settings.kafka)
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings.kafka, group_id=None, role="test"))
    await consumer.start()
    values: list[dict[str, Any]] = []
    try:
        count = (await alist_topics(settings.kafka)).get(name, 0)
        parts = [TopicPartition(name, p) for p in range(count)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + wait_seconds
        while not done(values) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                for msg in messages:
                    if msg.value is not None:
                        values.append(
                            codec.decode(
                                msg.value, topic=topic, partition=tp.partition, offset=msg.offset
                            )
                        )
    finally:
        await consumer.stop()
    return values
