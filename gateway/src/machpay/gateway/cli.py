"""`machpay gateway`: run the paying reverse proxy."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from machpay.cli import AppContext, pass_app
from machpay.config import ConfigError, load_settings


@click.command("gateway")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML settings file with a [gateway] section (overrides `machpay --config`). "
    "Environment variables MACHPAY_GATEWAY__<FIELD> override it; keep the challenge "
    "secret there (MACHPAY_GATEWAY__CHALLENGE_SECRET).",
)
@click.option("--host", help="Interface to listen on (default: gateway.host, 127.0.0.1).")
@click.option("--port", type=int, help="TCP port to listen on (default: gateway.port, 8402).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Log level of the gateway and the HTTP server.",
)
@pass_app
def gateway(
    app: AppContext,
    *,
    config_path: Path | None,
    host: str | None,
    port: int | None,
    log_level: str,
) -> None:
    """Run the vendor gateway: a reverse proxy that asks for, verifies and records payments.

    Unpaid calls to a paid route get 402 with PAYMENT-REQUIRED; a call with a
    valid PAYMENT-SIGNATURE is verified locally (strict Ed25519, domain,
    vendor, route, price, request binding, challenge, expiry, replay, channel
    consistency, agent status and exposure cap), proxied to the route's
    upstream and answered with a PAYMENT-RESPONSE receipt. Accepted intents
    are spooled to disk before the answer and produced to intents.accepted in
    the background; refusals go to intents.rejected.

    Endpoints of its own: /metrics (Prometheus), /healthz, /readyz.
    """
    import uvicorn

    from machpay.gateway.app import create_app

    if config_path is not None:
        try:
            settings = load_settings(config_path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    else:
        settings = app.settings
    gw = settings.gateway
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        asgi = create_app(settings)
    except (ConfigError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not gw.routes and not gw.free_routes:
        raise click.ClickException("no routes configured: add [[gateway.routes]] to the config")
    uvicorn.run(
        asgi,
        host=host or gw.host,
        port=gw.port if port is None else port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
