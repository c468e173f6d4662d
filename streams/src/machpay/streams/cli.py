"""`machpay streams …`: run the stream processors."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from machpay.cli import AppContext, pass_app


@click.group("streams")
def streams() -> None:
    """Stream processors: dedupe, fraud proofs, agent exposure, vendor batches."""


@streams.command("worker")
@click.option("--worker-id", help="Name of this worker in proofs and logs (streams.worker_id).")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    help="Python logging level for the worker and Faust (DEBUG, INFO, WARNING, ERROR).",
)
@pass_app
def worker(app: AppContext, worker_id: str | None, log_level: str) -> None:
    """Consume intents.accepted and publish proofs, statuses and batches until stopped.

    Runs the Faust app (machpay.streams.app): workers with the same
    streams.group_id share the partitions of intents.accepted; state lives in
    memory and in the changelogged state table. SIGTERM stops gracefully
    (flush markers for open batches). Settings: the [streams] and [kafka]
    sections, or MACHPAY_STREAMS__<FIELD> / MACHPAY_KAFKA__<FIELD>.
    """
    from machpay.streams.app import StreamsApp

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    settings = app.settings
    if worker_id:
        settings = settings.model_copy(
            update={"streams": settings.streams.model_copy(update={"worker_id": worker_id})}
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = StreamsApp(settings)
        click.echo(f"streams worker {settings.streams.worker_id} starting", err=True)
        await runner.run(stop)
        click.echo(f"streams worker stopped: {runner.counters}", err=True)

    asyncio.run(main())
