"""`machpay ingest`: run the receiver."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from machpay.cli import AppContext, pass_app
from machpay.config import CONFIG_ENV, ConfigError, load_settings


@click.command("ingest")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML settings file with an [ingest] section (overrides `machpay --config`). "
    "Environment variables MACHPAY_INGEST__<FIELD> override it.",
)
@click.option("--host", help="Interface to listen on (default: ingest.host, 127.0.0.1).")
@click.option("--port", type=int, help="TCP port to listen on (default: ingest.port, 8403).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Server processes sharing the port (default: ingest.workers, 1). One process "
    "verifies and produces ~11k intents/s per free core (signature checks alone cap it "
    "at ~17k/s); add a process per core to go further.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Log level of the receiver and the HTTP server.",
)
@pass_app
def ingest(
    app: AppContext,
    *,
    config_path: Path | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    log_level: str,
) -> None:
    """Run the receiver: HTTP ingress for intents and SDK telemetry into Kafka.

    POST /v1/intents takes batches of signed intents from gateways that cannot
    reach Kafka (JSON {"intents": [...]} or a framed Avro machpay.IntentBatch);
    POST /v1/logs takes batches of SDK call records (JSON {"records": [...]} or
    a framed Avro machpay.ClientLogBatch). Both need Authorization: Bearer
    <key>; keys are SHA-256 hashes in ingest.keys_file (required; re-read
    when it changes, so removing a key revokes it). Every record is
    validated (schema, lengths, encodings, strict Ed25519 for intents) before
    anything is produced; valid intents go to intents.accepted packed one
    record per partition, refused ones to intents.rejected, logs to
    client.logs, all with acks=all, and the answer (200, or 207 listing the
    refused records) is sent only once the broker acknowledged.

    Limits answer 413 (ingest.max_body_bytes, ingest.max_records_per_batch);
    backpressure answers 429 (in-flight bounds) or 503 (Kafka unavailable or
    slower than ingest.produce_timeout_seconds), both with Retry-After.

    Endpoints of its own: /metrics (Prometheus), /healthz, /readyz.
    """
    import uvicorn

    from machpay.ingest.app import create_app

    path = config_path if config_path is not None else app.config_path
    try:
        settings = load_settings(path) if config_path is not None else app.settings
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    cfg = settings.ingest
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        asgi = create_app(settings)  # validates the key store and settings at start
    except (ConfigError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    count = cfg.workers if workers is None else workers
    common = {
        "host": host or cfg.host,
        "port": cfg.port if port is None else port,
        "log_level": log_level,
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    if count == 1:
        uvicorn.run(asgi, **common)  # type: ignore[arg-type]
        return
    # Worker processes import the app by name and rebuild it from the same settings.
    if path is not None:
        os.environ[CONFIG_ENV] = str(path.resolve())
    uvicorn.run(
        "machpay.ingest.app:app_from_environment",
        factory=True,
        workers=count,
        **common,  # type: ignore[arg-type]
    )
