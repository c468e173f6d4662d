"""Setting a deployment up through real transactions: program configs, funded bonds.

Used by `machpay settle init`, the integration tests and the benchmark, on
any cluster where the caller holds the keys (a local runtime, devnet). Every
instruction is built from the IDL like the settler's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from machpay.settle.chain import Chain, TransactionInfo, TransactionRejectedError
from machpay.settle.programs import Deployment
from machpay.settle.transactions import compile_message

__all__ = ["Bootstrap", "send_and_confirm"]


async def send_and_confirm(
    chain: Chain,
    payer: Keypair,
    instructions: Sequence[Instruction],
    *,
    signers: Sequence[Keypair] = (),
    wait_seconds: float = 30.0,
) -> TransactionInfo:
    """Sign (payer first), send with preflight, wait for the commitment; the landed tx."""
    from solders.transaction import VersionedTransaction

    blockhash, _ = await chain.latest_blockhash()
    message = compile_message(payer.pubkey(), instructions, blockhash)
    tx = VersionedTransaction(message, [payer, *signers])
    signature = await chain.send(tx)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while loop.time() < deadline:
        (status,) = await chain.statuses([signature])
        if status is not None and status.reached(chain.commitment):
            info = await chain.transaction(signature)
            if info is not None:
                if info.err is not None:
                    raise TransactionRejectedError(info.err, info.logs)
                return info
        await asyncio.sleep(0.05)
    raise TimeoutError(f"transaction {signature} did not confirm within {wait_seconds}s")


@dataclass
class Bootstrap:
    chain: Chain
    deployment: Deployment
    admin: Keypair

    async def fund(self, key: Pubkey, lamports: int) -> None:
        signature = await self.chain.airdrop(key, lamports)
        for _ in range(200):
            (status,) = await self.chain.statuses([signature])
            if status is not None and status.reached(self.chain.commitment):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"airdrop to {key} did not confirm")

    async def initialize(
        self, *, domain: bytes, treasury: Pubkey, prover_reward_bps: int, timelock: int
    ) -> None:
        """GlobalBond and MachPay configs (skipped where they exist already)."""
        admin = self.admin.pubkey()
        if await self.chain.account(self.deployment.bond_config()) is None:
            ix = self.deployment.global_bond.instruction("initialize").build(
                {"admin": admin}, {"withdrawal_timelock": timelock}
            )
            await send_and_confirm(self.chain, self.admin, [ix])
        if await self.chain.account(self.deployment.config()) is None:
            ix = self.deployment.machpay.instruction("initialize").build(
                {"admin": admin},
                {"domain": domain, "treasury": treasury, "prover_reward_bps": prover_reward_bps},
            )
            await send_and_confirm(self.chain, self.admin, [ix])

    async def set_up(
        self,
        *,
        domain: bytes,
        admin_lamports: int,
        treasury_lamports: int,
        prover_reward_bps: int = 1_000,
        timelock: int = 3_600,
    ) -> Pubkey:
        """A fresh cluster's deployment: fund the admin, fund a new treasury (rent-exempt,
        or the first slash paying it fails), initialize both configs where they are missing.
        Returns the treasury the MachPay config names (an existing config keeps its own)."""
        await self.fund(self.admin.pubkey(), admin_lamports)
        treasury = Keypair().pubkey()
        await self.fund(treasury, treasury_lamports)
        await self.initialize(
            domain=domain, treasury=treasury, prover_reward_bps=prover_reward_bps, timelock=timelock
        )
        config = await self.chain.account(self.deployment.config())
        if config is None:
            raise RuntimeError(
                f"MachPay config {self.deployment.config()} missing after initialize"
            )
        return self.deployment.treasury(config)

    async def deposit(self, agent: Keypair, amount: int) -> TransactionInfo:
        ix = self.deployment.global_bond.instruction("deposit").build(
            {"agent": agent.pubkey()}, {"amount": amount}
        )
        return await send_and_confirm(self.chain, agent, [ix])

    async def request_withdrawal(self, agent: Keypair, amount: int) -> TransactionInfo:
        ix = self.deployment.global_bond.instruction("request_withdrawal").build(
            {"agent": agent.pubkey()}, {"amount": amount}
        )
        return await send_and_confirm(self.chain, agent, [ix])

    async def bond_balance(self, agent: Pubkey) -> int:
        balance = self.deployment.bond_balance(
            await self.chain.account(self.deployment.bond(bytes(agent)))
        )
        return 0 if balance is None else balance
