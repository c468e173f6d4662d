"""The demo's chain: a local Solana runtime with the programs, set up like a deployment.

A fresh ``machpay-localnet`` node per run (so balances start from known
values), the program configs initialised by `machpay settle init`'s code,
vendors and their services registered in ServiceRegistry by the vendors'
own keys, bonds deposited by the agents' own keys, and the settler started
as `machpay settle run`. Everything goes through real transactions over
JSON-RPC, the path a deployment on devnet takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from solders.keypair import Keypair as SoldersKeypair
from solders.pubkey import Pubkey

from machpay.config import Settings
from machpay.demo.processes import Service, ServiceGroup
from machpay.localnet.node import LocalnetNode
from machpay.protocol import Keypair, save_keypair
from machpay.settle.bootstrap import Bootstrap, send_and_confirm
from machpay.settle.chain import Chain
from machpay.settle.programs import Deployment
from machpay.testing import free_port

T = TypeVar("T")
Echo = Callable[[str], None]

SOL = 1_000_000_000
#: Seconds between a withdrawal request and the earliest withdrawal.
TIMELOCK_SECONDS = 3_600
PROVER_REWARD_BPS = 1_000


def solders_keypair(key: Keypair) -> SoldersKeypair:
    return SoldersKeypair.from_seed(key.seed)


@dataclass
class LocalChain:
    """One local node, the deployment on it, and the keys the demo holds."""

    node: LocalnetNode
    settings: Settings
    deployment: Deployment
    admin: Keypair
    run_dir: Path
    echo: Echo
    vendor_baseline: dict[bytes, int] = field(default_factory=dict)
    treasury: Pubkey | None = None

    def _run(self, work: Callable[[Chain], Awaitable[T]]) -> T:
        async def go() -> T:
            async with Chain(self.node.url, self.settings.settle.commitment) as chain:
                return await work(chain)

        return asyncio.run(go())

    def _bootstrap(self, chain: Chain) -> Bootstrap:
        return Bootstrap(chain, self.deployment, solders_keypair(self.admin))

    def initialise(self) -> None:
        async def work(chain: Chain) -> None:
            self.treasury = await self._bootstrap(chain).set_up(
                domain=self.settings.deployment.domain,
                admin_lamports=100 * SOL,
                treasury_lamports=SOL // 100,
                prover_reward_bps=PROVER_REWARD_BPS,
                timelock=TIMELOCK_SECONDS,
            )

        self._run(work)
        self.echo(
            f"  programs initialised: domain {self.settings.deployment.domain_tag}, "
            f"withdrawal timelock {TIMELOCK_SECONDS}s, prover reward {PROVER_REWARD_BPS / 100:.0f}%"
        )

    def register_vendors(
        self, vendors: list[Keypair], gateways: list[str], routes: list[list[tuple[str, int]]]
    ) -> None:
        """Each vendor registers itself and its services (name, price) with its own key."""
        registry = self.deployment.service_registry
        if registry is None:
            raise RuntimeError("the ServiceRegistry IDL is missing (settle.idl_dir)")

        async def work(chain: Chain) -> None:
            boot = self._bootstrap(chain)
            for index, (vendor, gateway, services) in enumerate(
                zip(vendors, gateways, routes, strict=True)
            ):
                signer = solders_keypair(vendor)
                await boot.fund(signer.pubkey(), 2 * SOL)
                ixs = [
                    registry.instruction("register_vendor").build(
                        {"authority": signer.pubkey()},
                        {"name": f"vendor-{index}", "metadata_uri": ""},
                    )
                ]
                for name, price in services:
                    ixs.append(
                        registry.instruction("register_service").build(
                            {"authority": signer.pubkey()},
                            {
                                "name": name,
                                "terms": {
                                    "price": price,
                                    "asset": bytes(32),
                                    "unit": "call",
                                    "gateway_url": gateway,
                                    "metadata_uri": "",
                                },
                            },
                        )
                    )
                await send_and_confirm(chain, signer, ixs)
                self.vendor_baseline[vendor.public] = await chain.balance(signer.pubkey())

        self._run(work)
        self.echo(f"  {len(vendors)} vendors registered their services in ServiceRegistry")

    def deposit_bonds(self, agents: list[Keypair], amount: int) -> None:
        async def work(chain: Chain) -> None:
            boot = self._bootstrap(chain)
            for agent in agents:
                signer = solders_keypair(agent)
                await boot.fund(signer.pubkey(), amount + SOL)
                await boot.deposit(signer, amount)

        self._run(work)
        self.echo(f"  {len(agents)} agents deposited {amount:,} lamports each into GlobalBond")

    def start_settler(
        self, group: ServiceGroup, write_config: Callable[[str, dict[str, dict[str, object]]], Path]
    ) -> None:
        payer = self.run_dir / "keys" / "settler.json"
        payer.parent.mkdir(parents=True, exist_ok=True)
        save_keypair(self.admin, payer, overwrite=True)
        config = write_config(
            "settle",
            {
                "settle": {
                    "rpc_url": self.node.url,
                    "payer_keypair": str(payer),
                    "state_dir": str(self.run_dir / "settle"),
                    "follow_interval_seconds": 0.5,
                    "status_interval_seconds": 5,
                }
            },
        )
        group.start(
            Service(
                "settler",
                ["--config", str(config), "settle", "run"],
                self.run_dir / "logs" / "settler.log",
            ),
            timeout_s=60,
        )

    def balances(self, keys: list[Pubkey]) -> list[int]:
        async def work(chain: Chain) -> list[int]:
            return [await chain.balance(k) for k in keys]

        return self._run(work)

    def vendor_deltas(self, vendors: list[Keypair]) -> dict[bytes, int]:
        now = self.balances([Pubkey(v.public) for v in vendors])
        return {
            v.public: n - self.vendor_baseline.get(v.public, n)
            for v, n in zip(vendors, now, strict=True)
        }

    def bond_balances(self, agents: list[Keypair]) -> dict[bytes, int]:
        async def work(chain: Chain) -> dict[bytes, int]:
            boot = self._bootstrap(chain)
            return {a.public: await boot.bond_balance(Pubkey(a.public)) for a in agents}

        return self._run(work)

    def stop(self) -> None:
        self.node.stop()


def start(run_dir: Path, settings: Settings, group: ServiceGroup, *, echo: Echo) -> LocalChain:
    """A fresh local node for this run, with the deployment initialised."""
    node = LocalnetNode(port=free_port(), home=run_dir / "localnet", echo=echo)
    echo("  building machpay-localnet if needed (cargo; the first build takes minutes)")
    node.build()
    node.start(build=False, die_with_parent=True)
    echo(f"  local Solana runtime on {node.url} (log {node.log_file})")
    settle = settings.settle.model_copy(update={"rpc_url": node.url})
    settings = settings.model_copy(update={"settle": settle})
    deployment = Deployment.load(
        settle.idl_dir,
        machpay_id=settings.deployment.machpay_program_id,
        global_bond_id=settle.global_bond_program_id,
        service_registry_id=settle.service_registry_program_id,
    )
    chain = LocalChain(node, settings, deployment, Keypair.generate(), run_dir, echo)
    chain.initialise()
    return chain
