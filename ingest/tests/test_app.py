"""The receiver in process (httpx ASGI transport, Kafka replaced by a recording
producer): authentication, per-record validation, limits, malformed bodies,
backpressure and its own endpoints. What lands on the real broker is in
test_integration.py."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from machpay import topics
from machpay.ingest.app import AVRO_INTENTS, AVRO_LOGS, Ingest, create_app
from machpay.ingest.testing import (
    AGENT_KEY,
    GATEWAY_KEY,
    OPEN_AGENT_KEY,
    OPEN_GATEWAY_KEY,
    REVOKED_KEY,
    RecordingProducer,
    World,
    intent_json,
    log_json,
    write_keys,
)
from machpay.kafka.clients import partition_for_key
from machpay.protocol import Keypair, bytes_to_address
from machpay.protocol.signing import L
from machpay.wire import WireCodec, frame
from machpay.wire.intents import intent_batch

BASE = "http://ingest.test"


@dataclass
class InProcess:
    client: httpx.AsyncClient
    ingest: Ingest
    producer: RecordingProducer
    world: World

    def sent(self, topic: str) -> list[dict[str, Any]]:
        codec = self.ingest.codec
        return [
            codec.decode(s.value, topic=s.topic, partition=0, offset=0)
            for s in self.producer.sent
            if s.topic.endswith(topic)
        ]


@pytest.fixture
async def inproc(world: World) -> AsyncIterator[InProcess]:
    settings = world.settings(max_body_bytes=64 * 1024, max_records_per_batch=50)
    app = create_app(settings)
    ingest: Ingest = app.state.ingest
    producer = RecordingProducer(settings)
    ingest.producer = producer
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield InProcess(client, ingest, producer, world)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post_intents(
    env: InProcess, intents: list[Any], key: str = GATEWAY_KEY
) -> httpx.Response:
    return await env.client.post("/v1/intents", json={"intents": intents}, headers=auth(key))


def good_intents(env: InProcess, count: int) -> list[dict[str, Any]]:
    signer = env.world.signer(env.ingest.settings)
    return [intent_json(signer.sign(), env.world.vendor.public) for _ in range(count)]


# -- authentication and authorisation --------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/intents", "/v1/logs"])
async def test_no_key_is_401(inproc: InProcess, path: str) -> None:
    response = await inproc.client.post(path, json={"intents": []})
    assert response.status_code == 401
    assert response.json()["error"] == "missing_api_key"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer   ", "token"])
async def test_malformed_authorization_is_401(inproc: InProcess, header: str) -> None:
    response = await inproc.client.post(
        "/v1/intents", json={"intents": []}, headers={"Authorization": header}
    )
    assert response.status_code == 401
    assert response.json()["field"] == "authorization"


async def test_unknown_key_is_401(inproc: InProcess) -> None:
    response = await post_intents(inproc, good_intents(inproc, 1), key="not-a-key")
    assert response.status_code == 401
    assert response.json()["error"] == "unknown_api_key"
    assert inproc.producer.sent == []


async def test_revoked_key_is_401(inproc: InProcess) -> None:
    response = await post_intents(inproc, good_intents(inproc, 1), key=REVOKED_KEY)
    assert response.status_code == 401
    assert inproc.producer.sent == []


async def test_key_removed_from_the_file_is_refused_without_restart(inproc: InProcess) -> None:
    assert (await post_intents(inproc, good_intents(inproc, 1), key=OPEN_GATEWAY_KEY)).is_success
    write_keys(inproc.world.keys_file, inproc.world.key_entries(drop=OPEN_GATEWAY_KEY))
    response = await post_intents(inproc, good_intents(inproc, 1), key=OPEN_GATEWAY_KEY)
    assert response.status_code == 401
    assert (await post_intents(inproc, good_intents(inproc, 1))).status_code == 200


async def test_agent_key_may_not_post_intents(inproc: InProcess) -> None:
    response = await post_intents(inproc, good_intents(inproc, 1), key=AGENT_KEY)
    assert response.status_code == 403
    assert inproc.producer.sent == []


async def test_gateway_key_may_not_post_logs(inproc: InProcess) -> None:
    response = await inproc.client.post(
        "/v1/logs",
        json={"records": [log_json(inproc.world.agent.public)]},
        headers=auth(GATEWAY_KEY),
    )
    assert response.status_code == 403
    assert inproc.producer.sent == []


async def test_gateway_bound_to_a_vendor_cannot_post_another_vendors_intents(
    inproc: InProcess,
) -> None:
    settings = inproc.ingest.settings
    mine = intent_json(inproc.world.signer(settings).sign(), inproc.world.vendor.public)
    other = inproc.world.signer(settings, vendor=inproc.world.other_vendor)
    theirs = intent_json(other.sign(), inproc.world.other_vendor.public)
    response = await post_intents(inproc, [mine, theirs])
    assert response.status_code == 403
    assert response.json()["field"] == "intents[1].vendor"
    assert inproc.producer.sent == [], "nothing of a forbidden batch is produced"
    # An unbound gateway key may post both.
    assert (await post_intents(inproc, [mine, theirs], key=OPEN_GATEWAY_KEY)).status_code == 200


async def test_agent_bound_key_cannot_post_another_agents_logs(inproc: InProcess) -> None:
    records = [log_json(inproc.world.agent.public), log_json(Keypair.generate().public)]
    response = await inproc.client.post(
        "/v1/logs", json={"records": records}, headers=auth(AGENT_KEY)
    )
    assert response.status_code == 403
    assert response.json()["field"] == "records[1].agent"
    assert inproc.producer.sent == []
    ok = await inproc.client.post(
        "/v1/logs", json={"records": records}, headers=auth(OPEN_AGENT_KEY)
    )
    assert ok.status_code == 200


# -- per-record validation ---------------------------------------------------------------------


async def test_partial_invalid_batch_accepts_the_valid_and_names_each_refusal(
    inproc: InProcess,
) -> None:
    settings = inproc.ingest.settings
    vendor = inproc.world.vendor.public
    signer = inproc.world.signer(settings)
    good = [signer.sign() for _ in range(3)]
    tampered = signer.sign()
    malleable = signer.sign()
    s_plus_l = (int.from_bytes(malleable.signature[32:], "little") + L).to_bytes(32, "little")
    other_vendor_signer = inproc.world.signer(settings, vendor=inproc.world.other_vendor)
    records = [
        intent_json(good[0], vendor),
        intent_json(
            tampered,
            vendor,
            signature=base64.b64encode(good[2].signature).decode(),  # another message's
        ),
        intent_json(good[1], vendor, message="not base64!"),
        intent_json(good[1], vendor, message=base64.b64encode(good[1].message[:90]).decode()),
        intent_json(good[1], vendor, id="00" * 32),
        {k: v for k, v in intent_json(good[1], vendor).items() if k != "route"},
        intent_json(
            malleable,
            vendor,
            signature=base64.b64encode(malleable.signature[:32] + s_plus_l).decode(),
        ),
        intent_json(other_vendor_signer.sign(), vendor),  # channel of another vendor
        intent_json(good[1], vendor, agent="not-an-address"),
        intent_json(good[1], vendor, service="x" * 201),
        "not an object",
        intent_json(good[1], vendor, id=good[1].id.hex()),
        intent_json(good[2], vendor),
    ]
    response = await post_intents(inproc, records)
    assert response.status_code == 207
    body = response.json()
    assert body["accepted"] == 3
    refused = {r["index"]: (r["field"], r["reason"]) for r in body["rejected"]}
    assert refused == {
        1: ("signature", "bad_signature"),
        2: ("message", "bad_field"),
        3: ("message", "bad_length"),
        4: ("id", "bad_field"),
        5: ("route", "bad_field"),
        6: ("signature", "non_canonical_signature"),
        7: ("vendor", "wrong_channel"),
        8: ("agent", "bad_field"),
        9: ("service", "bad_length"),
        10: (None, "bad_field"),
    }
    assert all(r["detail"] for r in body["rejected"])
    batches = inproc.sent("intents.accepted")
    landed = [i["id"] for b in batches for i in b["intents"]]
    assert sorted(landed) == sorted([good[0].id, good[1].id, good[2].id])
    assert {i["source"] for b in batches for i in b["intents"]} == {"INGEST"}
    assert {b["producer"] for b in batches} == {"ingest-test"}
    # One record per target partition: the agent's.
    (partition,) = {s.partition for s in inproc.producer.sent if s.topic.endswith("accepted")}
    assert partition == partition_for_key(inproc.world.agent.public, 6)
    dead = inproc.sent("intents.rejected")
    assert sorted(d["reason"] for d in dead) == sorted(r for _, r in refused.values())
    assert all(d["source"] == "ingest" for d in dead)
    by_detail = {d["detail"].split(":")[0]: d for d in dead}
    assert by_detail["record 1"]["agent"] == inproc.world.agent.public
    assert by_detail["record 1"]["message"] == tampered.message
    assert by_detail["record 10"]["raw"] == b'"not an object"'


async def test_wrong_domain_is_refused(inproc: InProcess) -> None:
    settings = inproc.world.settings()
    other = settings.model_copy(
        update={"deployment": settings.deployment.model_copy(update={"domain_tag": "00" * 8})}
    )
    signer = inproc.world.signer(other)
    response = await post_intents(inproc, [intent_json(signer.sign(), inproc.world.vendor.public)])
    assert response.status_code == 207
    assert response.json()["rejected"][0]["reason"] == "wrong_domain"


async def test_all_valid_is_200(inproc: InProcess) -> None:
    response = await post_intents(inproc, good_intents(inproc, 5))
    assert response.status_code == 200
    assert response.json() == {"accepted": 5, "rejected": []}


async def test_avro_intent_batch(inproc: InProcess) -> None:
    signer = inproc.world.signer(inproc.ingest.settings)
    accepted = [signer.accepted(signer.sign()) for _ in range(4)]
    value = intent_batch(accepted, producer="gw-1", now_ms=1)
    value["intents"][2]["id"] = bytes(32)  # an id that is not the message hash
    body = inproc.ingest.codec.encode(topics.INTENTS_ACCEPTED, value)
    response = await inproc.client.post(
        "/v1/intents",
        content=body,
        headers={**auth(GATEWAY_KEY), "Content-Type": AVRO_INTENTS},
    )
    assert response.status_code == 207
    assert response.json()["accepted"] == 3
    assert response.json()["rejected"][0] == {
        "index": 2,
        "field": "id",
        "reason": "bad_field",
        "detail": "id is not the SHA-256 of the message",
    }
    landed = [i for b in inproc.sent("intents.accepted") for i in b["intents"]]
    assert [i["id"] for i in landed] == [accepted[n].id for n in (0, 1, 3)]
    assert {i["source"] for i in landed} == {"INGEST"}


async def test_logs_json_from_the_sdk_and_avro(inproc: InProcess) -> None:
    agent = inproc.world.agent.public
    vendor = bytes_to_address(inproc.world.vendor.public)
    records = [
        log_json(agent, vendor=vendor, amount=1000, intent_id="ab" * 32, outcome="PAID"),
        log_json(agent, outcome="MAYBE"),
        log_json(agent, latency_ms=-1),
        log_json(agent, intent_id="xyz"),
        log_json(agent, error="payment_rejected", outcome="PAYMENT_REJECTED", status=402),
    ]
    response = await inproc.client.post(
        "/v1/logs", json={"records": records}, headers=auth(AGENT_KEY)
    )
    assert response.status_code == 207
    assert response.json()["accepted"] == 2
    assert [(r["index"], r["field"]) for r in response.json()["rejected"]] == [
        (1, "outcome"),
        (2, "latency_ms"),
        (3, "intent_id"),
    ]
    (batch,) = inproc.sent("client.logs")
    assert batch["records"][0]["intent_id"] == bytes.fromhex("ab" * 32)
    assert batch["records"][0]["vendor"] == inproc.world.vendor.public
    # The same records as a framed ClientLogBatch.
    avro = inproc.ingest.codec.encode(
        topics.CLIENT_LOGS, {"producer": "sdk", "produced_at_ms": 1, "records": batch["records"]}
    )
    response = await inproc.client.post(
        "/v1/logs", content=avro, headers={**auth(AGENT_KEY), "Content-Type": AVRO_LOGS}
    )
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "rejected": []}


# -- limits and malformed bodies -------------------------------------------------------------


async def test_oversized_body_is_413_naming_the_limit(inproc: InProcess) -> None:
    body = b'{"intents": [' + b" " * (64 * 1024) + b"]}"
    response = await inproc.client.post(
        "/v1/intents",
        content=body,
        headers={**auth(GATEWAY_KEY), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "ingest.max_body_bytes = 65536" in response.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(20):
            yield b" " * 4096

    response = await inproc.client.post(
        "/v1/intents",
        content=chunks(),
        headers={**auth(GATEWAY_KEY), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert not inproc.sent("intents.accepted")
    dead = inproc.sent("intents.rejected")
    assert [(d["reason"], d["field"], d["raw"]) for d in dead] == [
        ("oversized_body", "body", None)
    ] * 2
    assert "ingest.max_body_bytes" in dead[0]["detail"]


async def test_too_many_records_is_413_naming_the_limit(inproc: InProcess) -> None:
    response = await post_intents(inproc, [{}] * 51)
    assert response.status_code == 413
    assert response.json()["field"] == "intents"
    assert "ingest.max_records_per_batch = 50" in response.json()["detail"]
    response = await inproc.client.post(
        "/v1/logs", json={"records": [{}] * 51}, headers=auth(AGENT_KEY)
    )
    assert response.status_code == 413
    assert not inproc.sent("intents.accepted")
    assert not inproc.sent("client.logs")
    (dead,) = inproc.sent("intents.rejected")
    assert (dead["reason"], dead["field"]) == ("too_many_records", "intents")
    assert dead["raw"] is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"intents": [', "body"),
        (b"\xff\xfe", "body"),
        (b"[]", "body"),
        (b'{"records": []}', "intents"),
        (b'{"intents": {}}', "intents"),
        (b'{"intents": [], "extra": 1}', "extra"),
    ],
)
async def test_malformed_json_is_400_naming_the_field(
    inproc: InProcess, body: bytes, field: str
) -> None:
    response = await inproc.client.post(
        "/v1/intents",
        content=body,
        headers={**auth(GATEWAY_KEY), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["detail"]
    (dead,) = inproc.sent("intents.rejected")  # the malformed batch, verbatim
    assert dead["raw"] == body
    assert dead["field"] == field
    assert dead["source"] == "ingest"


async def test_malformed_avro_is_400_naming_the_problem(inproc: InProcess) -> None:
    codec: WireCodec = inproc.ingest.codec
    good = codec.encode(topics.INTENTS_ACCEPTED, intent_batch([], producer="gw", now_ms=1))
    logs = codec.encode(topics.CLIENT_LOGS, {"producer": "x", "produced_at_ms": 1, "records": []})
    cases = {
        "short_frame": b"\x00\x00",
        "bad_magic": b"\x07" + good[1:],
        "unknown_schema_id": frame(999_999, good[5:]),
        "wrong_record_type": logs,
        "trailing_bytes": good + b"\x00",
        "bad_avro": good[:5] + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    }
    for reason, body in cases.items():
        response = await inproc.client.post(
            "/v1/intents", content=body, headers={**auth(GATEWAY_KEY), "Content-Type": AVRO_INTENTS}
        )
        assert response.status_code == 400, reason
        assert response.json()["error"] == reason
        assert response.json()["field"] == "body"
    dead = inproc.sent("intents.rejected")
    assert [d["reason"] for d in dead] == list(cases)
    assert [d["raw"] for d in dead] == list(cases.values())
    assert not inproc.sent("intents.accepted")


async def test_unsupported_content_type_is_415(inproc: InProcess) -> None:
    response = await inproc.client.post(
        "/v1/intents", content=b"x", headers={**auth(GATEWAY_KEY), "Content-Type": "text/plain"}
    )
    assert response.status_code == 415


# -- backpressure -------------------------------------------------------------------------------


async def test_in_flight_bound_answers_429_with_retry_after_and_sends_nothing(
    inproc: InProcess,
) -> None:
    inproc.producer.in_flight_records = inproc.ingest.config.max_in_flight_records
    response = await post_intents(inproc, good_intents(inproc, 2))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert "ingest.max_in_flight_records" in response.json()["detail"]
    assert inproc.producer.sent == []
    inproc.producer.in_flight_records = 0
    assert (await post_intents(inproc, good_intents(inproc, 2))).status_code == 200


async def test_disconnected_producer_answers_503_before_reading(inproc: InProcess) -> None:
    inproc.producer._producer = None
    inproc.producer.connected = False
    response = await post_intents(inproc, good_intents(inproc, 1))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert (await inproc.client.get("/readyz")).status_code == 503


# -- own endpoints ------------------------------------------------------------------------------


async def test_health_ready_and_metrics(inproc: InProcess) -> None:
    assert (await inproc.client.get("/healthz")).json() == {"status": "ok"}
    assert (await inproc.client.get("/readyz")).status_code == 200
    await post_intents(inproc, good_intents(inproc, 2))
    await post_intents(inproc, [{}])
    text = (await inproc.client.get("/metrics")).text
    assert 'machpay_ingest_accepted_total{kind="intent"} 2.0' in text
    assert 'machpay_ingest_rejected_total{kind="intent",reason="bad_field"} 1.0' in text
    assert 'machpay_ingest_requests_total{endpoint="/v1/intents",status="207"} 1.0' in text
    assert "machpay_ingest_kafka_connected 1.0" in text


async def test_openapi_lists_the_endpoints(inproc: InProcess) -> None:
    schema = orjson.loads((await inproc.client.get("/openapi.json")).content)
    assert {"/v1/intents", "/v1/logs", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])
    post = schema["paths"]["/v1/intents"]["post"]
    assert {"application/json", AVRO_INTENTS} <= set(post["requestBody"]["content"])
    assert {"200", "207", "400", "401", "403", "413", "429", "503"} <= set(post["responses"])
