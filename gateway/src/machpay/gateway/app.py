"""The gateway as a raw ASGI application: verify the payment, proxy, emit.

A paid call goes through, in order (first failure answers; docs in README):

1. header size (431), body size (413)
2. ``PAYMENT-SIGNATURE`` parses (400 ``malformed_header`` naming the JSON path)
3. the accepted entry is this route's: scheme, network, payTo, asset, amount
   (``price_mismatch``)
4. the intent decodes and its signature verifies strictly; its amount is the
   price
5. domain (``wrong_domain``), channel = PDA(agent, this vendor, SOL)
   (``wrong_channel``), expiry (``expired``)
6. the challenge is this vendor's, for this route and method, and fresh
   (``stale_challenge``)
7. context = H(service, request, challenge) (``request_mismatch``)
8. the intent id was not served yet (``replayed``)
9. the channel follows on from the last (nonce, cumulative) this gateway
   accepted: higher nonce, cumulative >= last + amount
   (``cumulative_out_of_step``, with ``lastCumulative``)
10. agent status and this gateway's exposure cap (``agent_banned``,
    ``exposure_cap``, ``agent_unknown``)
11. room in the spool (``spool_full``)

Steps 8-11 and the claim that follows run without awaiting, so they are
atomic on the event loop. The accepted intent is then appended to the spool
(its group commit runs while the upstream works) and queued for Kafka; the
response is sent once both the upstream answered and the commit is done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import httpx
import orjson

from machpay.config import ConfigError, Settings
from machpay.gateway.challenge import ChallengeIssuer
from machpay.gateway.kafka import IntentEmitter, StatusFeed
from machpay.gateway.ledger import ChannelLedger, ChannelState, ExposureBook, IntentClaims
from machpay.gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from machpay.gateway.routes import Route, RouteTable
from machpay.gateway.spool import Spool
from machpay.protocol import (
    NATIVE_SOL,
    ProtocolError,
    Reason,
    SignedIntent,
    address_to_bytes,
    bytes_to_address,
    channel_address,
    check_binding,
    context_hash,
    load_keypair,
    request_hash,
)
from machpay.wire import WireCodec
from machpay.wire.intents import AcceptedIntent
from machpay.wire.rejected import dead_letter
from machpay.x402 import (
    PAYMENT_REQUIRED_ERROR,
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    SCHEME,
    PaymentExtra,
    PaymentRequired,
    PaymentRequirements,
    PaymentResponse,
    PaymentSignature,
    Resource,
    malformed_header_body,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: RFC 9110 §7.6.1 connection-specific fields, never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_SIGNATURE_HEADER = b"payment-signature"
_JSON = (b"content-type", b"application/json")
SOURCE = "gateway"
CHANNEL_CACHE_SIZE = 1 << 14


class ClientDisconnectedError(Exception):
    """The client went away while its body was being read."""


@dataclass(slots=True)
class Refusal:
    """Why a paid call is not served, and what the rejected record carries."""

    status: int
    reason: str
    field: str | None
    detail: str
    agent: bytes | None = None
    message: bytes | None = None
    signature: bytes | None = None
    raw: bytes | None = None
    last_cumulative: int | None = None


@dataclass(slots=True)
class Accepted:
    signed: SignedIntent
    previous: ChannelState | None
    label: str = field(default="")
    increment: int = 0


def _hop_by_hop(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The fixed hop-by-hop set plus any header the Connection field names."""
    extra = [
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    ]
    return HOP_BY_HOP.union(extra) if extra else HOP_BY_HOP


