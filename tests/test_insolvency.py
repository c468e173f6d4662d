"""An agent whose bond cannot cover what it owes ends up refused at the gateway.

The whole path, every component real: an agent pays a vendor's gateway
(uvicorn, real Kafka producer) for more than its bond holds; ``machpay
streams worker`` (a subprocess) batches the served intents; the settler
submits the batch to the programs running in the local Solana runtime
(``machpay-localnet``), which pay what the bond holds, mark the Bond
insolvent and emit ``AgentInsolvent``; the settler's follower publishes it
as an AGENT_INSOLVENT chain event; the stream worker's Ledger turns it into
``agents.status.insolvent``; the gateway, reading agents.status, refuses the
agent with ``agent_banned``. A top-up afterwards does not clear it, as on-chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from solders.keypair import Keypair as SoldersKeypair
from solders.pubkey import Pubkey

from machpay import topics
from machpay.config import Settings, load_settings, to_toml
from machpay.gateway.app import Gateway
from machpay.gateway.testing import PayingAgent, echo_upstream, gateway_settings, wait_until
from machpay.protocol import Keypair, save_keypair
from machpay.settle.bootstrap import Bootstrap
from machpay.settle.chain import Chain
from machpay.settle.service import SettleService, load_deployment
from machpay.testing import free_port, read_topic, serve_in_thread
from machpay.x402 import PaymentRequired

pytestmark = pytest.mark.integration

PRICE = 1_000  # /v1/search in machpay.gateway.testing.PAID_ROUTES
CALLS = 5
SHORT_BOND = 1_000  # covers one call of the five
VENDOR_FLOAT = 1_000_000  # a vendor account must stay rent-exempt to receive payments


def stack_settings(base: Settings, rpc_url: str, tmp: Path, payer_file: Path) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "kafka": base.kafka.model_dump(),
            "streams": {"batch_max_intents": 100, "batch_max_age_ms": 300},
            "settle": {
                "rpc_url": rpc_url,
                "payer_keypair": str(payer_file),
                "state_dir": str(tmp / "settle-state"),
                "poll_interval_seconds": 0.05,
                "follow_interval_seconds": 0.2,
                "group_id": f"settle-{os.getpid()}-{time.monotonic_ns()}",
            },
        },
    )


@contextlib.contextmanager
def streams_worker(settings: Settings, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    config = tmp / "machpay.toml"
    config.write_text(
        to_toml({s: getattr(settings, s).model_dump(mode="json") for s in ("kafka", "streams")})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MACHPAY_")}
    env["MACHPAY_CONFIG"] = str(config)
    with (tmp / "streams.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "machpay.cli", "streams", "worker", "--log-level", "WARNING"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def settler(settings: Settings) -> AsyncIterator[SettleService]:
    """The settler and its chain follower, in this process."""
    service = SettleService.from_settings(settings)
    stop = asyncio.Event()
    task = asyncio.ensure_future(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def pay(
    client: httpx.AsyncClient, agent: PayingAgent, path: str = "/v1/search"
) -> httpx.Response:
    first = await client.get(path)
    assert first.status_code == 402, first.text
    required = PaymentRequired.from_body(first.content)
    header, _ = agent.pay(required, method="GET", url=str(client.base_url) + path)
    return await client.get(path, headers={"PAYMENT-SIGNATURE": header})


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")


def statuses_of(values: list[dict[str, Any]], agent: bytes) -> list[dict[str, Any]]:
    return sorted((v for v in values if v["agent"] == agent), key=lambda v: v["version"])


async def test_a_short_bond_makes_the_agent_insolvent_and_the_gateway_refuses_it(
    kafka_settings: Settings, localnet_url: str, tmp_path: Path
) -> None:
    payer_key = Keypair.generate()
    payer_file = tmp_path / "payer.json"
    save_keypair(payer_key, payer_file)
    settings = stack_settings(kafka_settings, localnet_url, tmp_path, payer_file)
    deployment = load_deployment(settings)
    chain = Chain(localnet_url, settings.settle.commitment)
    payer = SoldersKeypair.from_bytes(payer_key.to_solana_bytes())
    boot = Bootstrap(chain, deployment, payer)
    # The configs are per runtime (shared by the session): the first test creates them.
    await boot.set_up(
        domain=settings.deployment.domain,
        admin_lamports=100 * 10**9,
        treasury_lamports=VENDOR_FLOAT,
    )
    short, healthy = PayingAgent(), PayingAgent()
    signers = {
        a.public: SoldersKeypair.from_bytes(a.keypair.to_solana_bytes()) for a in (short, healthy)
    }
    for signer in signers.values():
        await boot.fund(signer.pubkey(), 10**9)
    await boot.deposit(signers[healthy.public], 100_000_000)
    vendor = Keypair.generate()
    await boot.fund(Pubkey(vendor.public), VENDOR_FLOAT)
    channel = deployment.channel(short.public, vendor.public)

    with serve_in_thread(echo_upstream, free_port()) as upstream:
        gw_settings = gateway_settings(
            spool_dir=tmp_path / "spool",
            upstream=upstream,
            vendor=vendor,
            base=settings,
            unknown_agent_allowance=CALLS * PRICE,
        )
        gateway = Gateway(gw_settings)
        with serve_in_thread(gateway, free_port()) as url:
            assert await wait_until(lambda: gateway.ready, 30)
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                # No status exists yet (no stream worker runs): the gateway serves the
                # unknown agent up to its allowance, 5,000 lamports on a bond of 1,000.
                for _ in range(CALLS):
                    assert (await pay(client, short)).status_code == 200
                await boot.deposit(signers[short.public], SHORT_BOND)

                with streams_worker(settings, tmp_path):
                    async with settler(settings):

                        async def refused() -> bool:
                            status = gateway.exposure.status(short.public)
                            return status is not None and status.insolvent

                        await eventually(refused, "the gateway to learn the insolvency", 180)
                        response = await pay(client, short)
                        assert response.status_code == 402
                        assert response.json()["error"] == "agent_banned"
                        assert "insolvent" in response.text
                        # The refusal is about this agent, not the gateway or the chain.
                        assert (await pay(client, healthy)).status_code == 200

                        # A top-up refills the bond; the program never clears the flag.
                        await boot.deposit(signers[short.public], 10_000)

                        async def topped_up() -> bool:
                            status = gateway.exposure.status(short.public)
                            return status is not None and status.bond >= 10_000

                        await eventually(topped_up, "the top-up in agents.status", 60)
                        status = gateway.exposure.status(short.public)
                        assert status is not None
                        assert status.insolvent
                        response = await pay(client, short)
                        assert response.json()["error"] == "agent_banned"

    # The chain: the bond paid what it held, the rest stayed owed, the Bond is flagged.
    channel_state = deployment.channel_state(await chain.account(channel))
    assert channel_state is not None
    assert channel_state.settled == SHORT_BOND
    bond_data = await chain.account(deployment.bond(short.public))
    assert bond_data is not None
    bond = deployment.global_bond.account("Bond").decode(bond_data)
    assert (bond["balance"], bond["insolvent"]) == (10_000, True)
    await chain.close()

    events = await read_topic(
        settings,
        topics.CHAIN_EVENTS,
        done=lambda v: any(
            e["kind"] == "AGENT_INSOLVENT" and e["agent"] == short.public for e in v
        ),
        wait_seconds=30,
    )
    # The follower starts without a checkpoint, so other tests' facts are here too.
    (insolvent,) = [
        e for e in events if e["kind"] == "AGENT_INSOLVENT" and e["agent"] == short.public
    ]  # one short settlement
    assert insolvent["account"] == bytes(channel)
    assert (insolvent["agent"], insolvent["vendor"]) == (short.public, vendor.public)
    assert insolvent["amount"] == CALLS * PRICE - SHORT_BOND  # owed minus paid

    values = await read_topic(
        settings,
        topics.AGENTS_STATUS,
        done=lambda v: any(s["insolvent"] and s["bond"] >= 10_000 for s in v),
        wait_seconds=30,
    )
    history = statuses_of(values, short.public)
    flags = [s["insolvent"] for s in history]
    assert flags[-1]
    assert flags == sorted(flags)  # once insolvent, never solvent again
    assert not any(s["insolvent"] for s in statuses_of(values, healthy.public))
