"""Helpers for the receiver's tests and benchmark: signed intents, key files, servers.

Not used by the running service. Ports, servers and topic reading come from
``machpay.testing`` (shared by every component).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machpay.config import Settings, load_settings
from machpay.ingest.keys import hash_key
from machpay.ingest.producer import IngestProducer, Send
from machpay.protocol import (
    Intent,
    Keypair,
    SignedIntent,
    address_to_bytes,
    bytes_to_address,
    channel_address,
    sign_intent,
)
from machpay.wire.intents import AcceptedIntent


def write_keys(path: Path, keys: list[dict[str, Any]]) -> Path:
    """A key file (JSON) for ``keys``: each {key, name, role, vendor?, agent?, revoked?}."""
    entries = []
    for item in keys:
        entry = {k: v for k, v in item.items() if k != "key"}
        entry["sha256"] = hash_key(item["key"])
        entries.append(entry)
    path.write_text(json.dumps({"keys": entries}))
    return path


class Signer:
    """An agent signing intents to one vendor in one deployment, nonce after nonce."""

    def __init__(self, settings: Settings, vendor: bytes, keypair: Keypair | None = None) -> None:
        self.keypair = keypair or Keypair.generate()
        self.vendor = vendor
        self.domain = settings.deployment.domain
        self.program_id = address_to_bytes(settings.deployment.machpay_program_id)
        self.channel = channel_address(
            program_id=self.program_id, agent=self.keypair.public, vendor=vendor
        )
        self.nonce = 0
        self.cumulative = 0

    def sign(self, amount: int = 1_000) -> SignedIntent:
        self.nonce += 1
        self.cumulative += amount
        intent = Intent(
            domain=self.domain,
            channel=self.channel,
            nonce=self.nonce,
            cumulative=self.cumulative,
            amount=amount,
            expires_at=int(time.time()) + 60,
            context=bytes(16),
        )
        return sign_intent(intent, self.keypair)

    def accepted(self, signed: SignedIntent) -> AcceptedIntent:
        return AcceptedIntent(
            signed=signed,
            vendor=self.vendor,
            service="search",
            route="GET /v1/search",
            accepted_at_ms=int(time.time() * 1000),
        )


def intent_json(signed: SignedIntent, vendor: bytes, **changes: Any) -> dict[str, Any]:
    """The JSON form of one intent as a gateway posts it (``changes`` override fields)."""
    record: dict[str, Any] = {
        "message": base64.b64encode(signed.message).decode(),
        "signature": base64.b64encode(signed.signature).decode(),
        "agent": bytes_to_address(signed.agent),
        "vendor": bytes_to_address(vendor),
        "service": "search",
        "route": "GET /v1/search",
        "accepted_at_ms": int(time.time() * 1000),
    }
    record.update(changes)
    return record


def log_json(agent: bytes, **changes: Any) -> dict[str, Any]:
    """One SDK call record as the TelemetryPusher sends it."""
    record: dict[str, Any] = {
        "agent": bytes_to_address(agent),
        "url": "http://127.0.0.1:8402/v1/search?q=1",
        "method": "GET",
        "vendor": None,
        "status": 200,
        "latency_ms": 1.5,
        "amount": 0,
        "intent_id": None,
        "outcome": "FREE",
        "error": None,
        "at_ms": int(time.time() * 1000),
        "sdk_version": "0.1.0",
    }
    record.update(changes)
    return record


GATEWAY_KEY = "gw-acme-secret"
OPEN_GATEWAY_KEY = "gw-any-vendor-secret"
AGENT_KEY = "agent-bound-secret"
OPEN_AGENT_KEY = "agent-any-secret"
REVOKED_KEY = "gw-revoked-secret"


@dataclass
class World:
    keys_file: Path
    vendor: Keypair
    other_vendor: Keypair
    agent: Keypair

    def key_entries(self, *, drop: str | None = None) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = [
            {
                "key": GATEWAY_KEY,
                "name": "gw-acme",
                "role": "gateway",
                "vendor": self.vendor.address,
            },
            {"key": OPEN_GATEWAY_KEY, "name": "gw-open", "role": "gateway"},
            {"key": AGENT_KEY, "name": "agent-1", "role": "agent", "agent": self.agent.address},
            {"key": OPEN_AGENT_KEY, "name": "agent-open", "role": "agent"},
            {"key": REVOKED_KEY, "name": "gw-old", "role": "gateway", "revoked": True},
        ]
        return [e for e in entries if e["key"] != drop]

    def settings(self, **ingest: Any) -> Settings:
        return load_settings(
            environ={},
            overrides={
                "ingest": {"keys_file": str(self.keys_file), "instance_id": "ingest-test", **ingest}
            },
        )

    def kafka_settings(self, base: Settings, **ingest: Any) -> Settings:
        return load_settings(
            environ={},
            overrides={
                "kafka": base.kafka.model_dump(),
                "ingest": {
                    "keys_file": str(self.keys_file),
                    "instance_id": "ingest-test",
                    **ingest,
                },
            },
        )

    def signer(self, settings: Settings, *, vendor: Keypair | None = None) -> Signer:
        return Signer(settings, (vendor or self.vendor).public, self.agent)


class RecordingProducer(IngestProducer):
    """Stands in for Kafka in process: acknowledges at once and keeps what was sent."""

    def __init__(self, settings: Settings, partitions: int = 6) -> None:
        super().__init__(settings)
        self.sent: list[Send] = []
        self.partition_count = partitions
        self.connected = True
        self._producer = object()

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def partitions(self, topic: str) -> int:
        return self.partition_count

    async def produce(self, sends: list[Send], *, records: int) -> None:
        if not sends:
            return
        self.check_admission(records, sum(len(s.value) for s in sends))
        self.sent.extend(sends)
        self.acknowledged_records += records
