"""Units without HTTP or Kafka: the key store and the producer's in-flight accounting."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from machpay.config import ConfigError
from machpay.ingest.app import Ingest
from machpay.ingest.keys import KeyStore, KeyStoreError, hash_key
from machpay.ingest.producer import (
    IngestProducer,
    KafkaUnavailableError,
    OverloadedError,
    Send,
)
from machpay.ingest.testing import GATEWAY_KEY, REVOKED_KEY, World
from machpay.protocol import Keypair

# -- key store ----------------------------------------------------------------------------------


def test_key_store_reads_toml_and_json(tmp_path: Path) -> None:
    vendor = Keypair.generate()
    toml = tmp_path / "keys.toml"
    toml.write_text(
        f'[[keys]]\nsha256 = "{hash_key("k1")}"\nname = "gw"\nrole = "gateway"\n'
        f'vendor = "{vendor.address}"\n'
    )
    principal = KeyStore(toml).authenticate("k1")
    assert principal is not None
    assert principal.role == "gateway"
    assert principal.vendor == vendor.public
    assert KeyStore(toml).authenticate("k2") is None


def test_revoked_key_is_unknown(world: World) -> None:
    store = KeyStore(world.keys_file)
    assert store.authenticate(GATEWAY_KEY) is not None
    assert store.authenticate(REVOKED_KEY) is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"sha256": "ab", "name": "x", "role": "gateway"}, "sha256 must be 64 hex"),
        ({"sha256": "ab" * 32, "name": "", "role": "gateway"}, "name"),
        ({"sha256": "ab" * 32, "name": "x", "role": "admin"}, "role must be one of"),
        ({"sha256": "ab" * 32, "name": "x", "role": "agent", "agent": "zz"}, "agent"),
        ({"sha256": "ab" * 32, "name": "x", "role": "agent", "colour": 1}, "unknown field"),
        ({"sha256": "ab" * 32, "name": "x", "role": "agent", "revoked": "yes"}, "revoked"),
    ],
)
def test_malformed_key_file_names_the_entry(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [entry]}))
    with pytest.raises(KeyStoreError, match=r"keys\[0\]") as info:
        KeyStore(path)
    assert message in str(info.value)


def test_broken_key_file_revokes_every_key_until_fixed(world: World) -> None:
    store = KeyStore(world.keys_file)
    good = world.keys_file.read_text()
    world.keys_file.write_text("{not json")
    assert store.authenticate(GATEWAY_KEY) is None
    world.keys_file.write_text(good + " ")
    assert store.authenticate(GATEWAY_KEY) is not None
    world.keys_file.unlink()
    assert store.authenticate(GATEWAY_KEY) is None


def test_ingest_requires_a_key_file() -> None:
    from machpay.config import load_settings

    with pytest.raises(ConfigError, match=r"ingest\.keys_file"):
        Ingest(load_settings(environ={}))


# -- the producer's bounds ------------------------------------------------------------------------


class StalledKafka:
    """An aiokafka-like producer whose acknowledgements come only when told."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[Any]] = []

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, partition: int | None
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future

    def acknowledge(self) -> None:
        for future in self.pending:
            if not future.done():
                future.set_result(None)


async def test_unacknowledged_records_hold_the_bound_until_the_broker_answers(
    world: World,
) -> None:
    settings = world.settings(max_in_flight_records=10, produce_timeout_seconds=0.2)
    producer = IngestProducer(settings)
    kafka = StalledKafka()
    producer._producer = kafka
    sends = [Send("t", b"x" * 10, partition=0)] * 2
    with pytest.raises(KafkaUnavailableError, match="produce_timeout_seconds"):
        await producer.produce(sends, records=8)
    # The request gave up, but the records are still in the producer: they count.
    assert producer.in_flight_records == 8
    assert producer.in_flight_bytes == 20
    with pytest.raises(OverloadedError, match="max_in_flight_records = 10"):
        await producer.produce(sends, records=8)
    assert len(kafka.pending) == 2, "an overloaded request hands nothing to the producer"
    kafka.acknowledge()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert producer.in_flight_records == 0
    assert producer.in_flight_bytes == 0
    task = asyncio.ensure_future(producer.produce(sends, records=8))
    await asyncio.sleep(0.01)
    kafka.acknowledge()
    await task
    assert producer.acknowledged_records == 8


async def test_failed_send_is_unavailable_and_releases_the_bound(world: World) -> None:
    settings = world.settings()
    producer = IngestProducer(settings)

    class Failing(StalledKafka):
        async def send(
            self, topic: str, value: bytes, *, key: bytes | None, partition: int | None
        ) -> asyncio.Future[Any]:
            future = await super().send(topic, value, key=key, partition=partition)
            future.set_exception(RuntimeError("NotEnoughReplicas"))
            return future

    producer._producer = Failing()
    with pytest.raises(KafkaUnavailableError, match="NotEnoughReplicas"):
        await producer.produce([Send("t", b"abc", partition=0)], records=1)
    await asyncio.sleep(0)
    assert producer.in_flight_records == 0


async def test_not_connected_is_unavailable(world: World) -> None:
    producer = IngestProducer(world.settings())
    with pytest.raises(KafkaUnavailableError, match="not connected"):
        await producer.produce([Send("t", b"abc", partition=0)], records=1)
    assert producer.in_flight_records == 0
