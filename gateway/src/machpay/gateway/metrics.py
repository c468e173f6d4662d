"""Prometheus metrics of one gateway (its own registry, so tests can run several)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.paid = Counter("machpay_gateway_paid", "Paid calls served.", ["route"], registry=r)
        self.paid_lamports = Counter(
            "machpay_gateway_paid_lamports", "Lamports of the paid calls served.", registry=r
        )
        self.refused = Counter(
            "machpay_gateway_refused", "Paid calls refused, by reason.", ["reason"], registry=r
        )
        self.unpaid = Counter(
            "machpay_gateway_payment_required",
            "Calls to paid routes without a payment (answered 402).",
            registry=r,
        )
        self.proxied = Counter(
            "machpay_gateway_upstream_responses",
            "Upstream answers (status class) and gateway errors (502/504).",
            ["status"],
            registry=r,
        )
        self.verify_seconds = Histogram(
            "machpay_gateway_verify_seconds",
            "Time to verify a paid call (parse, strict signature, binding, ledgers).",
            buckets=(25e-6, 50e-6, 75e-6, 100e-6, 150e-6, 250e-6, 500e-6, 1e-3, 5e-3),
            registry=r,
        )
        self.spool_wait_seconds = Histogram(
            "machpay_gateway_spool_commit_wait_seconds",
            "Time a response waited for the spool group commit after the upstream answered.",
            buckets=(1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2),
            registry=r,
        )
        self.spool_bytes = Gauge(
            "machpay_gateway_spool_pending_bytes",
            "Spooled bytes not yet acknowledged by Kafka.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "machpay_gateway_queue_depth",
            "Accepted intents waiting to be produced to Kafka.",
            registry=r,
        )
        self.rejected_dropped = Gauge(
            "machpay_gateway_rejected_dropped",
            "Refusal records dropped because the intents.rejected queue was full.",
            registry=r,
        )
        self.kafka_connected = Gauge(
            "machpay_gateway_kafka_connected", "1 when the producer is connected.", registry=r
        )
        self.known_agents = Gauge(
            "machpay_gateway_known_agents", "Agents in the agents.status cache.", registry=r
        )

        # Label children bound once: ``labels()`` per call hashes and locks every time.
        self._paid_children: dict[str, Any] = {}
        self._proxied_children: dict[int, Any] = {}

    def paid_for(self, route: str) -> Any:
        """The ``paid`` counter child of one route label (bound once)."""
        child = self._paid_children.get(route)
        if child is None:
            child = self._paid_children[route] = self.paid.labels(route)
        return child

    def proxied_for(self, status: int) -> Any:
        """The ``proxied`` counter child of an upstream status (by class) or 502/504."""
        child = self._proxied_children.get(status)
        if child is None:
            label = str(status) if status in (502, 504) else f"{status // 100}xx"
            child = self._proxied_children[status] = self.proxied.labels(label)
        return child

    def bind(
        self,
        *,
        spool_bytes: Callable[[], float],
        queue_depth: Callable[[], float],
        rejected_dropped: Callable[[], float],
        kafka_connected: Callable[[], float],
        known_agents: Callable[[], float],
    ) -> None:
        """Gauges read live values at scrape time (no work on the request path)."""
        self.spool_bytes.set_function(spool_bytes)
        self.queue_depth.set_function(queue_depth)
        self.rejected_dropped.set_function(rejected_dropped)
        self.kafka_connected.set_function(kafka_connected)
        self.known_agents.set_function(known_agents)

    def render(self) -> bytes:
        return generate_latest(self.registry)
