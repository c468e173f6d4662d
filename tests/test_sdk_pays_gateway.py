"""The SDK paying the real vendor gateway (``machpay.gateway``) over real HTTP.

The gateway runs under uvicorn on 127.0.0.1 in front of its echo upstream
(also under uvicorn), with Kafka unreachable so accepted intents go to its
durable spool (one test also brings the real Kafka broker). The SDK's own
tests exercise the same contract against the stand-in server in
``sdk/tests/test_pay.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from machpay.gateway import app as gateway_app
from machpay.gateway import testing as gateway_testing
from machpay.protocol import Keypair, Reason
from machpay.sdk import Agent, PaymentRejected, PolicyViolation, SpendPolicy, receipt
from machpay.testing import free_port, read_topic, serve_in_thread
from machpay.x402 import PaymentRequired


@dataclass
class RealGateway:
    gateway: Any
    url: str
    vendor: Keypair


@pytest.fixture
def real_gateway(tmp_path: Path) -> Iterator[RealGateway]:
    vendor = Keypair.generate()
    with serve_in_thread(gateway_testing.echo_upstream, free_port()) as upstream:
        settings = gateway_testing.gateway_settings(
            spool_dir=tmp_path / "spool",
            upstream=upstream,
            vendor=vendor,
            unknown_agent_allowance=10**12,
        )
        gateway = gateway_app.Gateway(settings)
        with serve_in_thread(gateway, free_port()) as url:
            yield RealGateway(gateway, url, vendor)


def new_agent(state_dir: Path, key: Keypair | None = None, **options: Any) -> Agent:
    return Agent(key or Keypair.generate(), state_dir=state_dir, **options)


def test_sdk_pays_the_real_gateway(real_gateway: RealGateway, tmp_path: Path) -> None:
    with new_agent(tmp_path) as agent, agent.client() as http:
        response = http.get(f"{real_gateway.url}/v1/search", params={"q": "solana agents"})
        assert response.status_code == 200, response.text
        echoed = response.json()
        assert echoed["query"] == "q=solana+agents"
        paid = receipt(response)
        assert paid is not None
        assert (paid.amount, paid.cumulative, paid.vendor) == (
            1_000,
            1_000,
            real_gateway.vendor.address,
        )
        # Another route of the same vendor rides the same channel.
        response = http.get(f"{real_gateway.url}/v1/items/42")
        assert response.status_code == 200, response.text
        paid = receipt(response)
        assert paid is not None
        assert paid.cumulative == 1_250
        # Free routes are not paid.
        free = http.get(f"{real_gateway.url}/docs")
        assert free.status_code == 200
        assert receipt(free) is None
        assert len(agent.history()) == 2


def test_post_body_is_bound_and_accepted(real_gateway: RealGateway, tmp_path: Path) -> None:
    with new_agent(tmp_path) as agent, agent.client() as http:
        response = http.post(f"{real_gateway.url}/v1/search?x=%20y", json={"q": "bond"})
        assert response.status_code == 200, response.text
        assert response.json()["body_bytes"] == len(b'{"q":"bond"}')
        assert receipt(response) is not None


async def test_async_client_pays_the_real_gateway(
    real_gateway: RealGateway, tmp_path: Path
) -> None:
    with new_agent(tmp_path) as agent:
        async with agent.async_client() as http:
            for _ in range(3):
                response = await http.get(f"{real_gateway.url}/v1/search?q=1")
                assert response.status_code == 200, response.text
        paid = receipt(response)
        assert paid is not None
        assert paid.cumulative == 3_000


def test_corrective_402_from_the_real_gateway(real_gateway: RealGateway, tmp_path: Path) -> None:
    key = Keypair.generate()
    with new_agent(tmp_path / "first", key) as first, first.client() as http:
        for _ in range(3):
            assert http.get(f"{real_gateway.url}/v1/search?q=1").status_code == 200
    # The same key with an empty ledger (a new machine): the gateway knows the
    # channel stands at 3000 and says so; the SDK raises its cumulative and
    # retries once with a new nonce, without user code.
    with new_agent(tmp_path / "second", key) as second, second.client() as http:
        response = http.get(f"{real_gateway.url}/v1/search?q=1")
        assert response.status_code == 200, response.text
        paid = receipt(response)
        assert paid is not None
        assert paid.cumulative == 4_000


def test_policy_is_enforced_before_the_gateway_sees_anything(
    real_gateway: RealGateway, tmp_path: Path
) -> None:
    with new_agent(tmp_path, policy=SpendPolicy(max_per_call=500)) as agent, agent.client() as http:
        assert http.get(f"{real_gateway.url}/v1/items/1").status_code == 200  # 250
        with pytest.raises(PolicyViolation, match="max_per_call"):
            http.get(f"{real_gateway.url}/v1/search?q=1")  # 1000


def test_sequential_payments_are_fraud_free(real_gateway: RealGateway, tmp_path: Path) -> None:
    with new_agent(tmp_path) as agent, agent.client() as http:
        for i in range(10):
            assert http.get(f"{real_gateway.url}/v1/items/{i}").status_code == 200
        allocations = agent.ledger.allocations()
    assert [a.cumulative for a in allocations] == [250 * (i + 1) for i in range(10)]
    assert all(b.nonce > a.nonce for a, b in itertools.pairwise(allocations))


def test_channel_recovers_after_a_refused_payment(
    real_gateway: RealGateway, tmp_path: Path
) -> None:
    """A refused signed intent leaves the agent ahead of the gateway for good (it
    never signs lower); the gateway accepts the gap (gateway 4181302)."""
    real_gateway.gateway.exposure.unknown_allowance = 2_500
    with new_agent(tmp_path) as agent, agent.client() as http:
        for _ in range(2):
            assert http.get(f"{real_gateway.url}/v1/search?q=1").status_code == 200
        with pytest.raises(PaymentRejected) as info:
            http.get(f"{real_gateway.url}/v1/search?q=1")
        assert info.value.reason == Reason.AGENT_UNKNOWN.value
        real_gateway.gateway.exposure.unknown_allowance = 10**12
        # The refused intent (cumulative 3000) stays signed: the next one leaves a
        # gap over what the gateway served, which it must accept.
        response = http.get(f"{real_gateway.url}/v1/search?q=1")
        assert response.status_code == 200, response.text
        paid = receipt(response)
        assert paid is not None
        assert paid.cumulative == 4_000


def _corrupt_next_challenge(count: list[int]) -> Callable[[httpx.Response], None]:
    """A response hook that swaps the challenge of the next ``count[0]`` 402s for a forged one."""

    def hook(response: httpx.Response) -> None:
        header = response.headers.get("PAYMENT-REQUIRED")
        if response.status_code != 402 or header is None or count[0] == 0:
            return
        count[0] -= 1
        required = PaymentRequired.decode(header)
        entry = required.accepts[0]
        forged = replace(entry, extra=replace(entry.extra, challenge=b"\x00" * 20))
        response.headers["PAYMENT-REQUIRED"] = replace(required, accepts=(forged,)).encode()

    return hook


def test_stale_challenge_retry_on_a_known_channel(
    real_gateway: RealGateway, tmp_path: Path
) -> None:
    """The contract's stale_challenge retry signs cumulative = refused + amount."""
    forged = [0]
    with new_agent(tmp_path) as agent:
        client = agent.client(event_hooks={"response": [_corrupt_next_challenge(forged)]})
        with client as http:
            assert http.get(f"{real_gateway.url}/v1/search?q=1").status_code == 200
            forged[0] = 1
            response = http.get(f"{real_gateway.url}/v1/search?q=1")
            assert response.status_code == 200, response.text
        paid = receipt(response)
        assert paid is not None
        assert paid.cumulative == 3_000  # 1000 served, 2000 refused as stale, 3000 served


