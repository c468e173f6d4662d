"""`machpay settle …`: run the settler, follow the chain, inspect what it holds."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Any

import click

from machpay.cli import AppContext, pass_app
from machpay.config import Settings


def _apply(settings: Settings, **fields: Any) -> Settings:
    """Settings with the given [settle] fields replaced (only those passed on the command line)."""
    chosen = {k: v for k, v in fields.items() if v is not None}
    if not chosen:
        return settings
    data = settings.settle.model_dump()
    data.update(chosen)
    section = type(settings.settle).model_validate(data)
    return settings.model_copy(update={"settle": section})


_rpc = click.option("--rpc-url", help="Solana JSON-RPC endpoint (settle.rpc_url).")
_payer = click.option(
    "--payer",
    "payer_keypair",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fee payer keypair file, Solana CLI format (settle.payer_keypair).",
)
_state = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Journal, follower checkpoint and lookup-table cache (settle.state_dir).",
)
_log = click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logging level.",
)


def _settings(app: AppContext, **fields: Any) -> Settings:
    try:
        return _apply(app.settings, **fields)
    except ValueError as exc:  # pydantic names the setting
        raise click.ClickException(f"invalid [settle] option: {exc}") from exc


@click.group("settle")
def settle() -> None:
    """The settler: batches and fraud proofs to Solana, chain events back to Kafka.

    Settings live in the [settle] section (MACHPAY_SETTLE__<FIELD>); the
    options below override them for one run.
    """


@settle.command("run")
@_rpc
@_payer
@_state
@click.option(
    "--no-follow",
    is_flag=True,
    default=False,
    help="Do not run the chain follower in this process (settle.follow = false).",
)
@click.option(
    "--no-lookup-table",
    is_flag=True,
    default=False,
    help="Spell every account out instead of using a lookup table (settle.use_lookup_table).",
)
@click.option(
    "--status-interval",
    "status_interval_seconds",
    type=float,
    help="Seconds between progress lines (settle.status_interval_seconds).",
)
@_log
@pass_app
def run(
    app: AppContext,
    *,
    rpc_url: str | None,
    payer_keypair: Path | None,
    state_dir: Path | None,
    no_follow: bool,
    no_lookup_table: bool,
    status_interval_seconds: float | None,
    log_level: str,
) -> None:
    """Consume batches.ready and fraud.proofs, settle them on-chain, produce settlements.

    Runs until SIGTERM or Ctrl-C; prints a progress line every status interval.
    """
    from machpay.settle.service import SettleService

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    settings = _settings(
        app,
        rpc_url=rpc_url,
        payer_keypair=payer_keypair,
        state_dir=state_dir,
        follow=False if no_follow else None,
        use_lookup_table=False if no_lookup_table else None,
        status_interval_seconds=status_interval_seconds,
    )
    try:
        service = SettleService.from_settings(
            settings, on_progress=lambda line: click.echo(line, err=True)
        )
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        click.echo(
            f"settler starting: rpc {settings.settle.rpc_url}, payer "
            f"{service.settler.payer.pubkey()}, group {settings.settle.group_id}",
            err=True,
        )
        await service.run(stop)
        click.echo(f"settler stopped: {service.settler.counters.line()}", err=True)

    from aiokafka.errors import KafkaConnectionError

    from machpay.settle.chain import ChainUnavailableError

    try:
        asyncio.run(main())
    except ChainUnavailableError as exc:
        raise click.ClickException(
            f"cannot reach the Solana RPC endpoint (setting settle.rpc_url): {exc}"
        ) from exc
    except KafkaConnectionError as exc:
        raise click.ClickException(
            f"cannot reach Kafka (setting kafka.bootstrap_servers "
            f"{settings.kafka.bootstrap_servers}): {exc}"
        ) from exc


@settle.command("follow")
@_rpc
@_state
@_log
@pass_app
def follow(app: AppContext, rpc_url: str | None, state_dir: Path | None, log_level: str) -> None:
    """Only follow the programs' events into chain.events (resumes from its checkpoint)."""
    from machpay.settle.chain import Chain
    from machpay.settle.follower import Follower
    from machpay.settle.service import load_deployment

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    settings = _settings(app, rpc_url=rpc_url, state_dir=state_dir)
    deployment = load_deployment(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        chain = Chain(settings.settle.rpc_url, settings.settle.commitment)
        follower = Follower(settings, deployment, chain)
        try:
            await follower.run(stop)
        finally:
            await chain.close()
        click.echo(f"follower stopped: {follower.counters.line()}", err=True)

    asyncio.run(main())


@settle.command("status")
@_rpc
@_payer
@_state
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@pass_app
def status(
    app: AppContext,
    rpc_url: str | None,
    payer_keypair: Path | None,
    state_dir: Path | None,
    as_json: bool,
) -> None:
    """What an operator needs: RPC health, payer balance, programs, journal, checkpoint."""
    from machpay.settle.chain import Chain, ChainUnavailableError
    from machpay.settle.follower import Checkpoint
    from machpay.settle.journal import AttemptState, Journal
    from machpay.settle.service import load_deployment
    from machpay.settle.settler import load_payer

    settings = _settings(app, rpc_url=rpc_url, payer_keypair=payer_keypair, state_dir=state_dir)
    cfg = settings.settle
    report: dict[str, Any] = {"rpc_url": cfg.rpc_url, "commitment": cfg.commitment}
    deployment = load_deployment(settings)
    report["programs"] = {p.name: str(p.program_id) for p in deployment.programs}

    async def probe() -> None:
        chain = Chain(cfg.rpc_url, cfg.commitment)
        try:
            report["slot"] = await chain.slot()
            report["config_initialized"] = await chain.account(deployment.config()) is not None
            if cfg.payer_keypair is not None:
                payer = load_payer(settings)
                report["payer"] = str(payer.pubkey())
                report["payer_balance"] = await chain.balance(payer.pubkey())
        except ChainUnavailableError as exc:
            report["rpc_error"] = str(exc)
        finally:
            await chain.close()

    asyncio.run(probe())
    journal_path = cfg.state_dir / "journal.sqlite"
    if journal_path.exists():
        journal = Journal(journal_path)
        report["journal"] = {s.value: journal.count(s) for s in AttemptState}
        journal.close()
    else:
        report["journal"] = None
    report["follower_checkpoint"] = Checkpoint.load(cfg.state_dir / "follower.json").newest
    tables = cfg.state_dir / "lookup-tables.json"
    report["lookup_tables"] = (
        json.loads(tables.read_text()).get("tables") if tables.exists() else []
    )
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        click.echo(f"{key:20} {value}")


@settle.command("init")
@_rpc
@_payer
@click.option(
    "--treasury",
    required=True,
    help="Base58 address that receives slashed bonds (minus the prover's reward).",
)
@click.option(
    "--timelock",
    type=click.IntRange(min=0),
    default=86_400,
    show_default=True,
    help="Seconds between a withdrawal request and the earliest withdrawal (GlobalBond).",
)
@click.option(
    "--prover-reward-bps",
    type=click.IntRange(0, 10_000),
    default=1_000,
    show_default=True,
    help="Share of a slashed bond paid to the prover, basis points.",
)
@pass_app
def init(
    app: AppContext,
    *,
    rpc_url: str | None,
    payer_keypair: Path | None,
    treasury: str,
    timelock: int,
    prover_reward_bps: int,
) -> None:
    """Initialize the GlobalBond and MachPay configs (the payer becomes their admin).

    The domain tag is deployment.domain_tag. Configs that exist already are
    left alone, so running it twice is harmless.
    """
    from solders.pubkey import Pubkey

    from machpay.settle.bootstrap import Bootstrap
    from machpay.settle.chain import Chain, ChainUnavailableError, TransactionRejectedError
    from machpay.settle.service import load_deployment
    from machpay.settle.settler import load_payer

    settings = _settings(app, rpc_url=rpc_url, payer_keypair=payer_keypair)
    try:
        treasury_key = Pubkey.from_string(treasury)
    except ValueError as exc:
        raise click.BadParameter(
            f"not a base58 address: {treasury!r}", param_hint="--treasury"
        ) from exc
    try:
        payer = load_payer(settings)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    deployment = load_deployment(settings)

    async def main() -> None:
        chain = Chain(settings.settle.rpc_url, settings.settle.commitment)
        try:
            await Bootstrap(chain, deployment, payer).initialize(
                domain=settings.deployment.domain,
                treasury=treasury_key,
                prover_reward_bps=prover_reward_bps,
                timelock=timelock,
            )
        finally:
            await chain.close()

    try:
        asyncio.run(main())
    except (ChainUnavailableError, TransactionRejectedError) as exc:
        raise click.ClickException(f"initialize failed: {exc}") from exc
    click.echo(
        f"configs ready: MachPay {deployment.config()}, GlobalBond {deployment.bond_config()} "
        f"(domain {settings.deployment.domain_tag}, admin {payer.pubkey()})"
    )
