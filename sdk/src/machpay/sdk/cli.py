"""``machpay agent``: the agent key, paying for one call, and the history of paid calls."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
import orjson

from machpay.cli import AppContext, pass_app
from machpay.protocol import KeyFileError, address_to_bytes
from machpay.sdk.agent import Agent
from machpay.sdk.auth import receipt
from machpay.sdk.errors import MachPayError
from machpay.sdk.identity import (
    POLICY_PATH_ENV,
    AgentWallet,
    default_key_path,
    default_policy_path,
    default_state_dir,
)
from machpay.sdk.payer import Deployment
from machpay.sdk.policy import SpendPolicy, load_policy


@dataclass(frozen=True, slots=True)
class AgentOptions:
    key_path: Path
    state_dir: Path

    def wallet(self) -> AgentWallet:
        try:
            return AgentWallet.load(self.key_path)
        except KeyFileError as exc:
            raise click.ClickException(f"{exc} (create one with `machpay agent keygen`)") from exc


pass_options = click.make_pass_decorator(AgentOptions)


@click.group("agent")
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MACHPAY_AGENT_KEY",
    help="Agent keypair file, Solana CLI format (also MACHPAY_AGENT_KEY). "
    "Default: ~/.config/machpay/agent.json.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MACHPAY_AGENT_STATE",
    help="Directory of the durable nonce/cumulative ledger, one file per agent "
    "(also MACHPAY_AGENT_STATE). Default: ~/.config/machpay/state. Keep it with the key: "
    "losing it risks signing a lower cumulative.",
)
@click.pass_context
def agent(ctx: click.Context, key_path: Path | None, state_dir: Path | None) -> None:
    """The agent side: a key, paid HTTP calls, and what they cost.

    \b
      machpay agent keygen                   create the agent key
      machpay agent address                  print its Solana address
      machpay agent pay URL [-X POST -d ..]  call a paid API, paying its 402
      machpay agent history                  the latest paid calls
    """
    ctx.obj = AgentOptions(key_path or default_key_path(), state_dir or default_state_dir())


@agent.command()
@click.option("--force", is_flag=True, help="Replace an existing key (its bond is then stranded).")
@pass_options
def keygen(options: AgentOptions, *, force: bool) -> None:
    """Create a new agent key (Solana CLI keypair file, mode 0600) and print its address."""
    try:
        wallet = AgentWallet.create(options.key_path, overwrite=force)
    except FileExistsError as exc:
        raise click.ClickException(f"{exc}; use --force to replace it") from exc
    click.echo(wallet.address)
    click.echo(f"key written to {wallet.path}", err=True)


@agent.command()
@pass_options
def address(options: AgentOptions) -> None:
    """Print the agent's base58 Solana address."""
    click.echo(options.wallet().address)


