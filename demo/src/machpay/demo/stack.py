"""The local stack the demo runs on: broker, services, vendors and their gateways.

Every service gets its own TOML file in the run directory (written with
:func:`machpay.config.to_toml`, read back by the service exactly as an
operator's file would be) and its own log. Each run uses its own topic
prefix, so a demo on a broker that already served other runs starts from
empty topics and its report counts only its own records.
"""

from __future__ import annotations

import functools
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machpay.config import Settings, to_toml
from machpay.demo.processes import Service, ServiceGroup
from machpay.demo.traffic import Route, VendorEndpoint
from machpay.protocol import Keypair
from machpay.testing import free_port

#: What each demo vendor sells: (path, service, price in lamports).
CATALOGUE: tuple[tuple[Route, ...], ...] = (
    (Route("/v1/search", "search", 1_200), Route("/v1/news", "news", 400)),
    (Route("/v1/embed", "embed", 300), Route("/v1/rerank", "rerank", 150)),
    (Route("/v1/chat", "chat", 2_500),),
)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)


@dataclass
class DemoStack:
    """Configuration of one demo run and the services it started."""

    run_dir: Path
    settings: Settings
    group: ServiceGroup
    echo: Callable[[str], None]
    vendors: list[VendorEndpoint] = field(default_factory=list)

    def kafka_section(self) -> dict[str, Any]:
        k = self.settings.kafka
        return {
            "bootstrap_servers": k.bootstrap_servers,
            "topic_prefix": k.topic_prefix,
            "session_timeout_ms": k.session_timeout_ms,
            "heartbeat_interval_ms": k.heartbeat_interval_ms,
        }

    def deployment_section(self) -> dict[str, Any]:
        d = self.settings.deployment
        return {
            "network": d.network,
            "machpay_program_id": d.machpay_program_id,
            "domain_tag": d.domain_tag,
        }

    def write_config(self, name: str, sections: dict[str, dict[str, Any]]) -> Path:
        path = self.run_dir / "config" / f"{name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            to_toml(
                {"kafka": self.kafka_section(), "deployment": self.deployment_section(), **sections}
            )
        )
        return path

    def start_streams(self, workers: int, *, batch_max_age_ms: int) -> None:
        for i in range(workers):
            name = f"streams-{i}"
            config = self.write_config(
                name,
                {"streams": {"worker_id": name, "batch_max_age_ms": batch_max_age_ms}},
            )
            self.group.start(
                Service(
                    name,
                    ["--config", str(config), "streams", "worker"],
                    self.run_dir / "logs" / f"{name}.log",
                )
            )

    def plan_vendors(
        self, vendor_keys: list[Keypair], *, replicas_of_first: int = 2
    ) -> list[VendorEndpoint]:
        """Vendors with their routes and gateway addresses (two replicas of the first);
        the addresses are known before the gateways start, so vendors can list them
        on-chain first."""
        self.vendors = []
        for index, key in enumerate(vendor_keys):
            routes = CATALOGUE[index % len(CATALOGUE)]
            urls = tuple(
                f"http://127.0.0.1:{free_port()}"
                for _ in range(replicas_of_first if index == 0 else 1)
            )
            self.vendors.append(VendorEndpoint(f"vendor-{index}", key, urls, routes))
        return self.vendors

    def start_gateways(self, upstreams: list[str]) -> None:
        """Every planned gateway in front of its vendor's API; replicas share one secret."""
        for index, (vendor, upstream) in enumerate(zip(self.vendors, upstreams, strict=True)):
            secret = os.urandom(32).hex()
            for replica, url in enumerate(vendor.gateway_urls):
                name = f"gateway-v{index}-{replica}"
                config = self.write_config(
                    name,
                    {
                        "gateway": {
                            "host": "127.0.0.1",
                            "port": int(url.rsplit(":", 1)[1]),
                            "vendor_address": vendor.keypair.address,
                            "spool_dir": str(self.run_dir / "spool" / name),
                            # Bonds come from the chain; an agent without one is refused.
                            "unknown_agent_allowance": 0,
                            "routes": [
                                {
                                    "path": r.path,
                                    "methods": ["GET"],
                                    "service": r.service,
                                    "price": r.price,
                                    "upstream": upstream,
                                    "description": f"{r.service} by {vendor.name}",
                                    "mime_type": "application/json",
                                }
                                for r in vendor.routes
                            ],
                        }
                    },
                )
                self.group.start(
                    Service(
                        name,
                        ["--config", str(config), "gateway", "--log-level", "warning"],
                        self.run_dir / "logs" / f"{name}.log",
                        env={"MACHPAY_GATEWAY__CHALLENGE_SECRET": secret},
                        ready=functools.partial(_http_ok, url + "/readyz"),
                    ),
                    timeout_s=60,
                )


def wait_for(
    what: str,
    predicate: Callable[[], bool],
    *,
    timeout_s: float,
    echo: Callable[[str], None],
    group: ServiceGroup | None = None,
    every_s: float = 5.0,
) -> None:
    """Poll until ``predicate`` holds, printing a line every ``every_s``."""
    t0 = time.monotonic()
    last = t0
    while not predicate():
        if group is not None:
            group.check()
        now = time.monotonic()
        if now - t0 > timeout_s:
            raise TimeoutError(f"{what}: not done after {timeout_s:.0f}s")
        if now - last >= every_s:
            echo(f"  waiting for {what} ({now - t0:.0f}s)")
            last = now
        time.sleep(0.25)