def test_stale_challenge_retry_on_a_new_channel(real_gateway: RealGateway, tmp_path: Path) -> None:
    forged = [1]
    with new_agent(tmp_path) as agent:
        client = agent.client(event_hooks={"response": [_corrupt_next_challenge(forged)]})
        with client as http:
            response = http.get(f"{real_gateway.url}/v1/search?q=1")
        assert response.status_code == 200, response.text
        paid = receipt(response)
        assert paid is not None
        assert paid.cumulative == 2_000


@pytest.mark.integration
async def test_sdk_payments_land_on_intents_accepted(kafka_settings: Any, tmp_path: Path) -> None:
    """The issue's end-to-end: real SDK → real gateway → real upstream, real local Kafka."""
    from machpay import topics

    vendor = Keypair.generate()
    with serve_in_thread(gateway_testing.echo_upstream, free_port()) as upstream:
        settings = gateway_testing.gateway_settings(
            spool_dir=tmp_path / "spool", upstream=upstream, vendor=vendor, base=kafka_settings
        )
        gateway = gateway_app.Gateway(settings)
        with (
            serve_in_thread(gateway, free_port()) as url,
            new_agent(tmp_path / "state") as agent,
        ):
            async with agent.async_client() as http:
                responses = [await http.get(f"{url}/v1/search?q={i}") for i in range(3)]
                responses.append(await http.post(f"{url}/v1/search", json={"q": "post"}))
    receipts = [receipt(r) for r in responses]
    assert all(r is not None for r in receipts), [r.text for r in responses]
    ids = {r.intent_id for r in receipts if r is not None}
    batches = await read_topic(
        kafka_settings,
        topics.INTENTS_ACCEPTED,
        done=lambda values: ids <= set(gateway_testing.accepted_ids(values)),
    )
    on_topic = [
        record for batch in batches for record in batch["intents"] if bytes(record["id"]) in ids
    ]
    assert {bytes(r["id"]) for r in on_topic} == ids
    assert all(bytes(r["vendor"]) == vendor.public for r in on_topic)


def test_percent_encoded_path_and_query_are_bound_as_sent(
    real_gateway: RealGateway, tmp_path: Path
) -> None:
    with new_agent(tmp_path) as agent, agent.client() as http:
        response = http.get(f"{real_gateway.url}/v1/items/a%20b%C3%A9?x=%2F&y=1+2&z")
        assert response.status_code == 200, response.text
        assert receipt(response) is not None


def test_threads_paying_the_real_gateway_stay_honest(
    real_gateway: RealGateway, tmp_path: Path
) -> None:
    import threading

    rejected: list[PaymentRejected] = []
    served: list[bytes] = []
    lock = threading.Lock()
    with new_agent(tmp_path) as agent:

        def work() -> None:
            with agent.client() as http:
                for _ in range(8):
                    try:
                        response = http.get(f"{real_gateway.url}/v1/items/1")
                    except PaymentRejected as exc:  # out of order twice in a row
                        with lock:
                            rejected.append(exc)
                        continue
                    paid = receipt(response)
                    assert paid is not None
                    with lock:
                        served.append(paid.intent_id)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        signed = agent.ledger.allocations()
    assert len(served) + len(rejected) == 32
    assert len(served) >= 24
    assert all(r.reason == Reason.CUMULATIVE_OUT_OF_STEP.value for r in rejected)
    # The ledger's sequence on the channel is one honest chain.
    assert all(b.cumulative == a.cumulative + b.amount for a, b in itertools.pairwise(signed))
