"""Paying over HTTP: the SDK against a contract-faithful x402 server served by uvicorn.

The server is :class:`machpay.sdk.testing.PaywalledApp`, a stand-in for the
gateway that verifies every payment with ``machpay.protocol.verify_intent``.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import httpx
import pytest

from machpay.protocol import Keypair, Reason, channel_address, detect_fraud
from machpay.sdk import (
    Agent,
    PaymentRejected,
    PaymentUnsupported,
    PolicyViolation,
    SpendPolicy,
    pay,
    receipt,
)
from machpay.sdk.payer import Deployment
from machpay.sdk.testing import ChannelView

from .conftest import DOMAIN, PROGRAM_ID, VENDOR, Served


def channel_of(agent: Agent) -> bytes:
    return channel_address(program_id=PROGRAM_ID, agent=agent.wallet.public, vendor=VENDOR.public)


def test_paid_get_returns_the_response_and_its_receipt(served: Served, agent: Agent) -> None:
    with agent.client() as http:
        response = http.get(f"{served.url}/v1/forecast", params={"city": "Oslo"})
    assert response.status_code == 200
    assert response.json()["paid"] == 1_000
    paid = receipt(response)
    assert paid is not None
    assert (paid.amount, paid.cumulative, paid.vendor) == (1_000, 1_000, VENDOR.address)
    assert paid.intent_id == served.app.accepted[0].id
    assert paid.service == "weather"
    assert [r.intent_id for r in agent.history()] == [paid.intent_id]


def test_cumulative_grows_across_calls_and_vendor_routes(served: Served, agent: Agent) -> None:
    with agent.client() as http:
        for _ in range(3):
            http.get(f"{served.url}/v1/forecast")
        last = http.post(f"{served.url}/v1/translate", json={"text": "hei"})
    paid = receipt(last)
    assert paid is not None
    assert paid.cumulative == 3 * 1_000 + 2_500
    assert len(served.app.accepted) == 4
    assert len(agent.history()) == 4


def test_free_route_is_not_paid(served: Served, agent: Agent) -> None:
    with agent.client() as http:
        response = http.get(f"{served.url}/health")
    assert response.status_code == 200
    assert receipt(response) is None
    assert agent.ledger.spent() == 0


def test_body_and_raw_query_are_bound_as_sent(served: Served, agent: Agent) -> None:
    with agent.client() as http:
        response = http.post(
            f"{served.url}/v1/translate?q=a%20b&x=%C3%A9&empty=",
            content=b"\x00raw body\xff",
            headers={"content-type": "application/octet-stream"},
        )
    assert response.status_code == 200, served.app.refusals
    assert receipt(response) is not None


async def test_async_client_pays(served: Served, agent: Agent) -> None:
    async with agent.async_client() as http:
        first = await http.get(f"{served.url}/v1/forecast")
        second = await http.post(f"{served.url}/v1/forecast", json={"days": 3})
    assert first.status_code == second.status_code == 200
    paid = receipt(second)
    assert paid is not None
    assert paid.cumulative == 2_000


def test_corrective_402_resyncs_and_retries_once(served: Served, agent: Agent) -> None:
    # The gateway knows more on this channel than the agent (say the agent's
    # state was restored from an old backup): it answers out of step.
    served.app.channels[channel_of(agent)] = ChannelView(nonce=0, cumulative=50_000)
    with agent.client() as http:
        response = http.get(f"{served.url}/v1/forecast")
    assert response.status_code == 200
    assert served.app.refusals == [Reason.CUMULATIVE_OUT_OF_STEP.value]
    paid = receipt(response)
    assert paid is not None
    assert paid.cumulative == 51_000
    assert agent.ledger.cumulative(domain=DOMAIN, channel=channel_of(agent)) == 51_000


def test_resync_never_lowers_the_local_cumulative(served: Served, agent: Agent) -> None:
    with agent.client() as http:
        for _ in range(3):
            http.get(f"{served.url}/v1/forecast")
        # The gateway forgets (restart without its state) and hints lower.
        served.app.channels[channel_of(agent)] = ChannelView(nonce=0, cumulative=0)
        response = http.get(f"{served.url}/v1/forecast")
    paid = receipt(response)
    assert paid is not None
    assert paid.cumulative == 4_000  # a gap is fine; a lower cumulative would be fraud


def test_stale_challenge_is_retried_once(served: Served, agent: Agent) -> None:
    with agent.client() as http:
        http.get(f"{served.url}/v1/forecast")
        served.app.stale_next = 1
        response = http.get(f"{served.url}/v1/forecast")
    assert response.status_code == 200
    assert served.app.refusals == [Reason.STALE_CHALLENGE.value]
    paid = receipt(response)
    assert paid is not None
    assert paid.cumulative == 3_000  # the refused intent stays authorised: a gap of 1000
    served.app.stale_next = 2
    with agent.client() as http, pytest.raises(PaymentRejected) as info:
        http.get(f"{served.url}/v1/forecast")
    assert info.value.reason == Reason.STALE_CHALLENGE.value


def test_policy_refuses_before_signing(served: Served, tmp_path: Path) -> None:
    policy = SpendPolicy(max_per_call=999)
    with Agent(Keypair.generate(), policy=policy, state_dir=tmp_path) as agent:
        with agent.client() as http, pytest.raises(PolicyViolation) as info:
            http.get(f"{served.url}/v1/forecast")
        assert info.value.limit == "max_per_call"
        assert (info.value.requested, info.value.allowed) == (1_000, 999)
        assert agent.ledger.allocations() == []
    assert served.app.accepted == []


def test_vendor_budget_stops_paying(served: Served, tmp_path: Path) -> None:
    policy = SpendPolicy(max_per_vendor=2_500)
    with Agent(Keypair.generate(), policy=policy, state_dir=tmp_path) as agent:
        with agent.client() as http:
            http.get(f"{served.url}/v1/forecast")
            http.get(f"{served.url}/v1/forecast")
            with pytest.raises(PolicyViolation) as info:
                http.get(f"{served.url}/v1/forecast")
        assert info.value.limit == "max_per_vendor"
        assert info.value.spent == 2_000


def test_pinned_deployment_refuses_other_domains(served: Served, tmp_path: Path) -> None:
    pin = Deployment(domain=b"mainnet!")
    agent = Agent(Keypair.generate(), deployment=pin, state_dir=tmp_path)
    with agent, agent.client() as http, pytest.raises(PaymentUnsupported, match="domain"):
        http.get(f"{served.url}/v1/forecast")


def test_wrong_domain_is_rejected_with_its_reason(served: Served, agent: Agent) -> None:
    served.app.offered_domain = b"otherdep"
    with agent.client() as http, pytest.raises(PaymentRejected) as info:
        http.get(f"{served.url}/v1/forecast")
    assert info.value.reason == Reason.WRONG_DOMAIN.value


def test_threads_paying_one_vendor_stay_honest(served: Served, agent: Agent) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        with agent.client() as http:
            for _ in range(5):
                try:
                    http.get(f"{served.url}/v1/forecast")
                except PaymentRejected as exc:  # two refusals in a row under contention
                    errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = served.app.accepted
    assert len(accepted) + len(errors) == 20
    assert len(accepted) >= 10
    for a, b in itertools.combinations(accepted, 2):
        assert detect_fraud(a, b) is None


def test_pay_helpers(served: Served, agent: Agent) -> None:
    response = pay.get(f"{served.url}/v1/forecast", agent=agent)
    assert receipt(response) is not None
    response = pay.post(f"{served.url}/v1/translate", json={"t": 1}, agent=agent)
    assert response.status_code == 200
    assert len(agent.history()) == 2


def test_non_machpay_402_is_reported(agent: Agent) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(402, headers={"PAYMENT-REQUIRED": "bm90IGpzb24="})

    transport = httpx.MockTransport(handler)
    with agent.client(transport=transport) as http, pytest.raises(PaymentUnsupported):
        http.get("http://vendor.test/x")


def _scope(request: httpx.Request) -> dict[str, object]:
    return {
        "type": "http",
        "method": request.method,
        "path": request.url.path,
        "raw_path": request.url.raw_path.split(b"?", 1)[0],
        "query_string": request.url.query,
        "headers": [(k.lower(), v) for k, v in request.headers.raw],
    }


def test_failure_after_payment_without_receipt_keeps_no_receipt(agent: Agent) -> None:
    from .conftest import make_app

    app = make_app()

    def handler(request: httpx.Request) -> httpx.Response:
        if "payment-signature" in request.headers:
            return httpx.Response(502, content=b"upstream down")
        status, headers, body = app.handle(_scope(request), request.content)
        return httpx.Response(status, headers=headers, content=body)

    with agent.client(transport=httpx.MockTransport(handler)) as http:
        response = http.get("http://vendor.test/v1/forecast")
    assert response.status_code == 502
    assert receipt(response) is None
    assert agent.history() == []
    # The intent was signed and may be settled: it stays counted as spent.
    assert agent.ledger.spent() == 1_000


def test_discovered_offer_caps_the_price(served: Served, agent: Agent, tmp_path: Path) -> None:
    import json

    from machpay.sdk import FileRegistry

    listing = tmp_path / "services.json"
    entries = [
        {"vendor": VENDOR.address, "service": "weather", "price": 1_000, "gateway_url": served.url},
        {
            "vendor": VENDOR.address,
            "service": "translate",
            "price": 2_000,
            "gateway_url": served.url,
        },
    ]
    listing.write_text(json.dumps({"services": entries}))
    registry = FileRegistry(listing)
    weather = registry.find(service="weather", max_price=1_500)
    assert weather is not None
    with agent.client_for(weather) as http:
        assert receipt(http.get("/v1/forecast")) is not None
        # Same gateway, but a service the listing did not offer through this client.
        with pytest.raises(PolicyViolation, match="allowed_services"):
            http.get("/v1/translate")
    translate = registry.find(service="translate")
    assert translate is not None
    with agent.client_for(translate) as http, pytest.raises(PolicyViolation) as info:
        http.get("/v1/translate")  # the gateway asks 2500, the listing said 2000
    assert info.value.limit == "max_per_call"


def test_machpay_entry_is_found_beside_other_x402_schemes() -> None:
    import base64

    import orjson

    from machpay.sdk.payer import parse_payment_required

    from .conftest import make_app

    app = make_app()
    ours = app.offer(app.routes["/v1/forecast"], b"/v1/forecast").to_json()
    other = {"scheme": "exact", "network": "eip155:8453", "amount": "10", "extra": {"name": "USDC"}}
    document = {
        "x402Version": 2,
        "error": "payment_required",
        "resource": {"url": "http://vendor.test/v1/forecast"},
        "accepts": [other, ours],
    }
    header = base64.b64encode(orjson.dumps(document)).decode()
    required = parse_payment_required(header)
    assert [entry.scheme for entry in required.accepts] == ["machpay"]
    only_other = base64.b64encode(orjson.dumps({**document, "accepts": [other]})).decode()
    with pytest.raises(PaymentUnsupported, match="exact"):
        parse_payment_required(only_other)


async def test_async_flow_refuses_by_policy_and_retries_stale(
    served: Served, tmp_path: Path
) -> None:
    policy = SpendPolicy(max_per_call=1_000)
    with Agent(Keypair.generate(), policy=policy, state_dir=tmp_path) as agent:
        async with agent.async_client() as http:
            with pytest.raises(PolicyViolation):
                await http.get(f"{served.url}/v1/translate")
            served.app.stale_next = 1
            response = await http.get(f"{served.url}/v1/forecast")
    assert response.status_code == 200
    assert served.app.refusals == [Reason.STALE_CHALLENGE.value]


def test_expired_is_retried_once_then_reported(served: Served, agent: Agent) -> None:
    import time

    # The gateway's clock runs ten minutes ahead: every intent looks expired to it
    # (its challenges are issued for its own time, so they stay fresh).
    served.app.clock = lambda: time.time() + 600
    with agent.client() as http, pytest.raises(PaymentRejected) as info:
        http.get(f"{served.url}/v1/forecast")
    assert info.value.reason == Reason.EXPIRED.value
    assert served.app.refusals == [Reason.EXPIRED.value, Reason.EXPIRED.value]
