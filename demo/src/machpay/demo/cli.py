"""`machpay demo`: start the local stack, run the main job, show what happened."""

from __future__ import annotations

from pathlib import Path

import click

from machpay.cli import AppContext, pass_app


@click.command("demo")
@click.option(
    "--agents", default=8, show_default=True, help="Honest agents paying through the SDK."
)
@click.option(
    "--vendors",
    default=3,
    show_default=True,
    help="Vendors (2 or 3), each behind its own gateway (the first has two replicas).",
)
@click.option(
    "--calls", default=1_500, show_default=True, help="Paid calls the honest agents make in all."
)
@click.option(
    "--workers", default=2, show_default=True, help="Stream workers sharing the partitions."
)
@click.option(
    "--bond",
    default=50_000_000,
    show_default=True,
    help="Lamports each agent deposits in GlobalBond.",
)
@click.option("--seed", default=7, show_default=True, help="Seed of the traffic mix.")
@click.option(
    "--bootstrap",
    help="Use this Kafka cluster instead of the local broker "
    "(default: start or reuse the one of `machpay kafka up`).",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where this run's configs, keys, spools and logs go "
    "(default: $MACHPAY_CACHE/demo/<run id>).",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave the services up after the report (stop with Ctrl-C).",
)
@pass_app
def demo(
    app: AppContext,
    *,
    agents: int,
    vendors: int,
    calls: int,
    workers: int,
    bond: int,
    seed: int,
    bootstrap: str | None,
    run_dir: Path | None,
    keep_running: bool,
) -> None:
    """Run the whole product on this machine and report what every part did.

    Starts (or reuses) the local Kafka broker and a local Solana runtime with
    the GlobalBond, MachPay and ServiceRegistry programs; registers vendors
    and their services on-chain; agents deposit bonds; starts the stream
    workers, the settler and one gateway per vendor in front of a small API.
    Honest agents then pay per call through the SDK while two cheats
    double-spend; the report shows the fraud caught and slashed, the cheats
    banned at the gateways, every batch settled on-chain, and that the
    lamports add up: paid by agents = moved on-chain + still outstanding.
    """
    from machpay.demo.run import DemoOptions, run

    if not 2 <= vendors <= 3:
        # Two at least: the equivocator spends one nonce at two vendors.
        raise click.BadParameter("between 2 and 3", param_hint="--vendors")
    if workers < 1:
        raise click.BadParameter("at least 1", param_hint="--workers")
    if bond < 1:
        raise click.BadParameter("at least 1 lamport", param_hint="--bond")
    if agents < 1 or calls < agents:
        raise click.BadParameter(
            "at least one agent and one call per agent", param_hint="--agents/--calls"
        )
    options = DemoOptions(
        agents=agents,
        vendors=vendors,
        calls=calls,
        workers=workers,
        bond=bond,
        seed=seed,
        bootstrap=bootstrap,
        run_dir=run_dir,
        keep_running=keep_running,
    )
    from machpay.demo.processes import ServiceError
    from machpay.kafka.admin import KafkaAdminError
    from machpay.kafka.broker import BrokerError
    from machpay.localnet.node import LocalnetError

    try:
        ok = run(app.settings, options, echo=click.echo)
    except (ServiceError, TimeoutError, BrokerError, KafkaAdminError, LocalnetError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    if not ok:
        raise click.ClickException("the demo's checks did not all hold (see the report above)")
