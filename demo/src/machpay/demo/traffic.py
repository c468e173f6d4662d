"""The calls the demo's agents make: honest agents through the SDK, and two cheats.

Honest agents pay through :class:`machpay.sdk.Agent` exactly as an agent's
code would (402, policy, durable nonce and cumulative, sign, retry). The two
cheats sign by hand, because the SDK never produces what they send:

* the **equivocator** signs two different intents with the same nonce and
  spends them at two vendors;
* the **rewinder** pays two replicas of one vendor's gateway with vouchers
  whose cumulative does not add up (the second does not include the first).

Each gateway serves what it sees (it cannot know what another gateway
served); the stream workers see both intents and prove the offence.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from machpay.gateway.testing import PayingAgent
from machpay.protocol import Keypair, SignedIntent
from machpay.sdk import Agent, PaymentRejected, receipt
from machpay.x402 import PaymentRequired


@dataclass(frozen=True)
class Route:
    path: str
    service: str
    price: int


@dataclass(frozen=True)
class VendorEndpoint:
    name: str
    keypair: Keypair
    gateway_urls: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass
class Paid:
    """What the agents were charged, by their own receipts."""

    calls: int = 0
    lamports: int = 0
    by_vendor: Counter[str] = field(default_factory=Counter)
    by_agent: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, vendor: str, agent: str, amount: int) -> None:
        self.calls += 1
        self.lamports += amount
        self.by_vendor[vendor] += amount
        self.by_agent[agent] += amount


def honest_traffic(
    agents: list[Keypair],
    vendors: list[VendorEndpoint],
    *,
    calls: int,
    state_dir: Path,
    seed: int,
    echo: Callable[[str], None],
) -> Paid:
    """``calls`` paid calls spread over ``agents`` (one thread each) and the vendors."""
    paid = Paid()
    lock = threading.Lock()
    per_agent = [
        calls // len(agents) + (1 if i < calls % len(agents) else 0) for i in range(len(agents))
    ]
    done = [0]
    errors: list[BaseException] = []

    def run(index: int, key: Keypair) -> None:
        rng = random.Random(seed * 1_000 + index)
        try:
            with (
                Agent(key, state_dir=state_dir / key.address) as agent,
                agent.client(timeout=30) as http,
            ):
                for _ in range(per_agent[index]):
                    vendor = rng.choice(vendors)
                    route = rng.choice(vendor.routes)
                    url = rng.choice(vendor.gateway_urls) + route.path
                    try:
                        response = http.get(url, params={"q": f"{index}-{rng.random():.6f}"})
                    except PaymentRejected as exc:
                        with lock:
                            paid.refused[exc.reason] += 1
                        continue
                    response.raise_for_status()
                    got = receipt(response)
                    assert got is not None, f"{url} answered without a receipt"
                    with lock:
                        paid.add(vendor.name, key.address, got.amount)
                        done[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, k), daemon=True) for i, k in enumerate(agents)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        with lock:
            echo(f"  paid calls: {done[0]:,} / {calls:,}")
    for t in threads:
        t.join()
    paid.seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return paid


def _challenge(client: httpx.Client, url: str) -> PaymentRequired:
    response = client.get(url)
    if response.status_code != 402:
        raise RuntimeError(f"{url}: expected 402, got {response.status_code} {response.text[:200]}")
    return PaymentRequired.decode(response.headers["payment-required"])


def _pay(client: httpx.Client, cheat: PayingAgent, url: str) -> tuple[int, str, SignedIntent]:
    """Pay ``url`` once with ``cheat``'s current nonce/cumulative; (status, refusal, intent)."""
    required = _challenge(client, url)
    header, signed = cheat.pay(required, method="GET", url=url)
    response = client.get(url, headers={"PAYMENT-SIGNATURE": header})
    reason = ""
    if response.status_code == 402:
        reason = PaymentRequired.decode(response.headers["payment-required"]).error
    return response.status_code, reason, signed


@dataclass
class Cheat:
    """One dishonest agent and what its two offending calls were answered."""

    name: str
    keypair: Keypair
    signer: PayingAgent
    answers: list[int] = field(default_factory=list)
    by_vendor: Counter[str] = field(default_factory=Counter)

    @property
    def amount(self) -> int:
        return sum(self.by_vendor.values())


def equivocate(key: Keypair, first: VendorEndpoint, second: VendorEndpoint) -> Cheat:
    """Same nonce, two different messages, spent at two vendors."""
    cheat = PayingAgent(keypair=key)
    outcome = Cheat("equivocator", key, cheat)
    with httpx.Client(timeout=30) as client:
        for vendor in (first, second):
            cheat.nonce = 0  # both intents carry nonce 1
            route = vendor.routes[0]
            status, _, signed = _pay(client, cheat, vendor.gateway_urls[0] + route.path)
            outcome.answers.append(status)
            if status == 200:
                outcome.by_vendor[vendor.name] += signed.amount
    return outcome


def rewind(key: Keypair, vendor: VendorEndpoint) -> Cheat:
    """Two vouchers on one channel whose cumulative skips the first payment,
    each shown to a different replica of the vendor's gateway."""
    if len(vendor.gateway_urls) < 2:
        raise ValueError(f"vendor {vendor.name} needs two gateway replicas for this cheat")
    cheat = PayingAgent(keypair=key)
    outcome = Cheat("rewinder", key, cheat)
    route = vendor.routes[0]
    with httpx.Client(timeout=30) as client:
        for replica in vendor.gateway_urls[:2]:
            cheat.cumulative.clear()  # each voucher claims only its own amount
            status, _, signed = _pay(client, cheat, replica + route.path)
            outcome.answers.append(status)
            if status == 200:
                outcome.by_vendor[vendor.name] += signed.amount
    return outcome


def try_again(cheat: Cheat, vendor: VendorEndpoint) -> tuple[int, str]:
    """One more call by a (by now) banned agent, with a voucher that follows on
    from what it signed before: what the gateway says."""
    with httpx.Client(timeout=30) as client:
        url = vendor.gateway_urls[0] + vendor.routes[0].path
        status, reason, _ = _pay(client, cheat.signer, url)
        return status, reason