@agent.command()
@click.argument("url")
@click.option(
    "-X", "--request", "method", default=None, help="HTTP method (default GET, or POST with -d)."
)
@click.option("-d", "--data", default=None, help="Request body; @FILE reads a file, @- stdin.")
@click.option(
    "-H", "--header", "headers", multiple=True, help="Extra header 'Name: value' (repeatable)."
)
@click.option(
    "--max-price",
    type=click.IntRange(min=0),
    default=None,
    help="Refuse to pay more than this many lamports for the call.",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Spend policy TOML file: max_per_call, max_per_vendor, vendor_limits, "
    "window_limit, window_seconds, allowed_vendors, allowed_services. Default: "
    "MACHPAY_AGENT_POLICY or ~/.config/machpay/policy.toml when it exists. Budgets count "
    "everything this key ever paid, from the ledger.",
)
@click.option(
    "--vendor",
    "vendors",
    multiple=True,
    help="Only pay these vendor addresses (repeatable).",
)
@click.option(
    "--pin-deployment",
    is_flag=True,
    help="Only pay offers for the deployment in the MachPay settings "
    "(network, program id, domain tag; see `machpay config`).",
)
@click.option(
    "--timeout", type=float, default=30.0, show_default=True, help="Seconds per HTTP request."
)
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON on stderr.")
@pass_options
@pass_app
def pay(
    app: AppContext,
    options: AgentOptions,
    *,
    url: str,
    method: str | None,
    data: str | None,
    headers: tuple[str, ...],
    max_price: int | None,
    policy_path: Path | None,
    vendors: tuple[str, ...],
    pin_deployment: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Call URL, paying for it if the server answers 402 (x402, scheme machpay).

    The response body goes to stdout; the status and the receipt (intent id,
    amount, cumulative) to stderr, so the body can be piped. Exits non-zero,
    having signed nothing, when the spend policy refuses the price.

    \b
    Examples:
      machpay agent pay --max-price 2000 'http://127.0.0.1:8402/v1/search?q=bonds'
      machpay agent pay -d @query.json -H 'Content-Type: application/json' URL
      machpay agent pay --policy owner.toml --vendor VENDOR_ADDRESS URL | jq .
    """
    body = _read_data(data)
    verb = (method or ("POST" if body is not None else "GET")).upper()
    extra_headers = dict(_split_header(h) for h in headers)
    for vendor in vendors:
        try:
            address_to_bytes(vendor)
        except ValueError:
            raise click.BadParameter(
                f"{vendor!r} is not a Solana address", param_hint="--vendor"
            ) from None
    policy = _policy(policy_path, max_price, frozenset(vendors))
    deployment = None
    if pin_deployment:
        pinned = app.settings.deployment
        deployment = Deployment(
            network=pinned.network,
            program_id=address_to_bytes(pinned.machpay_program_id),
            domain=pinned.domain,
        )
    with (
        Agent(
            options.wallet(), policy=policy, state_dir=options.state_dir, deployment=deployment
        ) as payer,
        payer.client(timeout=timeout) as http,
    ):
        try:
            response = http.request(verb, url, content=body, headers=extra_headers)
        except MachPayError as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:  # transport errors: say what, not a traceback
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    sys.stdout.buffer.write(response.content)
    if response.content and not response.content.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    click.echo(f"HTTP {response.status_code} {response.reason_phrase}", err=True)
    paid = receipt(response)
    if paid is None:
        click.echo("not paid (free call)", err=True)
    elif as_json:
        click.echo(orjson.dumps(paid.to_json()).decode(), err=True)
    else:
        click.echo(
            f"paid {paid.amount} lamports to {paid.vendor} for {paid.service}; "
            f"cumulative {paid.cumulative}, nonce {paid.nonce}\n"
            f"receipt (intent id) {paid.intent_id_hex}",
            err=True,
        )


@agent.command()
@click.option(
    "-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_options
def history(options: AgentOptions, *, limit: int, as_json: bool) -> None:
    """The latest paid calls, newest first, from the local ledger."""
    wallet = options.wallet()
    with Agent(wallet, state_dir=options.state_dir) as payer:
        rows = payer.history(limit)
    for row in rows:
        when = datetime.fromtimestamp(row.at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        if as_json:
            click.echo(
                orjson.dumps(
                    {
                        "at": when,
                        "intentId": row.intent_id.hex(),
                        "method": row.method,
                        "url": row.url,
                        "vendor": row.vendor,
                        "service": row.service,
                        "network": row.network,
                        "amount": row.amount,
                        "cumulative": row.cumulative,
                        "nonce": row.nonce,
                        "status": row.status,
                    }
                ).decode()
            )
        else:
            click.echo(
                f"{when}  {row.amount:>12}  {row.status}  {row.method} {row.url}  "
                f"{row.service}  {row.intent_id.hex()[:16]}"
            )
    if not rows and not as_json:
        click.echo("no paid calls yet", err=True)


def _policy(path: Path | None, max_price: int | None, vendors: frozenset[str]) -> SpendPolicy:
    """The file's policy, narrowed (never widened) by --max-price and --vendor."""
    if path is None:
        default = default_policy_path()
        path = default if default.exists() or os.environ.get(POLICY_PATH_ENV) else None
    try:
        policy = load_policy(path) if path is not None else SpendPolicy()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--policy") from exc
    return policy.narrowed(max_per_call=max_price, vendors=vendors or None)


def _read_data(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {data[1:]}: {exc.strerror}", param_hint="-d"
            ) from exc
    return data.encode("utf-8")


def _split_header(header: str) -> tuple[str, str]:
    name, sep, value = header.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"expected 'Name: value', got {header!r}", param_hint="-H")
    return name.strip(), value.strip()
