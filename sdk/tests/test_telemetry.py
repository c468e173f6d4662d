"""Telemetry: batches reach a local receiver; a full queue drops the oldest; errors stay quiet."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from machpay.protocol import Keypair
from machpay.sdk import Agent, CallRecord, Outcome, PolicyViolation, SpendPolicy, TelemetryPusher

from .conftest import VENDOR, Served, ServerThread


class Receiver:
    """ASGI app recording each POSTed batch; ``delay`` seconds before answering."""

    def __init__(self, delay: float = 0.0, status: int = 202) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.auth: list[str] = []
        self.delay = delay
        self.status = status

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.delay:
            await asyncio.sleep(self.delay)
        assert scope["path"] == "/v1/logs"
        self.auth.append(dict(scope["headers"]).get(b"authorization", b"").decode())
        self.batches.append(orjson.loads(body)["records"])
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for batch in self.batches for r in batch]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    app = Receiver()
    with ServerThread(app) as url:
        yield app, url


def record(i: int) -> CallRecord:
    return CallRecord(
        agent="a",
        url=f"http://x/{i}",
        method="GET",
        vendor=None,
        status=200,
        latency_ms=1.0,
        amount=0,
        intent_id=None,
        outcome=Outcome.FREE,
        error=None,
        at_ms=i,
        sdk_version="t",
    )


def test_records_are_pushed_in_batches(receiver: tuple[Receiver, str]) -> None:
    app, url = receiver
    with TelemetryPusher(url, "secret", batch_size=10, flush_interval=0.05) as pusher:
        for i in range(25):
            pusher.record(record(i))
        assert pusher.flush(10)
    assert [r["url"] for r in app.records] == [f"http://x/{i}" for i in range(25)]
    assert max(len(b) for b in app.batches) <= 10
    assert set(app.auth) == {"Bearer secret"}
    assert pusher.sent == 25
    assert pusher.dropped == 0


def test_full_queue_drops_the_oldest_and_counts(receiver: tuple[Receiver, str]) -> None:
    app, url = receiver
    pusher = TelemetryPusher(url, max_queue=5, batch_size=1000, flush_interval=3600)
    for i in range(12):
        pusher.record(record(i))
    assert pusher.dropped == 7
    pusher.close()
    assert [r["at_ms"] for r in app.records] == [7, 8, 9, 10, 11]


def test_dead_or_slow_endpoint_never_raises() -> None:
    slow = Receiver(delay=2.0)
    with ServerThread(slow) as url:
        pusher = TelemetryPusher(url, timeout=0.2, flush_interval=0.01)
        pusher.record(record(1))
        assert not pusher.flush(timeout=0.05)  # does not wait for the slow endpoint
        pusher.close(timeout=2)
    assert pusher.failed_batches >= 1
    dead = TelemetryPusher("http://127.0.0.1:9", timeout=0.2, flush_interval=0.01)
    dead.record(record(2))
    dead.close(timeout=2)
    assert dead.failed_batches == 1
    assert dead.sent == 0


def test_paid_free_and_refused_calls_are_reported(
    served: Served, receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    app, url = receiver
    pusher = TelemetryPusher(url, "k", flush_interval=0.05)
    agent = Agent(
        Keypair.generate(),
        policy=SpendPolicy(max_per_call=1_000),
        state_dir=tmp_path,
        telemetry=pusher,
    )
    with agent, agent.client() as http:
        http.get(f"{served.url}/v1/forecast?token=secret")
        http.get(f"{served.url}/health")
        with pytest.raises(PolicyViolation):
            http.post(f"{served.url}/v1/translate", json={})
    pusher.close()
    by_outcome = {r["outcome"]: r for r in app.records}
    assert set(by_outcome) == {"PAID", "FREE", "REFUSED_BY_POLICY"}
    paid = by_outcome["PAID"]
    assert paid["amount"] == 1_000
    assert paid["status"] == 200
    assert paid["agent"] == agent.address
    assert paid["intent_id"] == served.app.accepted[0].id.hex()
    assert paid["vendor"] == VENDOR.address
    assert by_outcome["FREE"]["vendor"] is None
    assert paid["url"] == f"{served.url}/v1/forecast"  # no query string by default
    refused = by_outcome["REFUSED_BY_POLICY"]
    assert refused["amount"] == 0
    assert "max_per_call" in refused["error"]
    assert all(r["latency_ms"] >= 0 and r["sdk_version"] for r in app.records)


def test_record_fields_mirror_the_avro_client_log() -> None:
    import json

    schema_path = Path(__file__).parents[2] / "schemas" / "avro" / "machpay.ClientLogBatch.v1.avsc"
    schema = json.loads(schema_path.read_text())
    (records,) = [f for f in schema["fields"] if f["name"] == "records"]
    avro_fields = [f["name"] for f in records["type"]["items"]["fields"]]
    assert list(record(1).to_json()) == avro_fields
    outcome = next(f for f in records["type"]["items"]["fields"] if f["name"] == "outcome")
    assert [o.value for o in Outcome] == outcome["type"]["symbols"]
