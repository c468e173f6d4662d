"""The agent as its developer sees it: a key, a ledger, a policy, and paying HTTP clients.

::

    agent = Agent.load(policy=SpendPolicy(max_per_call=5_000, window_limit=1_000_000))
    with agent.client() as http:
        response = http.get("https://vendor.example/v1/forecast?city=Oslo")
    print(response.json(), receipt(response))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from machpay.protocol import Keypair
from machpay.sdk.auth import MachPayAuth
from machpay.sdk.discovery import ServiceOffer
from machpay.sdk.identity import (
    POLICY_PATH_ENV,
    AgentWallet,
    default_policy_path,
    default_state_dir,
)
from machpay.sdk.ledger import AgentLedger, ReceiptRecord
from machpay.sdk.payer import Deployment, Payer
from machpay.sdk.policy import UNLIMITED, SpendPolicy, load_policy
from machpay.sdk.telemetry import TelemetrySink


class Agent:
    """One agent key with its durable ledger and its owner's spend policy."""

    def __init__(
        self,
        wallet: AgentWallet | Keypair,
        *,
        policy: SpendPolicy = UNLIMITED,
        state_dir: str | os.PathLike[str] | None = None,
        deployment: Deployment | None = None,
        telemetry: TelemetrySink | None = None,
    ) -> None:
        self.wallet = wallet if isinstance(wallet, AgentWallet) else AgentWallet(wallet)
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.ledger = AgentLedger.for_agent(self.wallet.address, self.state_dir)
        self.policy = policy
        self.payer = Payer(self.wallet.keypair, self.ledger, policy, deployment=deployment)
        self.telemetry = telemetry

    @classmethod
    def load(
        cls,
        key_path: str | os.PathLike[str] | None = None,
        *,
        create: bool = False,
        **options: Any,
    ) -> Agent:
        """The agent whose key is at ``key_path`` (default ``~/.config/machpay/agent.json``).

        Without a ``policy`` argument, the owner's policy file is used when it
        exists (``MACHPAY_AGENT_POLICY`` or ``~/.config/machpay/policy.toml``):
        an owner can limit an agent without touching its code.
        """
        wallet = AgentWallet.load_or_create(key_path) if create else AgentWallet.load(key_path)
        if "policy" not in options:
            path = default_policy_path()
            if path.exists() or os.environ.get(POLICY_PATH_ENV):
                options["policy"] = load_policy(path)
        return cls(wallet, **options)

    @property
    def address(self) -> str:
        return self.wallet.address

    def auth(self) -> MachPayAuth:
        """An ``httpx.Auth`` for any httpx client, sync or async."""
        return MachPayAuth(self.payer, telemetry=self.telemetry)

    def client(self, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` that pays for 402 answers (keyword arguments go to httpx)."""
        return httpx.Client(auth=self.auth(), **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` that pays for 402 answers."""
        return httpx.AsyncClient(auth=self.auth(), **kwargs)

    def client_for(self, offer: ServiceOffer, **kwargs: Any) -> httpx.Client:
        """A client for one listed service (see :mod:`machpay.sdk.discovery`).

        ``base_url`` is the offer's gateway, and payments through it are capped
        at the listed price, to the listed vendor and service, on top of the
        agent's policy: a gateway asking more than it advertises is refused
        before anything is signed.
        """
        policy = self.policy.narrowed(
            max_per_call=offer.price, vendors={offer.vendor}, services={offer.service}
        )
        auth = MachPayAuth(self.payer.with_policy(policy), telemetry=self.telemetry)
        kwargs.setdefault("base_url", offer.gateway_url)
        return httpx.Client(auth=auth, **kwargs)

    def history(self, limit: int = 50) -> list[ReceiptRecord]:
        """The most recent paid calls, newest first."""
        return self.ledger.history(limit)

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Agent(address={self.address}, state_dir={self.state_dir})"
