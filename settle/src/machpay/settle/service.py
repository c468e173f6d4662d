"""Wiring: settings -> chain client, deployment, payer -> settler + follower in one process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from machpay.config import Settings
from machpay.settle.chain import Chain
from machpay.settle.follower import Follower, is_withdrawal
from machpay.settle.programs import Deployment
from machpay.settle.records import ChainFact
from machpay.settle.settler import Settler, load_payer

__all__ = ["SettleService", "load_deployment"]


def load_deployment(settings: Settings) -> Deployment:
    cfg = settings.settle
    return Deployment.load(
        cfg.idl_dir,
        machpay_id=settings.deployment.machpay_program_id,
        global_bond_id=cfg.global_bond_program_id,
        service_registry_id=cfg.service_registry_program_id,
    )


@dataclass
class SettleService:
    settler: Settler
    follower: Follower | None
    chain: Chain

    @classmethod
    def from_settings(
        cls, settings: Settings, *, on_progress: Callable[[str], None] | None = None
    ) -> SettleService:
        cfg = settings.settle
        payer = load_payer(settings)
        deployment = load_deployment(settings)
        chain = Chain(cfg.rpc_url, cfg.commitment)
        settler = Settler(settings, payer, deployment, chain, on_progress=on_progress)

        def on_fact(fact: ChainFact) -> None:
            if is_withdrawal(fact) and fact.agent is not None:
                settler.withdrawal_requested(fact.agent)

        follower = Follower(settings, deployment, chain, on_fact=on_fact) if cfg.follow else None
        return cls(settler, follower, chain)

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.ensure_future(self.settler.run(stop))]
        if self.follower is not None:
            tasks.append(asyncio.ensure_future(self.follower.run(stop)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raise the first failure
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task
            await self.chain.close()
