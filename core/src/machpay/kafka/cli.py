"""`machpay kafka`: run a local single-node Kafka broker and manage MachPay's topics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from machpay.cli import AppContext, pass_app
from machpay.config import LocalKafkaSettings, Settings
from machpay.kafka.admin import KafkaAdminError, TopicResult, create_topics, list_topics
from machpay.kafka.broker import BrokerError, LocalBroker
from machpay.kafka.smoke import smoke

_DATA_DIR_HELP = (
    "Broker data directory: KRaft storage, generated server.properties, logs and pid "
    "file. Default: <local_kafka.home>/data (local_kafka.home defaults to "
    "~/.cache/machpay/kafka, which also caches the jars per Kafka version)."
)


def _broker(app: AppContext, data_dir: Path | None, **changes: Any) -> LocalBroker:
    local = app.settings.local_kafka
    update = {k: v for k, v in changes.items() if v is not None}
    if update:
        try:
            local = LocalKafkaSettings.model_validate({**local.model_dump(), **update})
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    return LocalBroker(local, data_dir=data_dir, echo=click.echo)


def _settings_for(app: AppContext, broker: LocalBroker | None, bootstrap: str | None) -> Settings:
    settings = app.settings
    kafka = settings.kafka
    if bootstrap is not None or broker is not None:
        target = bootstrap or (broker.bootstrap if broker else kafka.bootstrap_servers)
        kafka = kafka.model_validate({**kafka.model_dump(), "bootstrap_servers": target})
    local = broker.local if broker is not None else settings.local_kafka
    return settings.model_copy(update={"kafka": kafka, "local_kafka": local})


def _print_topics(results: list[TopicResult]) -> None:
    width = max(len(r.name) for r in results)
    for r in results:
        policy = "compact" if r.compacted else "delete"
        line = f"  {r.name:<{width}}  {r.partitions:>3} partitions  {policy:<7}  {r.action}"
        if r.problems:
            line += "  MISMATCH: " + "; ".join(r.problems)
        click.echo(line)


def _ensure_topics(settings: Settings, prefix: str | None) -> None:
    try:
        results = create_topics(settings, prefix, strict=False)
    except KafkaAdminError as exc:
        raise click.ClickException(str(exc)) from exc
    shown = settings.kafka.topic_prefix if prefix is None else prefix
    created = sum(r.action == "created" for r in results)
    click.echo(
        f"topics on {settings.kafka.bootstrap_servers} (prefix {shown!r}): "
        f"{created} created, {len(results) - created} already there"
    )
    _print_topics(results)
    bad = [r for r in results if r.problems]
    if bad:
        raise click.ClickException(
            f"{len(bad)} existing topic(s) differ from machpay.topics; delete them or use "
            "`machpay kafka up --fresh` / another kafka.topic_prefix"
        )


@click.group("kafka")
def kafka() -> None:
    """Run a real Apache Kafka broker on this machine, without Docker.

    A single-node KRaft broker (combined broker + controller) from the Maven
    jars of org.apache.kafka:kafka_2.13, on 127.0.0.1 by default. Needs Java
    17+ and Maven (only for the first fetch). Configured by the [local_kafka]
    settings (MACHPAY_LOCAL_KAFKA__PORT, ...); clients use [kafka].
    """


@kafka.command("up")
@click.option("--port", type=int, help="PLAINTEXT listener port (local_kafka.port, default 9092).")
@click.option(
    "--controller-port",
    type=int,
    help="KRaft controller port (local_kafka.controller_port, default 9093). Fixed at format "
    "time: changing it needs --fresh.",
)
@click.option("--host", help="Interface to bind (local_kafka.host, default 127.0.0.1).")
@click.option("--heap", help="JVM max heap, e.g. 512m or 1g (local_kafka.heap).")
@click.option(
    "--version",
    "kafka_version",
    help="Apache Kafka version (local_kafka.version, default 4.1.1); 3.9.x works too.",
)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=_DATA_DIR_HELP)
@click.option(
    "--fresh",
    is_flag=True,
    help="Stop the broker if it runs, delete the data directory (all topics, offsets and "
    "logs) and format new storage. Cached jars are kept.",
)
@click.option(
    "--no-topics",
    is_flag=True,
    help="Do not create MachPay's topics after start (by default every topic in "
    "machpay.topics is created or checked).",
)
@click.option(
    "--prefix",
    help="Topic name prefix for the created topics (default: kafka.topic_prefix).",
)
@click.option(
    "--timeout",
    type=float,
    default=90.0,
    show_default=True,
    help="Seconds to wait for the broker to answer before giving up.",
)
@pass_app
def up(
    app: AppContext,
    *,
    port: int | None,
    controller_port: int | None,
    host: str | None,
    heap: str | None,
    kafka_version: str | None,
    data_dir: Path | None,
    fresh: bool,
    no_topics: bool,
    prefix: str | None,
    timeout: float,
) -> None:
    """Fetch (once), format (once) and start the broker; create the topics.

    Idempotent: when the broker of this data directory already runs it says
    so and only (re)checks the topics. The broker keeps running after this
    command returns; stop it with `machpay kafka down`.
    """
    broker = _broker(
        app,
        data_dir,
        port=port,
        controller_port=controller_port,
        host=host,
        heap=heap,
        version=kafka_version,
    )
    try:
        if fresh:
            broker.stop()
            broker.wipe()
        broker.fetch()
        broker.start(timeout=timeout)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"  bootstrap   {broker.bootstrap}")
    click.echo(f"  controller  {broker.controller}")
    click.echo(f"  data        {broker.data_dir}")
    click.echo(f"  log         {broker.log_file}")
    if not no_topics:
        _ensure_topics(_settings_for(app, broker, None), prefix)


@kafka.command("down")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=_DATA_DIR_HELP)
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for a clean shutdown before the broker is killed (SIGKILL).",
)
@pass_app
def down(app: AppContext, *, data_dir: Path | None, timeout: float) -> None:
    """Stop the broker of this data directory (data is kept; `up` resumes it)."""
    broker = _broker(app, data_dir)
    try:
        if not broker.stop(timeout=timeout):
            click.echo(f"Kafka broker is not running (data dir {broker.data_dir})")
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc


@kafka.command("status")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=_DATA_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def status(app: AppContext, *, data_dir: Path | None, as_json: bool) -> None:
    """Whether the local broker runs, where, and which topics it has.

    Exits 0 when running, 3 when stopped (handy in scripts).
    """
    broker = _broker(app, data_dir)
    st = broker.status()
    if as_json:
        import orjson

        data = {
            "running": st.running,
            "pid": st.pid,
            "bootstrap": st.bootstrap,
            "controller": st.controller,
            "version": st.version,
            "data_dir": str(st.data_dir),
            "formatted": st.formatted,
            "log_file": str(st.log_file),
            "topics": st.topics,
        }
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    else:
        state = f"running (pid {st.pid})" if st.running else "stopped"
        click.echo(f"Kafka {st.version} broker: {state}")
        click.echo(f"  bootstrap   {st.bootstrap}")
        click.echo(f"  controller  {st.controller}")
        click.echo(f"  data        {st.data_dir}" + ("" if st.formatted else " (not formatted)"))
        click.echo(f"  log         {st.log_file}")
        if st.running:
            click.echo(f"  topics      {len(st.topics)}")
            for name, parts in st.topics.items():
                click.echo(f"    {name} ({parts} partitions)")
    if not st.running:
        raise SystemExit(3)


@kafka.command("topics")
@click.option(
    "--bootstrap",
    help="Cluster to talk to (default: kafka.bootstrap_servers, e.g. the local broker or "
    "the docker-compose one).",
)
@click.option("--prefix", help="Topic name prefix (default: kafka.topic_prefix).")
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="Only list the topics on the cluster; create nothing.",
)
@pass_app
def topics(app: AppContext, *, bootstrap: str | None, prefix: str | None, list_only: bool) -> None:
    """Create every topic declared in machpay.topics that is missing, and check the rest.

    Partitions come from the declaration or local_kafka.partitions, compacted
    topics (agents.status) get cleanup.policy=compact. An existing topic whose
    partition count or cleanup policy differs is reported and the command
    fails.
    """
    settings = _settings_for(app, None, bootstrap)
    if list_only:
        try:
            found = list_topics(settings.kafka)
        except Exception as exc:
            raise click.ClickException(
                f"cannot list topics on {settings.kafka.bootstrap_servers}: {exc!r}"
            ) from exc
        if not found:
            click.echo(f"no topics on {settings.kafka.bootstrap_servers}")
        for name, parts in found.items():
            click.echo(f"{name} ({parts} partitions)")
        return
    _ensure_topics(settings, prefix)


kafka.add_command(smoke)
