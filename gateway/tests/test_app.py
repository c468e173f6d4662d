"""The gateway app in process (ASGI transport, an in-process upstream, no Kafka):
the 402 exchange, every refusal with its precise reason and dead-letter record,
the proxy behaviour and the gateway's own endpoints."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from machpay.gateway.app import Gateway
from machpay.gateway.ledger import AgentStatus
from machpay.gateway.testing import (
    PayingAgent,
    echo_upstream,
    gateway_settings,
)
from machpay.protocol import Keypair, SignedIntent, channel_address
from machpay.protocol.signing import L
from machpay.testing import free_port, serve_in_thread
from machpay.x402 import (
    PaymentPayload,
    PaymentRequired,
    PaymentResponse,
    PaymentSignature,
    Resource,
)

BASE = "http://gw.test"


@dataclass
class Harness:
    gateway: Gateway
    client: httpx.AsyncClient
    vendor: Keypair
    agent: PayingAgent

    async def required(self, method: str, url: str, body: bytes = b"") -> PaymentRequired:
        response = await self.client.request(method, url, content=body)
        assert response.status_code == 402, response.text
        return PaymentRequired.from_body(response.content)

    async def paid(
        self, method: str, url: str, body: bytes = b"", **sign: Any
    ) -> tuple[httpx.Response, SignedIntent]:
        required = await self.required(method, url, body)
        header, signed = self.agent.pay(required, method=method, url=BASE + url, body=body, **sign)
        response = await self.client.request(
            method, url, content=body, headers={"PAYMENT-SIGNATURE": header}
        )
        return response, signed

    async def send(self, method: str, url: str, header: str, body: bytes = b"") -> httpx.Response:
        return await self.client.request(
            method, url, content=body, headers={"PAYMENT-SIGNATURE": header}
        )

    def last_rejection(self) -> dict[str, Any]:
        return self.gateway.emitter.rejected[-1]


async def make_harness(tmp_path: Path, **overrides: Any) -> Harness:
    vendor = Keypair.generate()
    settings = gateway_settings(
        spool_dir=tmp_path / "spool", upstream="http://upstream.test", vendor=vendor, **overrides
    )
    gateway = Gateway(settings)
    await gateway.startup()
    assert gateway.upstream is not None
    await gateway.upstream.aclose()
    gateway.upstream = httpx.ASGITransport(app=echo_upstream)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url=BASE)
    return Harness(gateway, client, vendor, PayingAgent())


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await make_harness(tmp_path)
    yield harness
    await harness.client.aclose()
    await harness.gateway.shutdown()


def refused(response: httpx.Response, reason: str) -> PaymentRequired:
    assert response.status_code == 402, response.text
    required = PaymentRequired.from_body(response.content)
    assert required.error == reason, required
    assert PaymentRequired.decode(response.headers["PAYMENT-REQUIRED"]) == required
    return required


# --- the exchange ------------------------------------------------------------------


async def test_unpaid_call_gets_402_with_the_contract_fields(h: Harness) -> None:
    response = await h.client.get("/v1/search?q=x")
    assert response.status_code == 402
    required = PaymentRequired.decode(response.headers["PAYMENT-REQUIRED"])
    assert required == PaymentRequired.from_body(response.content)
    assert required.error == "payment_required"
    assert required.resource == Resource(
        "http://gw.test/v1/search?q=x", "Web search", "application/json"
    )
    (accepts,) = required.accepts
    settings = h.gateway.settings
    assert accepts.scheme == "machpay"
    assert accepts.network == settings.deployment.network
    assert accepts.amount == 1_000
    assert accepts.pay_to == h.vendor.public
    assert accepts.extra.domain == settings.deployment.domain
    assert accepts.extra.service == "search"
    assert len(accepts.extra.challenge) == 20
    assert accepts.extra.last_cumulative is None
    assert h.gateway.metrics.unpaid._value.get() == 1


async def test_paid_call_is_served_with_a_receipt_and_queued(h: Harness) -> None:
    response, signed = await h.paid("POST", "/v1/search?q=cats", b'{"q": "cats"}')
    assert response.status_code == 200, response.text
    echoed = response.json()
    assert echoed["body_bytes"] == 13
    assert echoed["query"] == "q=cats"
    assert echoed["agent"] == h.agent.keypair.address
    assert echoed["intent"] == signed.id.hex()
    assert echoed["has_payment_header"] is False
    assert response.headers["x-upstream"] == "echo"
    receipt = PaymentResponse.decode(response.headers["PAYMENT-RESPONSE"])
    assert receipt == PaymentResponse.for_intent(signed, h.gateway.network)
    (queued, position) = h.gateway.emitter.queue[-1]
    assert queued.signed == signed
    assert queued.vendor == h.vendor.public
    assert queued.route == "POST /v1/search"
    assert position is not None
    assert h.gateway.spool.pending_bytes > 0
    assert h.gateway.spool.syncs >= 1
    # A second call continues the channel.
    again, second = await h.paid("GET", "/v1/items/42")
    assert again.status_code == 200
    assert second.nonce == signed.nonce + 1


async def test_free_routes_and_unknown_paths(h: Harness) -> None:
    assert (await h.client.get("/docs")).status_code == 200
    assert (await h.client.post("/v1/free/a/b", content=b"xyz")).json()["body_bytes"] == 3
    assert (await h.client.get("/nope")).status_code == 404
    assert (await h.client.delete("/v1/search")).status_code == 405


async def test_streaming_response_and_hop_by_hop_headers(h: Harness) -> None:
    response, _ = await h.paid("GET", "/v1/stream")
    assert response.status_code == 200
    assert response.text == "".join(f"chunk{i}\n" for i in range(5))
    echoed = await h.client.get(
        "/v1/free/x",
        headers={
            "Connection": "x-hop",
            "x-hop": "secret",
            "Keep-Alive": "5",
            "x-machpay-agent": "spoofed",
        },
    )
    assert echoed.json()["connection_token"] is None
    assert echoed.json()["agent"] is None  # a client cannot claim an identity upstream


async def test_own_endpoints(h: Harness) -> None:
    await h.paid("GET", "/v1/items/1")
    await h.send("GET", "/v1/items/1", "garbage")
    metrics = (await h.client.get("/metrics")).text
    assert 'machpay_gateway_paid_total{route="GET /v1/items/{id}"} 1.0' in metrics
    assert 'machpay_gateway_refused_total{reason="malformed_header"} 1.0' in metrics
    assert "machpay_gateway_verify_seconds_count 2.0" in metrics
    assert "machpay_gateway_spool_pending_bytes" in metrics
    assert "machpay_gateway_queue_depth" in metrics
    assert (await h.client.get("/healthz")).json() == {"ok": True}
    ready = await h.client.get("/readyz")
    assert ready.status_code == 503  # Kafka is unreachable in these tests
    assert ready.json()["kafka_connected"] is False


# --- every refusal ---------------------------------------------------------------------


async def test_replayed_intent_is_refused(h: Harness) -> None:
    required = await h.required("GET", "/v1/items/1")
    header, _ = h.agent.pay(required, method="GET", url=BASE + "/v1/items/1")
    assert (await h.send("GET", "/v1/items/1", header)).status_code == 200
    refused(await h.send("GET", "/v1/items/1", header), "replayed")
    assert h.last_rejection()["reason"] == "replayed"
    assert h.last_rejection()["agent"] == h.agent.public


async def test_concurrent_copies_of_one_intent_are_served_once(h: Harness) -> None:
    required = await h.required("GET", "/v1/slow?s=0.05")
    header, _ = h.agent.pay(required, method="GET", url=BASE + "/v1/slow?s=0.05")
    responses = await asyncio.gather(*(h.send("GET", "/v1/slow?s=0.05", header) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] + [402] * 7
    errors = {PaymentRequired.from_body(r.content).error for r in responses if r.status_code == 402}
    assert errors == {"replayed"}


async def test_expired_intent(h: Harness) -> None:
    response, _ = await h.paid("GET", "/v1/items/1", expires_at=int(time.time()) - 1)
    refused(response, "expired")
    assert h.last_rejection()["field"] == "expires_at"


async def test_wrong_vendor_accepted_entry_is_a_price_mismatch(h: Harness) -> None:
    other = Keypair.generate()
    required = await h.required("GET", "/v1/items/1")
    accepts = required.accepts[0]
    foreign = accepts.__class__(**{**_fields(accepts), "pay_to": other.public})
    signed = h.agent.sign(foreign, method="GET", url=BASE + "/v1/items/1")
    header = PaymentSignature(required.resource, foreign, PaymentPayload.from_signed(signed))
    refused(await h.send("GET", "/v1/items/1", header.encode()), "price_mismatch")
    assert h.last_rejection()["field"] == "accepted.payTo"


async def test_intent_for_another_vendors_channel_is_wrong_channel(h: Harness) -> None:
    other = Keypair.generate()
    required = await h.required("GET", "/v1/items/1")
    channel = channel_address(
        program_id=required.accepts[0].extra.program_id,
        agent=h.agent.public,
        vendor=other.public,
    )
    response, _ = await _pay_with(h, required, "GET", "/v1/items/1", channel=channel)
    refused(response, "wrong_channel")


async def test_intent_for_another_route_is_refused(h: Harness) -> None:
    # Same price, other route: the challenge is bound to the route.
    required = await h.required("GET", "/v1/slow")
    header, _ = h.agent.pay(required, method="GET", url=BASE + "/v1/stream")
    refused(await h.send("GET", "/v1/stream", header), "stale_challenge")
    # Other price: the accepted entry is not this route's.
    required = await h.required("GET", "/v1/items/1")
    header, _ = h.agent.pay(required, method="GET", url=BASE + "/v1/search")
    refused(await h.send("GET", "/v1/search", header), "price_mismatch")
    # Same route pattern, another item: the request binding differs.
    header, _ = h.agent.pay(required, method="GET", url=BASE + "/v1/items/1")
    refused(await h.send("GET", "/v1/items/2", header), "request_mismatch")


async def test_tampered_body_and_query_are_request_mismatch(h: Harness) -> None:
    required = await h.required("POST", "/v1/search", b"original")
    header, _ = h.agent.pay(required, method="POST", url=BASE + "/v1/search", body=b"original")
    refused(await h.send("POST", "/v1/search", header, b"tampered"), "request_mismatch")
    assert h.last_rejection()["field"] == "context"
    header, _ = h.agent.pay(required, method="POST", url=BASE + "/v1/search?q=1", body=b"")
    refused(await h.send("POST", "/v1/search?q=2", header), "request_mismatch")


async def test_wrong_domain(h: Harness) -> None:
    response, _ = await h.paid("GET", "/v1/items/1", domain=b"devnet!!")
    refused(response, "wrong_domain")


async def test_intent_amount_must_be_the_price(h: Harness) -> None:
    response, _ = await h.paid("GET", "/v1/items/1", amount=1, cumulative=1)
    refused(response, "price_mismatch")
    assert h.last_rejection()["field"] == "amount"


async def test_forged_malleated_and_small_order_signatures(h: Harness) -> None:
    required = await h.required("GET", "/v1/items/1")
    signed = h.agent.sign(required.accepts[0], method="GET", url=BASE + "/v1/items/1")
    forged = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    s = int.from_bytes(signed.signature[32:], "little") + L
    malleated = signed.signature[:32] + s.to_bytes(32, "little")
    identity = b"\x01" + bytes(31)  # small-order key; R = identity, S = 0 "verifies" lax
    cases = [
        (forged, signed.agent, "bad_signature"),
        (malleated, signed.agent, "non_canonical_signature"),
        (identity + bytes(32), identity, "small_order_key"),
        (Keypair.generate().sign(signed.message), signed.agent, "bad_signature"),
    ]
    for signature, agent, reason in cases:
        payload = PaymentPayload(signed.message, signature, agent)
        header = PaymentSignature(required.resource, required.accepts[0], payload).encode()
        refused(await h.send("GET", "/v1/items/1", header), reason)
        assert h.last_rejection()["reason"] == reason
        assert h.last_rejection()["signature"] == signature


async def test_malformed_header_is_400_naming_the_field(h: Harness) -> None:
    response = await h.send("GET", "/v1/items/1", "%%% not base64")
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_header"
    assert response.json()["field"] == "$"
    required = await h.required("GET", "/v1/items/1")
    signed = h.agent.sign(required.accepts[0], method="GET", url=BASE + "/v1/items/1")
    document = PaymentSignature(
        required.resource, required.accepts[0], PaymentPayload.from_signed(signed)
    ).to_json()
    del document["payload"]["signature"]
    header = base64.b64encode(orjson.dumps(document)).decode()
    response = await h.send("GET", "/v1/items/1", header)
    assert response.status_code == 400
    assert response.json()["field"] == "payload.signature"
    record = h.last_rejection()
    assert record["reason"] == "malformed_header"
    assert record["field"] == "payload.signature"
    assert record["raw"] == header.encode()


async def test_oversized_header_and_body(h: Harness) -> None:
    response = await h.client.get("/v1/items/1", headers={"x-big": "a" * 9_000})
    assert response.status_code == 431
    assert response.json()["error"] == "oversized_header"
    assert h.last_rejection()["reason"] == "oversized_header"
    required = await h.required("POST", "/v1/search")
    big = b"b" * (64 * 1024 + 1)
    header, _ = h.agent.pay(required, method="POST", url=BASE + "/v1/search", body=big)
    response = await h.send("POST", "/v1/search", header, big)
    assert response.status_code == 413
    assert response.json()["field"] == "body"
    assert h.last_rejection()["reason"] == "oversized_body"


async def test_stale_challenge(h: Harness) -> None:
    required = await h.required("GET", "/v1/items/1")
    header, _ = h.agent.pay(
        required, method="GET", url=BASE + "/v1/items/1", expires_at=int(time.time()) + 3_600
    )
    h.gateway.clock = lambda: time.time() + 500
    required = refused(await h.send("GET", "/v1/items/1", header), "stale_challenge")
    assert required.accepts[0].extra.reason is not None
    assert "old" in required.accepts[0].extra.reason


async def test_cumulative_out_of_step_and_resync(h: Harness) -> None:
    first, _ = await h.paid("GET", "/v1/items/1")
    assert first.status_code == 200
    h.agent.cumulative.clear()  # an agent that lost its channel state
    response, _ = await h.paid("GET", "/v1/items/2")
    required = refused(response, "cumulative_out_of_step")
    held = required.accepts[0].extra.last_cumulative
    assert held == 250
    # What the SDK does: never lower, resync to what the gateway holds, retry once.
    channel = required.accepts[0].channel(h.agent.public)
    h.agent.cumulative[channel] = max(h.agent.cumulative[channel] - 250, held)
    header, signed = h.agent.pay(required, method="GET", url=BASE + "/v1/items/2")
    response = await h.send("GET", "/v1/items/2", header)
    assert response.status_code == 200, response.text
    assert signed.cumulative == 500


async def test_unknown_agent_allowance_then_agent_unknown(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, unknown_agent_allowance=1_500)
    try:
        assert (await h.paid("GET", "/v1/search"))[0].status_code == 200
        refused((await h.paid("GET", "/v1/search"))[0], "agent_unknown")
        strict = await make_harness(tmp_path / "strict", unknown_agent_allowance=0)
        try:
            refused((await strict.paid("GET", "/v1/items/1"))[0], "agent_unknown")
        finally:
            await strict.client.aclose()
            await strict.gateway.shutdown()
    finally:
        await h.client.aclose()
        await h.gateway.shutdown()


def _status(agent: bytes, **kw: Any) -> AgentStatus:
    fields: dict[str, Any] = {
        "agent": agent,
        "bond": 100_000,
        "exposure": 0,
        "pending_withdrawal": 0,
        "banned": False,
        "insolvent": False,
        "ban_reason": None,
        "version": 1,
        "updated_at_ms": 0,
    }
    fields.update(kw)
    return AgentStatus(**fields)


async def test_exposure_cap_and_banned_agent(h: Harness) -> None:
    # share 0.1 of a 25,000 free bond = 2,500: two searches fit, the third does not.
    h.gateway.exposure.update(_status(h.agent.public, bond=25_000))
    assert (await h.paid("GET", "/v1/search"))[0].status_code == 200
    assert (await h.paid("GET", "/v1/search"))[0].status_code == 200
    required = refused((await h.paid("GET", "/v1/search"))[0], "exposure_cap")
    assert "cap 2500" in (required.accepts[0].extra.reason or "")
    h.agent.cumulative[required.accepts[0].channel(h.agent.public)] -= 1_000  # not served
    h.gateway.exposure.update(
        _status(h.agent.public, version=2, banned=True, ban_reason="equivocation proof")
    )
    refused((await h.paid("GET", "/v1/items/1"))[0], "agent_banned")


async def test_spool_full_refuses_paid_calls_but_not_free_ones(h: Harness) -> None:
    h.gateway.spool.max_bytes = 0
    response, _ = await h.paid("GET", "/v1/items/1")
    refused(response, "spool_full")
    assert (await h.client.get("/docs")).status_code == 200


async def test_refusal_releases_nothing_and_claims_nothing(h: Harness) -> None:
    """A refused intent does not advance the channel or get claimed."""
    response, signed = await h.paid("GET", "/v1/items/1", domain=b"devnet!!")
    refused(response, "wrong_domain")
    assert signed.id not in h.gateway.claims
    assert h.gateway.channels.get(signed.channel) is None


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


async def _pay_with(
    h: Harness, required: PaymentRequired, method: str, url: str, **overrides: Any
) -> tuple[httpx.Response, SignedIntent]:
    signed = h.agent.sign(required.accepts[0], method=method, url=BASE + url, **overrides)
    header = h.agent.header(required, signed)
    return await h.send(method, url, header), signed


# --- upstream failures (a real upstream server on 127.0.0.1) ----------------------------


async def _real_upstream_harness(tmp_path: Path, upstream: str, **overrides: Any) -> Harness:
    vendor = Keypair.generate()
    settings = gateway_settings(
        spool_dir=tmp_path / "spool", upstream=upstream, vendor=vendor, **overrides
    )
    gateway = Gateway(settings)
    await gateway.startup()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url=BASE)
    return Harness(gateway, client, vendor, PayingAgent())


async def test_upstream_down_is_502(tmp_path: Path) -> None:
    h = await _real_upstream_harness(tmp_path, f"http://127.0.0.1:{free_port()}")
    try:
        response = await h.client.get("/docs")
        assert response.status_code == 502
        assert response.json()["error"] == "upstream_unavailable"
        response, _ = await h.paid("GET", "/v1/items/1")
        assert response.status_code == 502
        assert h.gateway.metrics.proxied.labels("502")._value.get() == 2
    finally:
        await h.client.aclose()
        await h.gateway.shutdown()


async def test_upstream_timeout_is_504_and_streaming_works(tmp_path: Path) -> None:
    with serve_in_thread(echo_upstream, free_port()) as upstream:
        h = await _real_upstream_harness(tmp_path, upstream, upstream_timeout_seconds=0.3)
        try:
            response = await h.client.get("/v1/free/slow?s=2")
            assert response.status_code == 504
            assert response.json()["error"] == "upstream_timeout"
            response, _ = await h.paid("GET", "/v1/slow?s=2")
            assert response.status_code == 504
            response, _ = await h.paid("GET", "/v1/stream")
            assert response.status_code == 200
            assert response.text.count("chunk") == 5
            response = await h.client.post("/v1/free/upload", content=b"z" * 50_000)
            assert response.json()["body_bytes"] == 50_000
        finally:
            await h.client.aclose()
            await h.gateway.shutdown()


async def test_a_gap_left_by_a_refused_intent_is_accepted_and_counted(h: Harness) -> None:
    """The agent signed an intent the gateway refused (stale challenge): its channel
    moved on and it may never sign lower, so the next intent leaves a gap. The
    gateway accepts it, and the gap counts towards the agent's exposure."""
    assert (await h.paid("GET", "/v1/items/1"))[0].status_code == 200
    required = await h.required("GET", "/v1/items/1")
    header, _ = h.agent.pay(
        required, method="GET", url=BASE + "/v1/items/1", expires_at=int(time.time()) + 3_600
    )
    now = time.time
    h.gateway.clock = lambda: now() + 500
    refused(await h.send("GET", "/v1/items/1", header), "stale_challenge")
    h.gateway.clock = now
    before = h.gateway.exposure.outstanding(h.agent.public)
    response, signed = await h.paid("GET", "/v1/items/1")
    assert response.status_code == 200, response.text
    assert signed.cumulative == 750  # 250 served + 250 refused + 250 now
    assert h.gateway.exposure.outstanding(h.agent.public) - before == 500
    # Lower than what the gateway holds is still refused.
    h.agent.cumulative[signed.channel] = 500
    refused((await h.paid("GET", "/v1/items/1"))[0], "cumulative_out_of_step")


async def test_a_spool_write_error_refuses_and_unclaims(h: Harness) -> None:
    def broken(record: Any) -> Any:
        raise OSError(28, "No space left on device")

    h.gateway.spool.append = broken  # type: ignore[method-assign, assignment]
    response, signed = await h.paid("GET", "/v1/items/1")
    required = refused(response, "spool_full")
    assert "No space left" in (required.accepts[0].extra.reason or "")
    assert signed.id not in h.gateway.claims
    assert h.gateway.channels.get(signed.channel) is None
    assert h.gateway.exposure.outstanding(h.agent.public) == 0
