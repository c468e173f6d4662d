"""Discovery: offline file listings (JSON, TOML), the HTTP source, cheapest match."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from machpay.protocol import Keypair
from machpay.sdk.discovery import (
    FileRegistry,
    HttpRegistry,
    RegistryError,
    ServiceOffer,
    StaticRegistry,
)

V1 = Keypair.from_seed(b"1" * 32).address
V2 = Keypair.from_seed(b"2" * 32).address
V3 = Keypair.from_seed(b"3" * 32).address

LISTING = {
    "services": [
        {
            "vendor": V1,
            "service": "weather",
            "price": 1500,
            "unit": "call",
            "gateway_url": "http://a.test",
            "metadata": {"region": "eu"},
        },
        {
            "vendor": V2,
            "service": "weather",
            "price": "900",
            "unit": "call",
            "gateway_url": "http://b.test",
        },
        {
            "vendor": V3,
            "service": "translate",
            "price": 300,
            "unit": "1k chars",
            "gateway_url": "http://c.test",
        },
    ]
}


def test_find_picks_the_cheapest_matching(tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    path.write_text(json.dumps(LISTING))
    registry = FileRegistry(path)
    best = registry.find(service="weather")
    assert best is not None
    assert (best.vendor, best.price, best.gateway_url) == (V2, 900, "http://b.test")
    assert [o.price for o in registry.find_all(service="weather")] == [900, 1500]
    assert registry.find(service="weather", max_price=899) is None
    assert registry.find(service="weather", vendor=V1) is not None
    assert registry.find(service="nothing") is None


def test_toml_listing(tmp_path: Path) -> None:
    path = tmp_path / "services.toml"
    path.write_text(
        f'[[services]]\nvendor = "{V1}"\nservice = "weather"\nprice = 10\n'
        f'gateway_url = "http://a.test"\n[services.metadata]\nsla = "99.9"\n'
    )
    offer = FileRegistry(path).find(service="weather")
    assert offer is not None
    assert offer.metadata == {"sla": "99.9"}
    assert offer.unit == "call"


def test_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    path.write_text(json.dumps({"services": LISTING["services"][:1]}))
    registry = FileRegistry(path)
    assert len(registry.services()) == 1
    path.write_text(json.dumps(LISTING))
    assert len(registry.services()) == 3


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"service": "x", "price": 1, "gateway_url": "u"}, "missing field 'vendor'"),
        ({"vendor": "nope", "service": "x", "price": 1, "gateway_url": "u"}, "not a Solana"),
        ({"vendor": V1, "service": "x", "price": -1, "gateway_url": "u"}, "price"),
    ],
)
def test_bad_entries_name_the_problem(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    path = tmp_path / "services.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(RegistryError, match=message):
        FileRegistry(path).services()


def test_http_source_reads_v1_services_and_caches() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        assert request.url.path == "/v1/services"
        return httpx.Response(200, json=LISTING)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    registry = HttpRegistry("http://api.test/", api_key="k", client=client, ttl=60)
    assert registry.find(service="translate") == ServiceOffer(
        V3, "translate", 300, "1k chars", "http://c.test"
    )
    registry.find(service="weather")
    assert len(calls) == 1
    assert calls[0].headers["authorization"] == "Bearer k"


def test_http_source_errors_are_registry_errors() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    with pytest.raises(RegistryError, match="503"):
        HttpRegistry("http://api.test", client=client).services()


def test_static_registry_round_trips_json() -> None:
    offer = ServiceOffer(V1, "weather", 5, "call", "http://a.test", metadata={"k": 1})
    assert ServiceOffer.from_json(offer.to_json(), "x") == offer
    assert StaticRegistry([offer]).find(max_price=5) == offer
