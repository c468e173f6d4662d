"""Turning a 402 into a signed payment: choose the offer, check policy, allocate, sign.

Transport-agnostic: :mod:`machpay.sdk.auth` drives it from httpx. Headers are
parsed and printed by :mod:`machpay.x402`, the codec the gateway uses.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

import orjson

from machpay.protocol import (
    NATIVE_SOL,
    Intent,
    Keypair,
    ProtocolError,
    SignedIntent,
    bytes_to_address,
    context_hash,
    request_hash,
    sign_intent,
)
from machpay.sdk.errors import PaymentUnsupported
from machpay.sdk.ledger import AgentLedger, Allocation, ReceiptRecord
from machpay.sdk.policy import SpendPolicy
from machpay.x402 import (
    PAYMENT_REQUIRED_HEADER,
    SCHEME,
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    PaymentResponse,
    PaymentSignature,
    Resource,
)


@dataclass(frozen=True, slots=True)
class Deployment:
    """Pins payments to one deployment; ``None`` fields accept what the gateway says."""

    network: str | None = None
    program_id: bytes | None = None
    domain: bytes | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the agent keeps for a paid call: the gateway's receipt and what it paid for."""

    intent_id: bytes
    amount: int
    cumulative: int
    nonce: int
    network: str
    payer: str
    vendor: str
    service: str
    method: str
    url: str
    status: int

    @property
    def intent_id_hex(self) -> str:
        return self.intent_id.hex()

    def to_json(self) -> dict[str, Any]:
        return {
            "intentId": self.intent_id.hex(),
            "amount": self.amount,
            "cumulative": self.cumulative,
            "nonce": self.nonce,
            "network": self.network,
            "payer": self.payer,
            "vendor": self.vendor,
            "service": self.service,
            "method": self.method,
            "url": self.url,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """The parts of an HTTP request a payment is bound to, as they travel."""

    method: str
    url: str
    path: bytes
    query: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class PreparedPayment:
    """A signed intent ready to send, with the offer it pays and its allocation."""

    offer: PaymentRequirements
    signed: SignedIntent
    allocation: Allocation
    header: str

    @property
    def vendor(self) -> str:
        return bytes_to_address(self.offer.pay_to)


def parse_payment_required(header: str) -> PaymentRequired:
    """Decode ``PAYMENT-REQUIRED`` with the shared codec.

    A 402 may offer other x402 schemes beside ours, with extras the codec
    (rightly) does not accept as MachPay entries. Only if the codec refuses the
    whole document are those entries dropped, and the codec then validates the
    ``machpay`` entries alone; nothing here reads a field itself.
    """
    try:
        return PaymentRequired.decode(header)
    except ProtocolError as first:
        error = first
    try:
        document = orjson.loads(base64.b64decode(header.encode("ascii"), validate=True))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise PaymentUnsupported(f"{PAYMENT_REQUIRED_HEADER} is malformed: {error}") from None
    entries = document.get("accepts") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise PaymentUnsupported(f"{PAYMENT_REQUIRED_HEADER} is malformed: {error}")
    ours = [e for e in entries if isinstance(e, dict) and e.get("scheme") == SCHEME]
    if not ours:
        schemes = [e.get("scheme") for e in entries if isinstance(e, dict)]
        raise PaymentUnsupported(f"no '{SCHEME}' payment offered (schemes: {schemes})")
    try:
        return PaymentRequired.from_json({**document, "accepts": ours})
    except ProtocolError as exc:
        raise PaymentUnsupported(f"{PAYMENT_REQUIRED_HEADER} is malformed: {exc}") from None


class Payer:
    """Signs payments for one agent key under its owner's policy and its durable ledger."""

    def __init__(
        self,
        keypair: Keypair,
        ledger: AgentLedger,
        policy: SpendPolicy,
        *,
        deployment: Deployment | None = None,
        assets: frozenset[bytes] = frozenset({NATIVE_SOL}),
    ) -> None:
        self.keypair = keypair
        self.ledger = ledger
        self.policy = policy
        self.deployment = deployment or Deployment()
        self.assets = assets

    @property
    def address(self) -> str:
        return self.keypair.address

    def with_policy(self, policy: SpendPolicy) -> Payer:
        """The same key, ledger and pins under another policy (budgets stay shared)."""
        return Payer(
            self.keypair, self.ledger, policy, deployment=self.deployment, assets=self.assets
        )

    def choose(self, required: PaymentRequired) -> PaymentRequirements:
        """The first ``machpay`` entry this agent may pay (deployment and asset)."""
        reasons = []
        for entry in required.accepts:
            if entry.scheme != SCHEME:
                continue
            pin = self.deployment
            if pin.network is not None and entry.network != pin.network:
                reasons.append(f"network {entry.network} is not {pin.network}")
            elif pin.program_id is not None and entry.extra.program_id != pin.program_id:
                reasons.append("program id differs from the pinned deployment")
            elif pin.domain is not None and entry.extra.domain != pin.domain:
                reasons.append(f"domain {entry.extra.domain.hex()} differs from the pinned one")
            elif entry.asset not in self.assets:
                reasons.append(f"asset {bytes_to_address(entry.asset)} is not accepted")
            elif entry.amount < 1:
                reasons.append("amount is zero")
            else:
                return entry
        raise PaymentUnsupported("no payable offer: " + ("; ".join(reasons) or "none offered"))

    def prepare(
        self,
        offer: PaymentRequirements,
        request: RequestFacts,
        resource: Resource,
        *,
        now: float | None = None,
    ) -> PreparedPayment:
        """Check the policy, allocate durably, sign. Raises ``PolicyViolation`` unsigned."""
        vendor = bytes_to_address(offer.pay_to)
        extra = offer.extra
        channel = offer.channel(self.keypair.public)
        allocation = self.ledger.allocate(
            domain=extra.domain,
            channel=channel,
            vendor=vendor,
            service=extra.service,
            amount=offer.amount,
            policy=self.policy,
        )
        # The allocation is on disk: from here on, whatever happens, this nonce
        # and cumulative are never handed out again.
        clock = time.time() if now is None else now
        lifetime = min(offer.max_timeout_seconds, self.policy.max_timeout_seconds)
        digest = request_hash(request.method, request.path, request.query, request.body)
        intent = Intent(
            domain=extra.domain,
            channel=channel,
            nonce=allocation.nonce,
            cumulative=allocation.cumulative,
            amount=offer.amount,
            expires_at=int(clock) + lifetime,
            context=context_hash(extra.service, digest, extra.challenge),
        )
        signed = sign_intent(intent, self.keypair)
        header = PaymentSignature(
            resource=resource, accepted=offer, payload=PaymentPayload.from_signed(signed)
        ).encode()
        return PreparedPayment(offer, signed, allocation, header)

    def resync(self, offer: PaymentRequirements, last_cumulative: int) -> int:
        """Raise the channel's cumulative to the gateway's hint (never lower it)."""
        return self.ledger.resync(
            domain=offer.extra.domain,
            channel=offer.channel(self.keypair.public),
            vendor=bytes_to_address(offer.pay_to),
            hint=last_cumulative,
        )

    def receipt(
        self,
        payment: PreparedPayment,
        response: PaymentResponse | None,
        request: RequestFacts,
        status: int,
    ) -> Receipt:
        """The receipt to keep: the gateway's when it sent one, else our own intent's."""
        signed = payment.signed
        return Receipt(
            intent_id=response.intent_id if response else signed.id,
            amount=signed.amount,
            cumulative=signed.cumulative,
            nonce=signed.nonce,
            network=response.network if response else payment.offer.network,
            payer=self.address,
            vendor=payment.vendor,
            service=payment.offer.extra.service,
            method=request.method,
            url=request.url,
            status=status,
        )

    def keep(self, receipt: Receipt) -> None:
        """Store a receipt for ``history``."""
        self.ledger.record_receipt(
            ReceiptRecord(
                intent_id=receipt.intent_id,
                at_ms=int(time.time() * 1000),
                method=receipt.method,
                url=receipt.url,
                vendor=receipt.vendor,
                service=receipt.service,
                network=receipt.network,
                amount=receipt.amount,
                cumulative=receipt.cumulative,
                nonce=receipt.nonce,
                status=receipt.status,
            )
        )
