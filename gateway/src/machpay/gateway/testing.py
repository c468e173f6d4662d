"""Helpers for tests and benchmarks of the gateway: a minimal paying agent,
an echo upstream, and uvicorn servers on 127.0.0.1 in a thread.

The agent here signs with machpay.protocol directly, exactly as the x402
contract says; the real SDK lives in ``sdk/``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from machpay.protocol import (
    Intent,
    Keypair,
    SignedIntent,
    context_hash,
    request_hash,
    sign_intent,
)
from machpay.x402 import (
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    PaymentSignature,
    Resource,
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class PayingAgent:
    """Signs intents for 402 answers, keeping nonce and per-channel cumulative."""

    keypair: Keypair = field(default_factory=Keypair.generate)
    nonce: int = 0
    cumulative: dict[bytes, int] = field(default_factory=dict)

    @property
    def public(self) -> bytes:
        return self.keypair.public

    def sign(
        self,
        accepts: PaymentRequirements,
        *,
        method: str,
        url: str,
        body: bytes = b"",
        expires_in: int = 60,
        now: float | None = None,
        **overrides: Any,
    ) -> SignedIntent:
        """Sign the intent the contract prescribes for ``accepts`` and this request;
        ``overrides`` replace intent fields (for tests that need a bad one)."""
        parts = urlsplit(url)
        channel = accepts.channel(self.public)
        self.nonce += 1
        cumulative = self.cumulative.get(channel, 0) + accepts.amount
        self.cumulative[channel] = cumulative
        now = time.time() if now is None else now
        fields: dict[str, Any] = {
            "domain": accepts.extra.domain,
            "channel": channel,
            "nonce": self.nonce,
            "cumulative": cumulative,
            "amount": accepts.amount,
            "expires_at": int(now) + min(expires_in, accepts.max_timeout_seconds),
            "context": context_hash(
                accepts.extra.service,
                request_hash(method, parts.path or "/", parts.query, body),
                accepts.extra.challenge,
            ),
        }
        fields.update(overrides)
        return sign_intent(Intent(**fields), self.keypair)

    def header(self, required: PaymentRequired, signed: SignedIntent) -> str:
        return PaymentSignature(
            resource=Resource(required.resource.url),
            accepted=required.accepts[0],
            payload=PaymentPayload.from_signed(signed),
        ).encode()

    def pay(
        self, required: PaymentRequired, *, method: str, url: str, body: bytes = b"", **kw: Any
    ) -> tuple[str, SignedIntent]:
        signed = self.sign(required.accepts[0], method=method, url=url, body=body, **kw)
        return self.header(required, signed), signed


async def echo_upstream(scope: Scope, receive: Receive, send: Send) -> None:
    """An upstream API: echoes method, path, query, body size and a few headers.

    ``/slow?s=SECONDS`` sleeps first; ``/stream`` answers in chunks.
    """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
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
    path: str = scope["path"]
    query = scope["query_string"].decode()
    if path.endswith("/slow"):
        await asyncio.sleep(float(query.partition("=")[2] or "1"))
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    if path.endswith("/stream"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        for i in range(5):
            await send({"type": "http.response.body", "body": b"chunk%d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    document = {
        "method": scope["method"],
        "path": path,
        "query": query,
        "body_bytes": len(body),
        "agent": headers.get("x-machpay-agent"),
        "intent": headers.get("x-machpay-intent"),
        "has_payment_header": "payment-signature" in headers,
        "connection_token": headers.get("x-hop"),
    }
    out = orjson.dumps(document)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(out)).encode()),
                (b"x-upstream", b"echo"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": out, "more_body": False})


PAID_ROUTES: list[dict[str, Any]] = [
    {
        "path": "/v1/search",
        "methods": ["GET", "POST"],
        "service": "search",
        "price": 1_000,
        "description": "Web search",
        "mime_type": "application/json",
    },
    {"path": "/v1/items/{id}", "methods": ["GET"], "service": "items", "price": 250},
    {"path": "/v1/slow", "methods": ["GET"], "service": "slow", "price": 10},
    {"path": "/v1/stream", "methods": ["GET"], "service": "stream", "price": 10},
]
FREE_ROUTES: list[dict[str, Any]] = [
    {"path": "/docs", "methods": ["GET"]},
    {"path": "/v1/free/{rest:path}", "methods": ["GET", "POST"]},
]


def gateway_settings(
    *,
    spool_dir: Any,
    upstream: str,
    vendor: Keypair,
    base: Any = None,
    secret: bytes | None = None,
    **overrides: Any,
) -> Any:
    """Settings for a test gateway in front of ``upstream`` (on top of ``base``'s
    Kafka settings when given); ``overrides`` replace gateway fields."""
    import os

    from machpay.config import Settings, load_settings

    gateway: dict[str, Any] = {
        "vendor_address": vendor.address,
        "challenge_secret": (secret or os.urandom(32)).hex(),
        "spool_dir": str(spool_dir),
        "routes": [{**r, "upstream": upstream} for r in PAID_ROUTES],
        "free_routes": [{**r, "upstream": upstream} for r in FREE_ROUTES],
        "upstream_timeout_seconds": 2.0,
        "max_body_bytes": 64 * 1024,
        "max_header_bytes": 8 * 1024,
        "producer_linger_ms": 2,
    }
    gateway.update(overrides)
    if isinstance(base, Settings):
        data = base.model_dump()
        data["gateway"] = gateway
        return Settings.model_validate(data)
    return load_settings(
        environ={},
        overrides={"kafka": {"bootstrap_servers": "127.0.0.1:1"}, "gateway": gateway},
    )


def accepted_ids(batches: list[dict[str, Any]]) -> list[bytes]:
    """Intent ids in decoded IntentBatch values, in order (duplicates kept)."""
    return [bytes(record["id"]) for batch in batches for record in batch["intents"]]


async def wait_until(predicate: Callable[[], bool], seconds: float, step: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``seconds`` pass; returns the last answer."""
    for _ in range(max(1, int(seconds / step))):
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()