class Gateway:
    """One gateway process: configuration, ledgers, Kafka side and the ASGI entry."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        gw = settings.gateway
        self.settings = settings
        self.config = gw
        self.clock = clock
        self.routes = RouteTable.from_settings(gw.routes, gw.free_routes)
        self.payments = gw.payments_enabled
        self.network = settings.deployment.network
        self.domain = settings.deployment.domain
        self.program_id = address_to_bytes(settings.deployment.machpay_program_id)
        self.vendor = self._vendor_address()
        key = gw.challenge_key
        if self.payments and key is None:
            raise ConfigError(
                "setting gateway.challenge_secret is required when payments are enabled: set "
                "MACHPAY_GATEWAY__CHALLENGE_SECRET to at least 16 random bytes in hex"
            )
        self.challenges = ChallengeIssuer(
            key or bytes(16),
            bucket_seconds=gw.challenge_bucket_seconds,
            max_age_seconds=gw.challenge_max_age_seconds,
        )
        self.claims = IntentClaims()
        self.channels = ChannelLedger()
        self.exposure = ExposureBook(
            share=gw.exposure_share, unknown_allowance=gw.unknown_agent_allowance
        )
        self.metrics = GatewayMetrics()
        self.codec = WireCodec.from_settings(
            settings.schema_registry, topic_prefix=settings.kafka.topic_prefix
        )
        self.spool = Spool(
            gw.spool_dir,
            max_bytes=gw.spool_max_bytes,
            fsync=gw.spool_fsync,
            commit_interval_ms=gw.spool_commit_interval_ms,
            retain_seconds=gw.challenge_max_age_seconds + gw.max_timeout_seconds,
        )
        self.emitter = IntentEmitter(
            settings,
            self.codec,
            self.spool,
            producer_id=f"gateway-{os.uname().nodename}-{os.getpid()}",
            linger_ms=gw.producer_linger_ms,
        )
        self.status_feed = StatusFeed(settings, self.codec, self.exposure)
        self.metrics.bind(
            spool_bytes=lambda: self.spool.pending_bytes if self.started else 0,
            queue_depth=lambda: len(self.emitter.queue),
            rejected_dropped=lambda: self.emitter.rejected_dropped,
            kafka_connected=lambda: 1 if self.emitter.connected else 0,
            known_agents=lambda: len(self.exposure),
        )
        # The transport, not an AsyncClient: a proxy must not keep cookies from one
        # client's upstream response for the next, and needs no redirects or auth.
        self.upstream: httpx.AsyncBaseTransport | None = None
        self._timeout = httpx.Timeout(gw.upstream_timeout_seconds).as_dict()
        self.started = False
        self.recovered = 0
        # agent -> channel PDA with this vendor (a plain dict: cheaper than the
        # keyword-argument lru_cache of channel_address on every paid call).
        self._channel_of: dict[bytes, bytes] = {}

    def _vendor_address(self) -> bytes:
        gw = self.config
        if gw.vendor_keypair is not None:
            return load_keypair(gw.vendor_keypair).public
        if gw.vendor_address is not None:
            return address_to_bytes(gw.vendor_address)
        if self.payments:
            raise ConfigError(
                "setting gateway.vendor_keypair or gateway.vendor_address is required when "
                "payments are enabled (the payTo of every route)"
            )
        return bytes(32)

    # -- lifecycle ----------------------------------------------------------------

    async def startup(self) -> None:
        gw = self.config
        self.upstream = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(
                max_connections=gw.upstream_max_connections,
                max_keepalive_connections=gw.upstream_max_connections,
            ),
            retries=0,
        )
        if self.payments:
            now = self.clock()
            for intent, position, acked in self.spool.open():
                self._restore(intent, now)
                if not acked:
                    self.emitter.enqueue(intent, position)
                    self.recovered += 1
            if self.recovered:
                log.info("gateway: %d spooled intents to produce", self.recovered)
            self.emitter.start()
            self.status_feed.start()
        self.started = True

    def _restore(self, accepted: AcceptedIntent, now: float) -> None:
        signed = accepted.signed
        self.claims.claim(signed.id, self._forget_at(signed, now), now)
        state = self.channels.get(signed.channel)
        if state is None or signed.nonce > state.nonce:
            self.channels.advance(signed.channel, signed.nonce, signed.cumulative)
        self.exposure.record(signed.agent, signed.amount, accepted.accepted_at_ms)

    async def shutdown(self) -> None:
        if self.payments and self.started:
            await self.status_feed.stop()
            await self.emitter.stop()
            await self.spool.close()
        if self.upstream is not None:
            await self.upstream.aclose()
        self.started = False

    @property
    def ready(self) -> bool:
        """Serving, and (with payments) connected to Kafka with the status cache loaded."""
        if not self.started:
            return False
        return not self.payments or (self.emitter.connected and self.status_feed.caught_up)

    # -- ASGI -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            try:
                await self._http(scope, receive, send)
            except ClientDisconnectedError:
                return
            return
        if kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("gateway: startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if path in ("/metrics", "/healthz", "/readyz"):
            await self._own_endpoint(path, send)
            return
        route = self.routes.match(method, path)
        if route is None:
            status = 405 if self.routes.allows_path(path) else 404
            await _json(send, status, {"error": "no_route", "detail": f"{method} {path}"})
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        header_bytes = sum(len(k) + len(v) + 4 for k, v in headers)
        if header_bytes > self.config.max_header_bytes:
            self._refuse_record(
                route,
                Refusal(
                    431,
                    Reason.OVERSIZED_HEADER,
                    "headers",
                    f"{header_bytes} header bytes > {self.config.max_header_bytes}",
                ),
            )
            await _json(
                send,
                431,
                {
                    "error": Reason.OVERSIZED_HEADER,
                    "field": "headers",
                    "detail": f"request headers are {header_bytes} bytes, "
                    f"the limit is {self.config.max_header_bytes}",
                },
            )
            return
        if not route.paid or not self.payments:
            await self._proxy_streaming(scope, receive, send, route, headers)
            return
        payment = next((v for k, v in headers if k.lower() == _SIGNATURE_HEADER), None)
        if payment is None:
            self.metrics.unpaid.inc()
            await self._payment_required(
                scope,
                send,
                route,
                error=PAYMENT_REQUIRED_ERROR,
                last_cumulative=None,
                reason=None,
            )
            return
        body = await self._read_body(scope, receive, headers, send, route)
        if body is None:
            return
        started = time.perf_counter()
        decision = self._verify(scope, route, body, payment)
        self.metrics.verify_seconds.observe(time.perf_counter() - started)
        if isinstance(decision, Refusal):
            self.metrics.refused.labels(decision.reason).inc()
            self._refuse_record(route, decision)
            if decision.status == 400:
                error = ProtocolError(Reason.MALFORMED_HEADER, decision.field, decision.detail)
                await _raw(send, 400, [_JSON], malformed_header_body(error))
            else:
                await self._payment_required(
                    scope,
                    send,
                    route,
                    error=decision.reason,
                    last_cumulative=decision.last_cumulative,
                    reason=decision.detail,
                )
            return
        await self._serve_paid(scope, send, route, headers=headers, body=body, accepted=decision)

    # -- own endpoints ----------------------------------------------------------------

    async def _own_endpoint(self, path: str, send: Send) -> None:
        if path == "/metrics":
            body = self.metrics.render()
            await _raw(send, 200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], body)
        elif path == "/healthz":
            await _json(send, 200 if self.started else 503, {"ok": self.started})
        else:
            ready = self.ready
            await _json(
                send,
                200 if ready else 503,
                {
                    "ready": ready,
                    "payments": self.payments,
                    "kafka_connected": self.emitter.connected,
                    "agents_status_loaded": self.status_feed.caught_up,
                    "queued_intents": len(self.emitter.queue),
                    "spool_pending_bytes": self.spool.pending_bytes if self.started else 0,
                },
            )

    # -- 402 ------------------------------------------------------------------------

    def requirements(
        self,
        route: Route,
        method: str,
        now: float,
        last_cumulative: int | None = None,
        reason: str | None = None,
    ) -> PaymentRequirements:
        assert route.price is not None
        return PaymentRequirements(
            network=self.network,
            amount=route.price,
            pay_to=self.vendor,
            max_timeout_seconds=self.config.max_timeout_seconds,
            extra=PaymentExtra(
                program_id=self.program_id,
                domain=self.domain,
                service=route.service,
                challenge=self.challenges.issue(route.route_id, method, now),
                last_cumulative=last_cumulative,
                reason=reason,
            ),
        )

    async def _payment_required(
        self,
        scope: Scope,
        send: Send,
        route: Route,
        *,
        error: str,
        last_cumulative: int | None,
        reason: str | None,
    ) -> None:
        required = PaymentRequired(
            error=error,
            resource=Resource(_request_url(scope), route.description, route.mime_type),
            accepts=(
                self.requirements(route, scope["method"], self.clock(), last_cumulative, reason),
            ),
        )
        body = required.body()
        await _raw(
            send,
            402,
            [_JSON, (PAYMENT_REQUIRED_HEADER.lower().encode(), required.encode().encode())],
            body,
        )

    # -- verification ---------------------------------------------------------------------

    def _forget_at(self, signed: SignedIntent, now: float) -> float:
        # After this, the intent is refused as expired or its challenge as stale anyway.
        lifetime = self.config.challenge_max_age_seconds + self.config.challenge_bucket_seconds
        return min(float(signed.intent.expires_at), now + lifetime) + 1

    def _verify(self, scope: Scope, route: Route, body: bytes, header: bytes) -> Refusal | Accepted:
        method: str = scope["method"]
        now = self.clock()
        try:
            payment = PaymentSignature.decode(header)
        except ProtocolError as exc:
            return Refusal(400, exc.reason.value, exc.field, exc.message, raw=header)
        accepted = payment.accepted
        payload = payment.payload
        agent, message, signature = payload.agent, payload.message, payload.signature

        def refuse(
            reason: Reason, where: str | None, detail: str, last: int | None = None
        ) -> Refusal:
            return Refusal(
                402, reason.value, where, detail, agent, message, signature, last_cumulative=last
            )

        mismatch = self._requirements_mismatch(route, accepted)
        if mismatch is not None:
            return refuse(Reason.PRICE_MISMATCH, *mismatch)
        try:
            signed = payload.signed_intent()
            signed.verify()
        except ProtocolError as exc:
            return refuse(exc.reason, exc.field, exc.message)
        intent = signed.intent
        if intent.amount != route.price:
            return refuse(
                Reason.PRICE_MISMATCH,
                "amount",
                f"intent amount {intent.amount} is not this route's price {route.price}",
            )
        channel = self._channel_of.get(agent)
        if channel is None:
            if len(self._channel_of) >= CHANNEL_CACHE_SIZE:
                self._channel_of.clear()
            channel = channel_address(program_id=self.program_id, agent=agent, vendor=self.vendor)
            self._channel_of[agent] = channel
        try:
            check_binding(intent, domain=self.domain, now=int(now), channel=channel)
        except ProtocolError as exc:
            return refuse(exc.reason, exc.field, exc.message)
        challenge = accepted.extra.challenge
        stale = self.challenges.check(challenge, route.route_id, method, now)
        if stale is not None:
            return refuse(Reason.STALE_CHALLENGE, "accepted.extra.challenge", stale)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        digest = request_hash(method, raw_path, scope["query_string"], body)
        if intent.context != context_hash(route.service, digest, challenge):
            return refuse(
                Reason.REQUEST_MISMATCH,
                "context",
                "the intent's context does not match this service, request and challenge",
            )
        self.claims.evict(now)
        if signed.id in self.claims:
            return refuse(Reason.REPLAYED, "message", "this intent was already served")
        out_of_step = self.channels.check(
            intent.channel, intent.nonce, intent.cumulative, intent.amount
        )
        if out_of_step is not None:
            state = self.channels.get(intent.channel)
            return refuse(
                Reason.CUMULATIVE_OUT_OF_STEP,
                "cumulative",
                out_of_step,
                state.cumulative if state else None,
            )
        # A gap on a known channel is claimable too: it counts like the amount.
        increment = self.channels.increment(intent.channel, intent.cumulative, intent.amount)
        refused = self.exposure.check(agent, increment)
        if refused is not None:
            return refuse(Reason(refused[0]), "agent", refused[1])
        if not self.spool.has_room():
            return refuse(
                Reason.SPOOL_FULL,
                None,
                "Kafka is unreachable and this gateway's spool is full; retry later",
            )
        # Claim: still no await since the checks above.
        self.claims.claim(signed.id, self._forget_at(signed, now), now)
        previous = self.channels.advance(intent.channel, intent.nonce, intent.cumulative)
        self.exposure.record(agent, increment)
        return Accepted(signed, previous, route.label(method), increment)

    def _requirements_mismatch(
        self, route: Route, accepted: PaymentRequirements
    ) -> tuple[str, str] | None:
        if accepted.scheme != SCHEME:
            return "accepted.scheme", f"scheme {accepted.scheme!r} is not {SCHEME!r}"
        if accepted.network != self.network:
            return "accepted.network", f"network {accepted.network!r} is not {self.network!r}"
        if accepted.pay_to != self.vendor:
            return "accepted.payTo", "payTo is not this vendor"
        if accepted.asset != NATIVE_SOL:
            return "accepted.asset", "this gateway is paid in native SOL"
        if accepted.amount != route.price:
            return "accepted.amount", f"amount {accepted.amount} is not the price {route.price}"
        return None

    def _refuse_record(self, route: Route, refusal: Refusal) -> None:
        if not self.payments or not self.started:
            return
        self.emitter.reject(
            dead_letter(
                reason=refusal.reason,
                detail=f"{route.pattern}: {refusal.detail}",
                field=refusal.field,
                source=SOURCE,
                at_ms=int(self.clock() * 1000),
                agent=refusal.agent,
                message=refusal.message,
                signature=refusal.signature,
                raw=refusal.raw,
            )
        )

    # -- serving ---------------------------------------------------------------------------

    async def _read_body(
        self,
        scope: Scope,
        receive: Receive,
        headers: list[tuple[bytes, bytes]],
        send: Send,
        route: Route,
    ) -> bytes | None:
        limit = self.config.max_body_bytes
        declared = next((v for k, v in headers if k.lower() == b"content-length"), None)
        too_big = declared is not None and declared.isdigit() and int(declared) > limit
        chunks: list[bytes] = []
        size = 0
        while not too_big:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnectedError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                too_big = True
                break
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        self._refuse_record(
            route, Refusal(413, Reason.OVERSIZED_BODY, "body", f"body above {limit} bytes")
        )
        await _json(
            send,
            413,
            {
                "error": Reason.OVERSIZED_BODY,
                "field": "body",
                "detail": f"request body is larger than {limit} bytes",
            },
        )
        return None

    def _upstream_request(
        self,
        scope: Scope,
        route: Route,
        headers: list[tuple[bytes, bytes]],
        content: Any,
        *,
        keep_length: bool,
        extra: tuple[tuple[bytes, bytes], ...] = (),
    ) -> httpx.Request:
        """The upstream request: hop-by-hop fields, the payment header and any
        client-sent ``x-machpay-*`` field dropped (the upstream trusts ours)."""
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        url = route.upstream + raw_path.decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        drop = _hop_by_hop(headers)
        forward = [
            (k, v)
            for k, v in headers
            if (name := k.lower()) not in drop
            and name not in (b"host", _SIGNATURE_HEADER)
            and not name.startswith(b"x-machpay-")
            and (keep_length or name != b"content-length")
        ]
        forward.extend(extra)
        client = scope.get("client")
        host = next((v for k, v in headers if k.lower() == b"host"), b"")
        if client:
            forward.append((b"x-forwarded-for", client[0].encode()))
        forward.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        if host:
            forward.append((b"x-forwarded-host", host))
        return httpx.Request(
            scope["method"],
            url,
            headers=forward,
            content=content,
            extensions={"timeout": self._timeout},
        )

    async def _send_upstream(self, request: httpx.Request, send: Send) -> httpx.Response | None:
        assert self.upstream is not None
        try:
            return await self.upstream.handle_async_request(request)
        except httpx.TimeoutException as exc:
            self.metrics.proxied_for(504).inc()
            await _json(send, 504, {"error": "upstream_timeout", "detail": str(exc) or "timeout"})
        except httpx.HTTPError as exc:
            self.metrics.proxied_for(502).inc()
            await _json(send, 502, {"error": "upstream_unavailable", "detail": str(exc)})
        return None

    async def _relay(
        self, response: httpx.Response, send: Send, extra: list[tuple[bytes, bytes]]
    ) -> None:
        self.metrics.proxied_for(response.status_code).inc()
        drop = _hop_by_hop(response.headers.raw)
        out = [(k, v) for k, v in response.headers.raw if k.lower() not in drop]
        out.extend(extra)
        try:
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": out}
            )
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def _proxy_streaming(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """A free route (or payments off): stream the body both ways, bounded."""
        limit = self.config.max_body_bytes
        declared = next((v for k, v in headers if k.lower() == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _json(send, 413, {"error": Reason.OVERSIZED_BODY, "field": "body"})
            return
        method = scope["method"]
        has_body = declared not in (None, b"0") or any(
            k.lower() == b"transfer-encoding" for k, _ in headers
        )

        async def body() -> Any:
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnectedError
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise httpx.RequestError("request body above the limit")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        content = body() if has_body or method in ("POST", "PUT", "PATCH") else b""
        request = self._upstream_request(scope, route, headers, content, keep_length=True)
        response = await self._send_upstream(request, send)
        if response is not None:
            await self._relay(response, send, [])

    async def _serve_paid(
        self,
        scope: Scope,
        send: Send,
        route: Route,
        *,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        accepted: Accepted,
    ) -> None:
        signed = accepted.signed
        record = AcceptedIntent(
            signed=signed,
            vendor=self.vendor,
            service=route.service,
            route=accepted.label,
            accepted_at_ms=int(self.clock() * 1000),
        )
        # Durable before the answer: written now, synced while the upstream works.
        try:
            position, committed = self.spool.append(record)
        except OSError as exc:
            log.error("gateway: cannot write the spool (%s); refusing paid calls", exc)
            self._unclaim(accepted)
            refusal = Refusal(
                402,
                Reason.SPOOL_FULL.value,
                None,
                f"this gateway cannot write its spool ({exc}); retry later",
                signed.agent,
                signed.message,
                signed.signature,
            )
            self.metrics.refused.labels(refusal.reason).inc()
            self._refuse_record(route, refusal)
            await self._payment_required(
                scope,
                send,
                route,
                error=refusal.reason,
                last_cumulative=None,
                reason=refusal.detail,
            )
            return
        self.emitter.enqueue(record, position)
        self.metrics.paid_for(accepted.label).inc()
        self.metrics.paid_lamports.inc(signed.amount)
        identity = (
            (b"x-machpay-agent", _address(signed.agent).encode()),
            (b"x-machpay-intent", signed.id.hex().encode()),
        )
        request = self._upstream_request(
            scope, route, headers, body, keep_length=False, extra=identity
        )
        response = await self._send_upstream_after(request, send, committed)
        if response is None:
            return
        receipt = PaymentResponse.for_intent(signed, self.network).encode()
        await self._relay(
            response, send, [(PAYMENT_RESPONSE_HEADER.lower().encode(), receipt.encode())]
        )

    async def _send_upstream_after(
        self, request: httpx.Request, send: Send, committed: asyncio.Future[None] | None
    ) -> httpx.Response | None:
        """Call the upstream; answer only once the spool commit is done too.

        A failed upstream call (502/504) stays accepted: the agent's channel has
        moved on and the intent is already spooled.
        """
        assert self.upstream is not None
        if committed is None:
            return await self._send_upstream(request, send)
        try:
            response = await self.upstream.handle_async_request(request)
        except httpx.HTTPError as exc:
            await self._wait_commit(committed)
            timeout = isinstance(exc, httpx.TimeoutException)
            self.metrics.proxied_for(504 if timeout else 502).inc()
            await _json(
                send,
                504 if timeout else 502,
                {
                    "error": "upstream_timeout" if timeout else "upstream_unavailable",
                    "detail": str(exc) or type(exc).__name__,
                },
            )
            return None
        await self._wait_commit(committed)
        return response

    def _unclaim(self, accepted: Accepted) -> None:
        """Undo the claim of an intent that will not be served after all."""
        signed = accepted.signed
        self.claims.release(signed.id)
        self.channels.rollback(signed.channel, signed.nonce, accepted.previous)
        self.exposure.unrecord(signed.agent, accepted.increment)

    async def _wait_commit(self, committed: asyncio.Future[None]) -> None:
        started = time.perf_counter()
        try:
            await committed
        except OSError as exc:
            # The record is written (the OS has it) and queued for Kafka; only its
            # protection against an OS crash is in doubt.
            log.error("gateway: spool sync failed (%s)", exc)
            return
        self.metrics.spool_wait_seconds.observe(time.perf_counter() - started)


@lru_cache(maxsize=1 << 12)
def _address(key: bytes) -> str:
    """base58 of an agent key (cached: the same agents call again and again)."""
    return bytes_to_address(key)


def _request_url(scope: Scope) -> str:
    host = next((v for k, v in scope["headers"] if k.lower() == b"host"), None)
    if host is None:
        server = scope.get("server") or ("127.0.0.1", 80)
        authority = f"{server[0]}:{server[1]}"
    else:
        authority = host.decode("latin-1")
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    url = f"{scope.get('scheme', 'http')}://{authority}{raw_path.decode('latin-1')}"
    if scope["query_string"]:
        url += "?" + scope["query_string"].decode("latin-1")
    return url


async def _raw(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _json(send: Send, status: int, document: dict[str, Any]) -> None:
    await _raw(send, status, [_JSON], orjson.dumps(document))


def create_app(settings: Settings) -> Gateway:
    """The ASGI app for ``settings`` (serve it with uvicorn; lifespan must be on)."""
    return Gateway(settings)
