"""A paywalled ASGI app that speaks the MachPay x402 contract, for testing agents offline.

Not the vendor gateway (``machpay-gateway`` is: a reverse proxy with Kafka,
spool, exposure caps and agent status). This is the smallest server that
answers like one, so agent code and the SDK can be tested without it:
402 with ``PAYMENT-REQUIRED`` and an HMAC time-bucket challenge, strict
verification of ``PAYMENT-SIGNATURE`` with :func:`machpay.protocol.verify_intent`
(domain, channel, expiry, request binding), price, replay, challenge
freshness, channel consistency with a corrective 402 carrying
``lastCumulative``, and ``PAYMENT-RESPONSE`` on success. Pure ASGI; serve it
with any ASGI server (uvicorn in the SDK's tests).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from machpay.protocol import (
    ProtocolError,
    Reason,
    SignedIntent,
    bytes_to_address,
    channel_address,
    context_hash,
    request_hash,
    verify_intent,
)
from machpay.x402 import (
    PAYMENT_REQUIRED_ERROR,
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    PaymentExtra,
    PaymentRequired,
    PaymentRequirements,
    PaymentResponse,
    PaymentSignature,
    Resource,
    malformed_header_body,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHALLENGE_BUCKET_SECONDS = 30


@dataclass(frozen=True, slots=True)
class PaidRoute:
    service: str
    price: int
    description: str = ""


@dataclass(slots=True)
class ChannelView:
    nonce: int
    cumulative: int


@dataclass(slots=True)
class PaywalledApp:
    """ASGI app: ``routes`` maps a path to its price; anything else is served free.

    A paid call that passes every check is answered 200 with a JSON body
    echoing what was paid for. ``accepted`` lists the signed intents served,
    in order; ``refusals`` the reasons of every refused paid retry.
    """

    vendor: bytes
    program_id: bytes
    domain: bytes
    routes: dict[str, PaidRoute]
    network: str = "solana:localnet"
    max_timeout_seconds: int = 60
    secret: bytes = field(default_factory=lambda: os.urandom(32))
    clock: Callable[[], float] = time.time
    channels: dict[bytes, ChannelView] = field(default_factory=dict)
    seen: set[bytes] = field(default_factory=set)
    accepted: list[SignedIntent] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    stale_next: int = 0
    """Test knob: refuse the next N otherwise valid payments with ``stale_challenge``."""
    offered_domain: bytes | None = None
    """Test knob: advertise this domain while checking ``domain`` (a misconfigured gateway)."""

    # -- challenges ---------------------------------------------------------------

    def challenge(self, path: bytes, bucket: int | None = None) -> bytes:
        if bucket is None:
            bucket = int(self.clock()) // CHALLENGE_BUCKET_SECONDS
        tag = hmac.new(self.secret, bucket.to_bytes(8, "little") + path, hashlib.sha256)
        return bucket.to_bytes(8, "little") + tag.digest()[:16]

    def challenge_is_fresh(self, challenge: bytes, path: bytes) -> bool:
        if len(challenge) != 24:
            return False
        bucket = int.from_bytes(challenge[:8], "little")
        now = int(self.clock()) // CHALLENGE_BUCKET_SECONDS
        return bucket in {now, now - 1} and hmac.compare_digest(
            challenge, self.challenge(path, bucket)
        )

    def offer(
        self,
        route: PaidRoute,
        path: bytes,
        last_cumulative: int | None = None,
        reason: str | None = None,
    ) -> PaymentRequirements:
        return PaymentRequirements(
            network=self.network,
            amount=route.price,
            pay_to=self.vendor,
            max_timeout_seconds=self.max_timeout_seconds,
            extra=PaymentExtra(
                program_id=self.program_id,
                domain=self.offered_domain or self.domain,
                service=route.service,
                challenge=self.challenge(path),
                last_cumulative=last_cumulative,
                reason=reason,
            ),
        )

    # -- ASGI -------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, headers, content = self.handle(scope, body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def handle(self, scope: Scope, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.split(b"?", 1)[0]
        query: bytes = scope.get("query_string", b"")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "localhost")
        url = f"http://{host}{path.decode()}" + (f"?{query.decode()}" if query else "")
        json_type = (b"content-type", b"application/json")
        route = self.routes.get(scope["path"])
        if route is None:
            return 200, [json_type], orjson.dumps({"free": True, "path": scope["path"]})
        resource = Resource(url=url, description=route.description, mime_type="application/json")

        def refuse(
            error: str, detail: str | None = None, last: int | None = None
        ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            if error != PAYMENT_REQUIRED_ERROR:
                self.refusals.append(error)
            required = PaymentRequired(
                error=error,
                resource=resource,
                accepts=(self.offer(route, path, last, detail),),
            )
            header = (PAYMENT_REQUIRED_HEADER.encode(), required.encode().encode())
            return 402, [json_type, header], required.body()

        header = headers.get(PAYMENT_SIGNATURE_HEADER.lower())
        if header is None:
            return refuse(PAYMENT_REQUIRED_ERROR)
        try:
            payment = PaymentSignature.decode(header)
        except ProtocolError as exc:
            return 400, [json_type], malformed_header_body(exc)
        payload = payment.payload
        challenge = payment.accepted.extra.challenge
        if not self.challenge_is_fresh(challenge, path) or self.stale_next > 0:
            self.stale_next = max(0, self.stale_next - 1)
            return refuse(Reason.STALE_CHALLENGE.value, "challenge is unknown or too old")
        channel = channel_address(
            program_id=self.program_id, agent=payload.agent, vendor=self.vendor
        )
        context = context_hash(
            route.service, request_hash(scope["method"], path, query, body), challenge
        )
        try:
            signed = verify_intent(
                payload.message,
                payload.signature,
                payload.agent,
                domain=self.domain,
                now=int(self.clock()),
                channel=channel,
                context=context,
            )
        except ProtocolError as exc:
            return refuse(exc.reason.value, exc.message)
        if signed.amount != route.price:
            return refuse(Reason.PRICE_MISMATCH.value, f"price is {route.price}")
        if signed.id in self.seen:
            return refuse(Reason.REPLAYED.value, "intent already served")
        state = self.channels.get(channel)
        # A later nonce must account for everything before it; a gap (an intent
        # this gateway never saw, e.g. one it refused) is allowed, as on-chain.
        if state is not None and (
            signed.nonce <= state.nonce or signed.cumulative < state.cumulative + signed.amount
        ):
            return refuse(
                Reason.CUMULATIVE_OUT_OF_STEP.value,
                f"last cumulative is {state.cumulative}",
                state.cumulative,
            )
        # Checks and claim happen without an await in between: atomic on the loop.
        self.seen.add(signed.id)
        self.channels[channel] = ChannelView(signed.nonce, signed.cumulative)
        self.accepted.append(signed)
        receipt = PaymentResponse.for_intent(signed, self.network)
        content = orjson.dumps(
            {
                "service": route.service,
                "paid": signed.amount,
                "agent": bytes_to_address(signed.agent),
                "method": scope["method"],
                "body": body.decode("utf-8", "replace"),
            }
        )
        return (
            200,
            [json_type, (PAYMENT_RESPONSE_HEADER.encode(), receipt.encode().encode())],
            content,
        )
