"""Prometheus metrics of one receiver (its own registry, so tests can run several)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "IngestMetrics"]


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "machpay_ingest_requests",
            "Requests answered, by endpoint and status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.accepted = Counter(
            "machpay_ingest_accepted",
            "Records acknowledged by Kafka, by kind (intent, log).",
            ["kind"],
            registry=r,
        )
        self.rejected = Counter(
            "machpay_ingest_rejected",
            "Records refused by validation, by kind and reason.",
            ["kind", "reason"],
            registry=r,
        )
        self.dead_letters_lost = Counter(
            "machpay_ingest_dead_letters_lost",
            "Dead letters of refused requests Kafka did not take in time (best effort).",
            registry=r,
        )
        self.produce_seconds = Histogram(
            "machpay_ingest_produce_seconds",
            "Time from handing a request's records to the producer to acks=all.",
            buckets=(1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0, 5.0),
            registry=r,
        )
        self.in_flight_records = Gauge(
            "machpay_ingest_in_flight_records",
            "Records handed to the producer and not yet acknowledged.",
            registry=r,
        )
        self.in_flight_bytes = Gauge(
            "machpay_ingest_in_flight_bytes",
            "Encoded bytes handed to the producer and not yet acknowledged.",
            registry=r,
        )
        self.kafka_connected = Gauge(
            "machpay_ingest_kafka_connected", "1 when the producer is connected.", registry=r
        )

    def bind(
        self,
        *,
        in_flight_records: Callable[[], float],
        in_flight_bytes: Callable[[], float],
        kafka_connected: Callable[[], float],
    ) -> None:
        """Gauges read live values at scrape time (no work on the request path)."""
        self.in_flight_records.set_function(in_flight_records)
        self.in_flight_bytes.set_function(in_flight_bytes)
        self.kafka_connected.set_function(kafka_connected)

    def render(self) -> bytes:
        return generate_latest(self.registry)
