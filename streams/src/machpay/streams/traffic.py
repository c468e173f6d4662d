"""Synthetic signed traffic for tests and benchmarks (honest agents, injected fraud).

Agents sign real intents with their own keys; nothing here touches Kafka.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from machpay.protocol import Intent, Keypair, SignedIntent, channel_address, sign_intent
from machpay.wire.intents import AcceptedIntent

PROGRAM_ID = hashlib.sha256(b"machpay-streams-test-program").digest()
DOMAIN = bytes.fromhex("6c6f63616c6e6574")
CONTEXT = bytes(16)
EXPIRES_AT = 2**40


def keypair(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"machpay-streams-test:" + name.encode()).digest())


def vendor_key(name: str) -> bytes:
    return hashlib.sha256(b"machpay-streams-vendor:" + name.encode()).digest()


@dataclass
class Agent:
    """An honest agent: one nonce counter, one cumulative per vendor."""

    key: Keypair
    next_nonce: int = 1
    cumulative: dict[bytes, int] = field(default_factory=dict)

    @property
    def public(self) -> bytes:
        return self.key.public

    def channel(self, vendor: bytes) -> bytes:
        return channel_address(program_id=PROGRAM_ID, agent=self.key.public, vendor=vendor)

    def sign(
        self,
        vendor: bytes,
        *,
        nonce: int,
        cumulative: int,
        amount: int,
        context: bytes = CONTEXT,
    ) -> AcceptedIntent:
        intent = Intent(
            domain=DOMAIN,
            channel=self.channel(vendor),
            nonce=nonce,
            cumulative=cumulative,
            amount=amount,
            expires_at=EXPIRES_AT,
            context=context,
        )
        return accepted(sign_intent(intent, self.key), vendor)

    def pay(self, vendor: bytes, amount: int) -> AcceptedIntent:
        """The next honest intent."""
        cumulative = self.cumulative.get(vendor, 0) + amount
        self.cumulative[vendor] = cumulative
        nonce = self.next_nonce
        self.next_nonce += 1
        return self.sign(vendor, nonce=nonce, cumulative=cumulative, amount=amount)


def accepted(signed: SignedIntent, vendor: bytes) -> AcceptedIntent:
    return AcceptedIntent(
        signed=signed,
        vendor=vendor,
        service="svc",
        route="GET /x",
        accepted_at_ms=1_700_000_000_000,
    )
