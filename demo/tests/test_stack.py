"""The demo writes service configs that the services' own settings model accepts."""

from __future__ import annotations

from pathlib import Path

from machpay.config import load_settings
from machpay.demo.processes import ServiceGroup
from machpay.demo.stack import CATALOGUE, DemoStack


def test_gateway_and_streams_configs_load_as_the_services_read_them(tmp_path: Path) -> None:
    settings = load_settings(
        environ={},
        overrides={"kafka": {"bootstrap_servers": "127.0.0.1:1", "topic_prefix": "demo-x."}},
    )
    stack = DemoStack(tmp_path, settings, ServiceGroup(lambda _: None), lambda _: None)
    routes = CATALOGUE[0]
    path = stack.write_config(
        "gateway-v0-0",
        {
            "gateway": {
                "vendor_address": "MachPay111111111111111111111111111111111111",
                "spool_dir": str(tmp_path / "spool"),
                "unknown_agent_allowance": 0,
                "routes": [
                    {
                        "path": r.path,
                        "methods": ["GET"],
                        "service": r.service,
                        "price": r.price,
                        "upstream": "http://127.0.0.1:9",
                    }
                    for r in routes
                ],
            },
            "streams": {"worker_id": "streams-0", "batch_max_age_ms": 1500},
        },
    )
    loaded = load_settings(path, environ={})
    assert loaded.kafka.topic_prefix == "demo-x."
    assert [(r.path, r.price) for r in loaded.gateway.routes] == [(r.path, r.price) for r in routes]
    assert loaded.gateway.unknown_agent_allowance == 0
    assert loaded.streams.batch_max_age_ms == 1500
    assert loaded.deployment == settings.deployment


def test_the_demo_refuses_settings_it_cannot_show() -> None:
    from click.testing import CliRunner

    from machpay.cli import cli

    for args, hint in (
        (["--vendors", "1"], "--vendors"),
        (["--workers", "0"], "--workers"),
        (["--agents", "4", "--calls", "3"], "--agents/--calls"),
    ):
        result = CliRunner().invoke(cli, ["demo", *args])
        assert result.exit_code == 2, result.output
        assert hint in result.output, result.output
