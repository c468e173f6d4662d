"""Finding vendors and services: a :class:`Registry` and where its listing comes from.

A listing is a JSON (or TOML) document::

    {"services": [{"vendor": "<base58>", "service": "weather", "price": 1000,
                   "unit": "call", "gateway_url": "https://...", "asset": "<base58>",
                   "metadata": {...}}]}

read from a file (:class:`FileRegistry`, offline and for tests) or from the
management API (:class:`HttpRegistry`: ``GET {base}/v1/services`` returns the
same document). A bare JSON list of entries is accepted too.
"""

from __future__ import annotations

import json
import os
import threading
import time
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from machpay.protocol import address_to_bytes
from machpay.sdk.errors import MachPayError

NATIVE_SOL_ADDRESS = "11111111111111111111111111111111"


class RegistryError(MachPayError):
    """A listing could not be read or an entry is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class ServiceOffer:
    """One vendor's service, as listed in the registry."""

    vendor: str
    service: str
    price: int
    unit: str
    gateway_url: str
    asset: str = NATIVE_SOL_ADDRESS
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, entry: object, where: str) -> ServiceOffer:
        if not isinstance(entry, Mapping):
            raise RegistryError(f"{where}: expected an object, got {type(entry).__name__}")
        try:
            vendor, service = entry["vendor"], entry["service"]
            price, gateway_url = entry["price"], entry["gateway_url"]
        except KeyError as exc:
            raise RegistryError(f"{where}: missing field {exc.args[0]!r}") from None
        if not isinstance(vendor, str):
            raise RegistryError(f"{where}.vendor: expected a base58 address")
        try:
            address_to_bytes(vendor)
        except ValueError:
            raise RegistryError(f"{where}.vendor: {vendor!r} is not a Solana address") from None
        if not isinstance(service, str) or not service:
            raise RegistryError(f"{where}.service: expected a non-empty string")
        if isinstance(price, str) and price.isdigit():
            price = int(price)
        if type(price) is not int or price < 0:
            raise RegistryError(f"{where}.price: expected a non-negative integer, got {price!r}")
        if not isinstance(gateway_url, str) or not gateway_url:
            raise RegistryError(f"{where}.gateway_url: expected a URL")
        unit = entry.get("unit", "call")
        asset = entry.get("asset", NATIVE_SOL_ADDRESS)
        metadata = entry.get("metadata", {})
        if not isinstance(unit, str) or not isinstance(asset, str):
            raise RegistryError(f"{where}: unit and asset must be strings")
        if not isinstance(metadata, Mapping):
            raise RegistryError(f"{where}.metadata: expected an object")
        return cls(vendor, service, price, unit, gateway_url, asset, dict(metadata))

    def to_json(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "service": self.service,
            "price": self.price,
            "unit": self.unit,
            "gateway_url": self.gateway_url,
            "asset": self.asset,
            "metadata": dict(self.metadata),
        }


def parse_listing(document: object, where: str) -> list[ServiceOffer]:
    """Entries of a listing document (``{"services": [...]}`` or a bare list)."""
    entries = document.get("services") if isinstance(document, Mapping) else document
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise RegistryError(f"{where}: expected {{'services': [...]}} or a list of services")
    return [ServiceOffer.from_json(e, f"{where}: services[{i}]") for i, e in enumerate(entries)]


class Registry(ABC):
    """Where offers come from, and how to pick one."""

    @abstractmethod
    def services(self) -> list[ServiceOffer]:
        """Every offer currently listed."""

    def find_all(
        self,
        *,
        service: str | None = None,
        max_price: int | None = None,
        vendor: str | None = None,
        unit: str | None = None,
        asset: str | None = None,
    ) -> list[ServiceOffer]:
        """Matching offers, cheapest first (ties: vendor address, for a stable order)."""
        found = [
            offer
            for offer in self.services()
            if (service is None or offer.service == service)
            and (max_price is None or offer.price <= max_price)
            and (vendor is None or offer.vendor == vendor)
            and (unit is None or offer.unit == unit)
            and (asset is None or offer.asset == asset)
        ]
        return sorted(found, key=lambda o: (o.price, o.vendor, o.gateway_url))

    def find(
        self,
        *,
        service: str | None = None,
        max_price: int | None = None,
        vendor: str | None = None,
        unit: str | None = None,
        asset: str | None = None,
    ) -> ServiceOffer | None:
        """The cheapest matching offer, or ``None``."""
        found = self.find_all(
            service=service, max_price=max_price, vendor=vendor, unit=unit, asset=asset
        )
        return found[0] if found else None


class StaticRegistry(Registry):
    """A fixed list of offers (tests, or offers built in code)."""

    def __init__(self, offers: Sequence[ServiceOffer]) -> None:
        self._offers = list(offers)

    def services(self) -> list[ServiceOffer]:
        return list(self._offers)


class FileRegistry(Registry):
    """Offers from a JSON or TOML file (by extension), re-read when the file changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._offers: list[ServiceOffer] = []

    def services(self) -> list[ServiceOffer]:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise RegistryError(f"{self.path}: cannot read listing: {exc.strerror}") from exc
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._offers = self._read()
            self._stamp = stamp
        return list(self._offers)

    def _read(self) -> list[ServiceOffer]:
        raw = self.path.read_bytes()
        try:
            if self.path.suffix.lower() == ".toml":
                document: object = tomllib.loads(raw.decode("utf-8"))
            else:
                document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{self.path}: not valid listing: {exc}") from exc
        return parse_listing(document, str(self.path))


class HttpRegistry(Registry):
    """Offers from the management API (``GET {base}/v1/services``), cached for ``ttl`` s."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        ttl: float = 60.0,
        timeout: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/v1/services"
        self.ttl = ttl
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None
        self._lock = threading.Lock()
        self._fetched_at = float("-inf")
        self._offers: list[ServiceOffer] = []

    def services(self) -> list[ServiceOffer]:
        with self._lock:
            if time.monotonic() - self._fetched_at >= self.ttl:
                self._offers = self._fetch()
                self._fetched_at = time.monotonic()
            return list(self._offers)

    def _fetch(self) -> list[ServiceOffer]:
        try:
            response = self._client.get(self.url, headers=self._headers)
            response.raise_for_status()
            document = response.json()
        except httpx.HTTPError as exc:
            raise RegistryError(f"{self.url}: {exc}") from exc
        except ValueError as exc:
            raise RegistryError(f"{self.url}: response is not JSON: {exc}") from exc
        return parse_listing(document, self.url)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
